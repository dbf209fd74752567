// Package serviceusage emulates the part of the Service Usage API v1beta1
// that iapguard calls: services.generateServiceIdentity (creating a
// service's service agent, e.g. the IAP service agent that must be granted
// roles/run.invoker on IAP-protected Cloud Run services) and operations.get.
// The official client google.golang.org/api/serviceusage/v1beta1 works
// against it unchanged with option.WithEndpoint("http://ADDR/") and
// option.WithoutAuthentication().
//
// Routes (method keys for core.Begin in parentheses):
//
//	POST v1beta1/{parent=projects/*/services/*}:generateServiceIdentity  (serviceusage.services.generateServiceIdentity)
//	GET  v1beta1/{name=operations/*}                                      (serviceusage.operations.get)
//
// Google requires serviceusage.services.use on the project for
// generateServiceIdentity; the emulator checks no permissions.
//
// Where the emulator differs from Google:
//   - Only projects/* parents are served; folders/* and organizations/*
//     (which Google accepts) are rejected with 400 INVALID_ARGUMENT.
//   - An unknown project answers 403 PERMISSION_DENIED, as Google does for
//     projects the caller cannot see (it does not reveal whether they exist).
//   - Service agent emails are known for iap, run, pubsub and eventarc; any
//     other service gets a ServiceIdentity without email or uniqueId, the
//     documented answer for services without a primary service agent. The
//     uniqueId is a stable 21-digit number derived from project and service.
//   - Operation names are "operations/acf.p2-NUMBER-RANDOM" for every call;
//     Google's documented example for an already finished operation is
//     "operations/finished.DONE_OPERATION". Operations are kept in memory
//     forever and carry no metadata.
//   - By default the operation is returned done. SetOperationPolls(n) makes it
//     finish only on the n-th operations.get; the identity exists (Identity
//     reports it) from then on.
//   - The audit entry (serviceName serviceusage.googleapis.com, methodName
//     google.api.serviceusage.v1beta1.ServiceUsage.GenerateServiceIdentity,
//     resource.type audited_resource) is written once per project and
//     service, for the request that first creates the identity; its exact
//     shape is inferred (no real sample), as is resourceName
//     "projects/NUMBER/services/SERVICE".
package serviceusage

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

// Names used in audit entries and responses.
const (
	ServiceName         = "serviceusage.googleapis.com"
	MethodGenerate      = "google.api.serviceusage.v1beta1.ServiceUsage.GenerateServiceIdentity"
	KeyGenerate         = "serviceusage.services.generateServiceIdentity"
	KeyGetOperation     = "serviceusage.operations.get"
	ServiceIdentityType = "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity"
	requestType         = "type.googleapis.com/google.api.serviceusage.v1beta1.GenerateServiceIdentityRequest"
	operationType       = "type.googleapis.com/google.longrunning.Operation"
	prefix              = "/v1beta1/"
)

// agentDomains maps a service to the domain of its primary service agent,
// service-PROJECT_NUMBER@DOMAIN.
var agentDomains = map[string]string{
	"iap.googleapis.com":      "gcp-sa-iap.iam.gserviceaccount.com",
	"run.googleapis.com":      "serverless-robot-prod.iam.gserviceaccount.com",
	"pubsub.googleapis.com":   "gcp-sa-pubsub.iam.gserviceaccount.com",
	"eventarc.googleapis.com": "gcp-sa-eventarc.iam.gserviceaccount.com",
}

// Server serves Service Usage v1beta1 under /v1beta1/.
type Server struct {
	c *core.Core

	mu         sync.Mutex
	identities map[string]bool // key: projectNumber/service
	pending    map[string]bool // creation requested, operation not done yet
	ops        map[string]*operation
	polls      int
}

type operation struct {
	name      string
	key       string // identity key it creates
	remaining int    // operations.get calls still answered not done
	response  map[string]any
}

// New returns a Service Usage server over c.
func New(c *core.Core) *Server {
	return &Server{c: c, identities: map[string]bool{}, pending: map[string]bool{}, ops: map[string]*operation{}}
}

// SetOperationPolls makes generateServiceIdentity return an operation that
// is not done; the n-th operations.get on it returns it done. n <= 0 (the
// default) returns operations already done.
func (s *Server) SetOperationPolls(n int) {
	s.mu.Lock()
	s.polls = max(n, 0)
	s.mu.Unlock()
}

// Identity returns the service agent email of service in project (ID or
// number) and whether it has been created through generateServiceIdentity.
// email is "" for services without a known agent and for unknown projects.
// It is a query: it creates nothing, counts no call and writes no audit entry.
func (s *Server) Identity(project, service string) (email string, created bool) {
	p, ok := s.c.Projects.Lookup(project)
	if !ok {
		return "", false
	}
	s.mu.Lock()
	created = s.identities[identityKey(p, service)]
	s.mu.Unlock()
	return agentEmail(p, service), created
}

// createAgent tells IAM that the service agent now exists; policy writes
// naming it fail until the propagation window (core.Accounts) has passed,
// as on Google.
func (s *Server) createAgent(p core.Project, service string) {
	if email := agentEmail(p, service); email != "" {
		s.c.Accounts.Create(email)
	}
}

func identityKey(p core.Project, service string) string { return p.NumberString() + "/" + service }

