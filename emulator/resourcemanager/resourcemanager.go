// Package resourcemanager emulates the part of Cloud Resource Manager v3
// (google.cloud.resourcemanager.v3.Projects, gRPC) that iapguard calls to
// enumerate the projects of a scope with patterns: SearchProjects and
// GetProject, over the emulator's project table (core.Projects). The
// official client cloud.google.com/go/resourcemanager/apiv3 works against
// it unchanged.
//
// Both methods are reads: no audit entry is written (Resource Manager
// reads are Data Access, not Admin Activity, as for every other read the
// emulator serves). Accounting and faults come from the emulator's gRPC
// interceptor (core.UnaryServerInterceptor); handlers never call Begin.
//
// Where the emulator differs from Google:
//
//   - Every project is ACTIVE and the caller may see every project: the
//     emulator checks no permissions (Google returns only the projects the
//     caller has resourcemanager.projects.get on).
//   - Projects have no parent, display name, labels or timestamps; the
//     display name is the project id.
//   - The query language is a subset (see parseQuery); anything else is
//     INVALID_ARGUMENT, never silently ignored.
//   - Results are sorted by project id (Google's order is unspecified).
//     Page size defaults to and is capped at MaxPageSize.
//   - GetProject of an unknown project answers PERMISSION_DENIED, as Google
//     does for a project that does not exist or that the caller may not see.
package resourcemanager

import (
	"context"
	"encoding/base64"
	"strings"

	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

// MaxPageSize is the default and largest page of SearchProjects.
const MaxPageSize = 500

// Server serves google.cloud.resourcemanager.v3.Projects.
type Server struct {
	resourcemanagerpb.UnimplementedProjectsServer
	c *core.Core
}

// New returns a Projects surface over c's project table.
func New(c *core.Core) *Server { return &Server{c: c} }

// Register adds the Projects service to g.
func (s *Server) Register(g *grpc.Server) { resourcemanagerpb.RegisterProjectsServer(g, s) }

// project renders p as Resource Manager does (name projects/NUMBER).
func project(p core.Project) *resourcemanagerpb.Project {
	return &resourcemanagerpb.Project{
		Name:        "projects/" + p.NumberString(),
		ProjectId:   p.ID,
		DisplayName: p.ID,
		State:       resourcemanagerpb.Project_ACTIVE,
	}
}

// GetProject returns projects/ID_OR_NUMBER. Google needs
// resourcemanager.projects.get on the project.
func (s *Server) GetProject(_ context.Context, req *resourcemanagerpb.GetProjectRequest) (*resourcemanagerpb.Project, error) {
	seg, ok := strings.CutPrefix(req.GetName(), "projects/")
	if !ok || seg == "" || strings.Contains(seg, "/") {
		return nil, core.Errorf(codes.InvalidArgument, "name %q: want projects/{project_id_or_number}", req.GetName())
	}
	p, ok := s.c.Projects.Lookup(seg)
	if !ok {
		return nil, core.Errorf(codes.PermissionDenied, "Permission 'resourcemanager.projects.get' denied on resource '//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", seg)
	}
	return project(p), nil
}

// SearchProjects returns the projects matching the query, sorted by id,
// one page at a time. Google returns the projects the caller has
// resourcemanager.projects.get on.
func (s *Server) SearchProjects(_ context.Context, req *resourcemanagerpb.SearchProjectsRequest) (*resourcemanagerpb.SearchProjectsResponse, error) {
	q, err := parseQuery(req.GetQuery())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, core.Errorf(codes.InvalidArgument, "page_size %d: must not be negative", size)
	case size == 0 || size > MaxPageSize:
		size = MaxPageSize
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.HasPrefix(string(b), "after:") {
			return nil, core.Errorf(codes.InvalidArgument, "page_token %q is not a token this server issued", tok)
		}
		after = strings.TrimPrefix(string(b), "after:")
	}
	resp := &resourcemanagerpb.SearchProjectsResponse{}
	for _, p := range s.c.Projects.All() { // sorted by id
		if p.ID <= after || !q.match(p) {
			continue
		}
		if len(resp.Projects) == size {
			last := resp.Projects[size-1].GetProjectId()
			resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("after:" + last))
			break
		}
		resp.Projects = append(resp.Projects, project(p))
	}
	return resp, nil
}

// query is a parsed SearchProjects query: at most one term.
type query struct {
	field string // "", "id", "state", "name"
	value string // lower case; a trailing '*' is a prefix match
}

// parseQuery reads the subset of the SearchProjects query language the
// emulator supports: an empty query, or ONE term FIELD:VALUE where FIELD
// is id / projectId, state / lifecycleState, or name / displayName
// (case-insensitive, as Google's), and VALUE is a word, optionally quoted,
// matched case-insensitively, with one trailing '*' for a prefix match
// ("id:team-*"). Several terms, parent, labels and every other field are
// INVALID_ARGUMENT: Google ORs several terms, and an emulator that guessed
// would hide a wrong query.
func parseQuery(s string) (query, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return query{}, nil
	}
	if strings.ContainsAny(s, " \t\n") && !strings.Contains(s, `"`) {
		return query{}, core.Errorf(codes.InvalidArgument, "query %q: the emulator supports one FIELD:VALUE term (id, projectId, state, lifecycleState, name, displayName)", s)
	}
	field, value, ok := strings.Cut(s, ":")
	if !ok || value == "" {
		return query{}, core.Errorf(codes.InvalidArgument, "query %q: want FIELD:VALUE", s)
	}
	if uq, ok := strings.CutPrefix(value, `"`); ok {
		if value, ok = strings.CutSuffix(uq, `"`); !ok || strings.Contains(value, `"`) {
			return query{}, core.Errorf(codes.InvalidArgument, "query %q: unbalanced quotes", s)
		}
	}
	if strings.ContainsAny(value, " \t\n") {
		return query{}, core.Errorf(codes.InvalidArgument, "query %q: the emulator supports one FIELD:VALUE term", s)
	}
	if i := strings.Index(value, "*"); i >= 0 && i != len(value)-1 {
		return query{}, core.Errorf(codes.InvalidArgument, "query %q: the emulator supports '*' only at the end of a value", s)
	}
	q := query{value: strings.ToLower(value)}
	switch strings.ToLower(field) {
	case "id", "projectid":
		q.field = "id"
	case "name", "displayname":
		q.field = "name"
	case "state", "lifecyclestate":
		q.field = "state"
	default:
		return query{}, core.Errorf(codes.InvalidArgument, "query %q: field %q is not supported by the emulator (id, projectId, state, lifecycleState, name, displayName)", s, field)
	}
	return q, nil
}

// match reports whether p matches q.
func (q query) match(p core.Project) bool {
	var have string
	switch q.field {
	case "":
		return true
	case "id", "name": // the display name is the id
		have = strings.ToLower(p.ID)
	case "state":
		have = "active"
	}
	if prefix, ok := strings.CutSuffix(q.value, "*"); ok {
		return strings.HasPrefix(have, prefix)
	}
	return have == q.value
}
