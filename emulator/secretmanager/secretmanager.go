// Package secretmanager emulates the part of Secret Manager v1 (gRPC) that
// iapguard uses: google.cloud.secretmanager.v1.SecretManagerService
// CreateSecret, AddSecretVersion, GetSecretVersion and AccessSecretVersion.
// iapguard reads the key that signs its access-grant records with
// AccessSecretVersion (secretmanager.versions.access); the local stack and
// tests create the secret with the other two, as a deployment would with
// gcloud. The official client cloud.google.com/go/secretmanager/apiv1 works
// against it unchanged.
//
// Accounting and faults come from the emulator's gRPC interceptor
// (core.UnaryServerInterceptor). Secret Manager writes are Admin Activity;
// AccessSecretVersion is Data Access: the emulator writes no audit entry
// for any of them (iapguard reacts to none).
//
// Where the emulator differs from Google:
//
//   - No permissions are checked; a project the emulator does not know is
//     PERMISSION_DENIED, as Google answers for a project the caller cannot
//     see.
//   - Secrets have automatic replication only; labels, annotations,
//     expiry, rotation, topics, CMEK and version aliases are not kept.
//     Versions are always ENABLED (no disable or destroy).
//   - Names in responses use the project number, as Google's do; requests
//     may name the project by id or number.
package secretmanager

import (
	"context"
	"hash/crc32"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iapguard/iapguard/emulator/core"
)

// MaxPayload is Secret Manager's documented limit on a version's data.
const MaxPayload = 64 << 10

// secretIDRE is Secret Manager's rule for secret ids.
var secretIDRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type version struct {
	data    []byte
	created *timestamppb.Timestamp
}

// Server serves google.cloud.secretmanager.v1.SecretManagerService.
type Server struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer
	c *core.Core

	mu sync.Mutex
	// secrets: "projects/NUMBER/secrets/ID" → versions (version n at n-1).
	secrets map[string][]version
}

// New returns a Secret Manager surface over c's projects.
func New(c *core.Core) *Server { return &Server{c: c, secrets: map[string][]version{}} }

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) { secretmanagerpb.RegisterSecretManagerServiceServer(g, s) }

// project resolves projects/ID_OR_NUMBER to projects/NUMBER.
func (s *Server) project(seg string) (string, error) {
	p, ok := s.c.Projects.Lookup(seg)
	if !ok {
		return "", core.Errorf(codes.PermissionDenied, "Permission denied on resource project %s.", seg)
	}
	return "projects/" + p.NumberString(), nil
}