func agentEmail(p core.Project, service string) string {
	if d, ok := agentDomains[service]; ok {
		return "service-" + p.NumberString() + "@" + d
	}
	return ""
}

// uniqueID is stable for a project and service, like a service account's.
func uniqueID(p core.Project, service string) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", p.Number, service)
	return fmt.Sprintf("1%020d", h.Sum64())
}

func identityResponse(p core.Project, service string) map[string]any {
	resp := map[string]any{"@type": ServiceIdentityType}
	if email := agentEmail(p, service); email != "" {
		resp["email"] = email
		resp["uniqueId"] = uniqueID(p, service)
	}
	return resp
}

// ServeHTTP routes Service Usage requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = core.WithHTTPCaller(r)
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		notFound(w, r)
		return
	}
	// Neither method has a request field left for the query (parent and
	// name are in the path): a parameter other than Google's system ones
	// binds to nothing.
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(rest, ":generateServiceIdentity"):
		if err := s.c.Begin(r.Context(), KeyGenerate); err != nil {
			core.WriteHTTPError(w, err)
			return
		}
		if _, err := core.BindQuery(r.URL.Query()); err != nil {
			core.WriteHTTPError(w, err)
			return
		}
		s.generate(w, r, strings.TrimSuffix(rest, ":generateServiceIdentity"))
	case r.Method == http.MethodGet && strings.HasPrefix(rest, "operations/") && !strings.Contains(rest, ":"):
		if err := s.c.Begin(r.Context(), KeyGetOperation); err != nil {
			core.WriteHTTPError(w, err)
			return
		}
		if _, err := core.BindQuery(r.URL.Query()); err != nil {
			core.WriteHTTPError(w, err)
			return
		}
		s.getOperation(w, rest)
	default:
		notFound(w, r)
	}
}

func notFound(w http.ResponseWriter, r *http.Request) {
	core.Errorf(codes.NotFound, "The requested URL %s was not found on this server.", r.URL.Path).WriteJSON(w)
}

func (s *Server) generate(w http.ResponseWriter, r *http.Request, parent string) {
	parts := strings.Split(parent, "/")
	if len(parts) != 4 || parts[1] == "" || parts[2] != "services" || parts[3] == "" {
		core.WriteHTTPError(w, core.Errorf(codes.InvalidArgument,
			"Invalid parent %q: want projects/{project}/services/{service}.", parent))
		return
	}
	if parts[0] != "projects" {
		core.WriteHTTPError(w, core.Errorf(codes.InvalidArgument,
			"Parent %q: the emulator serves only projects/{project}/services/{service}.", parent))
		return
	}
	p, ok := s.c.Projects.Lookup(parts[1])
	if !ok {
		core.WriteHTTPError(w, core.Errorf(codes.PermissionDenied,
			"Permission denied to generate service identity for service [%s] in project [%s] (or it may not exist).", parts[3], parts[1]))
		return
	}
	service := parts[3]
	key := identityKey(p, service)
	op := &operation{
		name:      "operations/acf.p2-" + p.NumberString() + "-" + randomID(),
		key:       key,
		remaining: 0,
		response:  identityResponse(p, service),
	}

	s.mu.Lock()
	first := !s.identities[key] && !s.pending[key]
	op.remaining = s.polls
	if op.remaining == 0 {
		s.identities[key] = true
		s.createAgent(p, service)
	} else {
		s.pending[key] = true
	}
	s.ops[op.name] = op
	body := op.render()
	s.mu.Unlock()

	if first {
		s.c.Audit.Record(core.Record{
			Ctx:          r.Context(),
			Project:      p,
			ServiceName:  ServiceName,
			MethodName:   MethodGenerate,
			ResourceName: "projects/" + p.NumberString() + "/services/" + service,
			Permission:   "serviceusage.services.use",
			Request:      map[string]any{"@type": requestType, "parent": parent},
			Response:     withType(body, operationType),
			ResourceType: "audited_resource",
			ResourceLabels: map[string]string{
				"service": ServiceName, "method": MethodGenerate, "project_id": p.ID,
			},
		})
	}
	writeJSON(w, body)
}

func (s *Server) getOperation(w http.ResponseWriter, name string) {
	s.mu.Lock()
	op, ok := s.ops[name]
	var body map[string]any
	if ok {
		if op.remaining > 0 {
			op.remaining--
			if op.remaining == 0 {
				s.identities[op.key] = true
				delete(s.pending, op.key)
				if email, _ := op.response["email"].(string); email != "" {
					s.c.Accounts.Create(email)
				}
			}
		}
		body = op.render()
	}
	s.mu.Unlock()
	if !ok {
		core.WriteHTTPError(w, core.Errorf(codes.NotFound, "Operation %s not found.", name))
		return
	}
	writeJSON(w, body)
}

// render returns the google.longrunning.Operation JSON; callers hold s.mu.
func (op *operation) render() map[string]any {
	out := map[string]any{"name": op.name}
	if op.remaining == 0 {
		out["done"] = true
		out["response"] = op.response
	}
	return out
}

func withType(m map[string]any, typ string) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out["@type"] = typ
	return out
}

func randomID() string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x",
		rand.Uint32(), rand.Uint32N(1<<16), rand.Uint32N(1<<16), rand.Uint32N(1<<16), rand.Uint64N(1<<48))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}