// secretName parses projects/P/secrets/S into projects/NUMBER/secrets/S.
func (s *Server) secretName(name string) (string, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "secrets" || parts[1] == "" || !secretIDRE.MatchString(parts[3]) {
		return "", core.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: %q is not projects/*/secrets/*.", name)
	}
	proj, err := s.project(parts[1])
	if err != nil {
		return "", err
	}
	return proj + "/secrets/" + parts[3], nil
}

// CreateSecret creates parent/secrets/secret_id with no versions.
func (s *Server) CreateSecret(_ context.Context, req *secretmanagerpb.CreateSecretRequest) (*secretmanagerpb.Secret, error) {
	if !secretIDRE.MatchString(req.GetSecretId()) {
		return nil, core.Errorf(codes.InvalidArgument, "Secret ID %q must be 1 to 255 characters of letters, digits, '-' and '_'.", req.GetSecretId())
	}
	name, err := s.secretName(req.GetParent() + "/secrets/" + req.GetSecretId())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.secrets[name]; ok {
		return nil, core.Errorf(codes.AlreadyExists, "Secret [%s] already exists.", name)
	}
	s.secrets[name] = []version{}
	return &secretmanagerpb.Secret{
		Name:        name,
		Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}},
		CreateTime:  timestamppb.New(s.c.Now()),
	}, nil
}

// AddSecretVersion adds a version holding the payload.
func (s *Server) AddSecretVersion(_ context.Context, req *secretmanagerpb.AddSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	name, err := s.secretName(req.GetParent())
	if err != nil {
		return nil, err
	}
	data := req.GetPayload().GetData()
	if len(data) > MaxPayload {
		return nil, core.Errorf(codes.InvalidArgument, "Secret payload size %d exceeds the limit of %d bytes.", len(data), MaxPayload)
	}
	if c := req.GetPayload().DataCrc32C; c != nil && *c != int64(crc32.Checksum(data, crcTable)) {
		return nil, core.Errorf(codes.InvalidArgument, "Checksum mismatch: the payload's data_crc32c does not match its data.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, ok := s.secrets[name]
	if !ok {
		return nil, core.Errorf(codes.NotFound, "Secret [%s] not found.", name)
	}
	v := version{data: append([]byte(nil), data...), created: timestamppb.New(s.c.Now())}
	s.secrets[name] = append(vs, v)
	return versionMsg(name, len(vs)+1, v), nil
}

func versionMsg(secret string, n int, v version) *secretmanagerpb.SecretVersion {
	return &secretmanagerpb.SecretVersion{
		Name:       secret + "/versions/" + strconv.Itoa(n),
		CreateTime: v.created,
		State:      secretmanagerpb.SecretVersion_ENABLED,
	}
}

// lookup resolves projects/P/secrets/S/versions/V (V a number or latest).
func (s *Server) lookup(name string) (string, int, version, error) {
	secretPart, v, ok := strings.Cut(name, "/versions/")
	if !ok || v == "" || strings.Contains(v, "/") {
		return "", 0, version{}, core.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: %q is not projects/*/secrets/*/versions/*.", name)
	}
	secret, err := s.secretName(secretPart)
	if err != nil {
		return "", 0, version{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, ok := s.secrets[secret]
	if !ok || (v == "latest" && len(vs) == 0) {
		return "", 0, version{}, core.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", secret)
	}
	n := len(vs)
	if v != "latest" {
		var perr error
		n, perr = strconv.Atoi(v)
		if perr != nil || n < 1 || strconv.Itoa(n) != v {
			return "", 0, version{}, core.Errorf(codes.InvalidArgument, "Invalid secret version %q: want a positive number or latest.", v)
		}
		if n > len(vs) {
			return "", 0, version{}, core.Errorf(codes.NotFound, "Secret Version [%s/versions/%d] not found.", secret, n)
		}
	}
	return secret, n, vs[n-1], nil
}

// GetSecretVersion returns a version's metadata.
func (s *Server) GetSecretVersion(_ context.Context, req *secretmanagerpb.GetSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	secret, n, v, err := s.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	return versionMsg(secret, n, v), nil
}

// AccessSecretVersion returns a version's payload; the response names the
// version by number (latest resolved), with the data's CRC32C.
func (s *Server) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	secret, n, v, err := s.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	crc := int64(crc32.Checksum(v.data, crcTable))
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    secret + "/versions/" + strconv.Itoa(n),
		Payload: &secretmanagerpb.SecretPayload{Data: append([]byte(nil), v.data...), DataCrc32C: &crc},
	}, nil
}

// Put creates secret in project if needed and adds a version holding data;
// it returns the version's name (for seeding, as gcloud secrets create
// would).
func (s *Server) Put(project, secret string, data []byte) (string, error) {
	ctx := context.Background()
	if _, err := s.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/" + project, SecretId: secret}); err != nil && !isCode(err, codes.AlreadyExists) {
		return "", err
	}
	v, err := s.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/" + project + "/secrets/" + secret, Payload: &secretmanagerpb.SecretPayload{Data: data}})
	if err != nil {
		return "", err
	}
	return v.GetName(), nil
}

func isCode(err error, c codes.Code) bool {
	e, ok := err.(*core.Error)
	return ok && e.Code == c
}
