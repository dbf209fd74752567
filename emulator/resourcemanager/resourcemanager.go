// Package resourcemanager emulates the part of Cloud Resource Manager v3
// (gRPC) that iapguard calls to enumerate the projects of a scope and to
// resolve folder scopes: google.cloud.resourcemanager.v3.Projects
// (SearchProjects, GetProject) and google.cloud.resourcemanager.v3.Folders
// (GetFolder, ListFolders), over the emulator's project table
// (core.Projects, which holds the folders too). The official client
// cloud.google.com/go/resourcemanager/apiv3 works against it unchanged.
//
// Every method is a read: no audit entry is written (Resource Manager
// reads are Data Access, not Admin Activity, as for every other read the
// emulator serves). Accounting and faults come from the emulator's gRPC
// interceptor (core.UnaryServerInterceptor); handlers never call Begin.
//
// Where the emulator differs from Google:
//
//   - Every project is ACTIVE and the caller may see every project: the
//     emulator checks no permissions (Google returns only the projects the
//     caller has resourcemanager.projects.get on).
//   - Projects and folders have no labels, tags or timestamps; a project's
//     display name is its id, a folder's is its name (folders/N). A
//     project's parent is what --project ID=NUMBER@PARENT gave, or empty.
//   - The query language is a subset (see parseQuery); anything else is
//     INVALID_ARGUMENT, never silently ignored.
//   - Organisations are not served (no Organizations surface); an
//     organisation exists when a project or folder names it as parent.
//   - GetFolder of an unknown folder, and ListFolders under an unknown
//     parent, answer PERMISSION_DENIED, as Google does for a resource that
//     does not exist or that the caller may not see. Folders sort by id;
//     ListFolders pages like SearchProjects.
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

// Register adds the Projects and Folders services to g.
func (s *Server) Register(g *grpc.Server) {
	resourcemanagerpb.RegisterProjectsServer(g, s)
	resourcemanagerpb.RegisterFoldersServer(g, &Folders{c: s.c})
}

// project renders p as Resource Manager does (name projects/NUMBER).
func project(p core.Project) *resourcemanagerpb.Project {
	return &resourcemanagerpb.Project{
		Name:        "projects/" + p.NumberString(),
		Parent:      p.Parent,
		ProjectId:   p.ID,
		DisplayName: p.ID,
		State:       resourcemanagerpb.Project_ACTIVE,
	}
}

// GetProject returns projects/ID_OR_NUMBER. Google needs
// resourcemanager.projects.get on the project.
func (s *Server) GetProject(_ context.Context, req *resourcemanagerpb.GetProjectRequest) (*resourcemanagerpb.Project, error) {
	seg, err := nameID(req.GetName(), "projects/", "{project_id_or_number}")
	if err != nil {
		return nil, err
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
	size, after, err := pageArgs(req)
	if err != nil {
		return nil, err
	}
	resp := &resourcemanagerpb.SearchProjectsResponse{}
	for _, p := range s.c.Projects.All() { // sorted by id
		if p.ID <= after || !q.match(p) {
			continue
		}
		if len(resp.Projects) == size {
			resp.NextPageToken = pageToken(resp.Projects[size-1].GetProjectId())
			break
		}
		resp.Projects = append(resp.Projects, project(p))
	}
	return resp, nil
}

// nameID returns the id in name = prefix+ID (one non-empty segment), or
// INVALID_ARGUMENT naming the form wanted (prefix+want).
func nameID(name, prefix, want string) (string, error) {
	id, ok := strings.CutPrefix(name, prefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", core.Errorf(codes.InvalidArgument, "name %q: want %s%s", name, prefix, want)
	}
	return id, nil
}

// pagedRequest is SearchProjectsRequest and ListFoldersRequest.
type pagedRequest interface {
	GetPageSize() int32
	GetPageToken() string
}

// pageArgs reads a request's page size (0 or above MaxPageSize:
// MaxPageSize; negative: INVALID_ARGUMENT) and page token: the key of the
// last item of the previous page (see pageToken), "" for the first page.
func pageArgs(req pagedRequest) (size int, after string, err error) {
	size = int(req.GetPageSize())
	switch {
	case size < 0:
		return 0, "", core.Errorf(codes.InvalidArgument, "page_size %d: must not be negative", size)
	case size == 0 || size > MaxPageSize:
		size = MaxPageSize
	}
	tok := req.GetPageToken()
	if tok == "" {
		return size, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	after, ok := strings.CutPrefix(string(b), "after:")
	if err != nil || !ok {
		return 0, "", core.Errorf(codes.InvalidArgument, "page_token %q is not a token this server issued", tok)
	}
	return size, after, nil
}

// pageToken is the opaque token of the page that follows the item whose
// key (project id, folder id) is last.
func pageToken(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + last))
}

// query is a parsed SearchProjects query: at most one term.
type query struct {
	field string // "", "id", "state", "name", "parent"
	value string // lower case; a trailing '*' is a prefix match
}

// parseQuery reads the subset of the SearchProjects query language the
// emulator supports: an empty query, or ONE term FIELD:VALUE where FIELD
// is id / projectId, state / lifecycleState, or name / displayName
// (case-insensitive, as Google's), and VALUE is a word, optionally quoted,
// matched case-insensitively, with one trailing '*' for a prefix match
// ("id:team-*"); or parent:folders/N / parent:organizations/N, the
// projects directly under that parent (not those of its sub-folders, as
// Google). Several terms, parent.type / parent.id, labels and every other
// field are INVALID_ARGUMENT: Google ORs several terms, and an emulator that guessed
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
	case "parent":
		if core.ValidParent(q.value) != nil {
			return query{}, core.Errorf(codes.InvalidArgument, "query %q: parent must be folders/N or organizations/N", s)
		}
		q.field = "parent"
	default:
		return query{}, core.Errorf(codes.InvalidArgument, "query %q: field %q is not supported by the emulator (id, projectId, state, lifecycleState, name, displayName, parent)", s, field)
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
	case "parent":
		return p.Parent == q.value
	}
	if prefix, ok := strings.CutSuffix(q.value, "*"); ok {
		return strings.HasPrefix(have, prefix)
	}
	return have == q.value
}

// Folders serves google.cloud.resourcemanager.v3.Folders (GetFolder,
// ListFolders) over the emulator's folders.
type Folders struct {
	resourcemanagerpb.UnimplementedFoldersServer
	c *core.Core
}

// folder renders f as Resource Manager does.
func folder(f core.Folder) *resourcemanagerpb.Folder {
	return &resourcemanagerpb.Folder{
		Name:        f.Name(),
		Parent:      f.Parent,
		DisplayName: f.Name(),
		State:       resourcemanagerpb.Folder_ACTIVE,
	}
}

// GetFolder returns folders/N. Google needs resourcemanager.folders.get on
// the folder (inherited from its ancestors).
func (s *Folders) GetFolder(_ context.Context, req *resourcemanagerpb.GetFolderRequest) (*resourcemanagerpb.Folder, error) {
	id, err := nameID(req.GetName(), "folders/", "{folder_id}")
	if err != nil {
		return nil, err
	}
	f, ok := s.c.Projects.Folder(id)
	if !ok {
		return nil, core.Errorf(codes.PermissionDenied, "Permission 'resourcemanager.folders.get' denied on resource '//cloudresourcemanager.googleapis.com/folders/%s' (or it may not exist).", id)
	}
	return folder(f), nil
}

// ListFolders returns the folders directly under parent (folders/N or
// organizations/N), sorted by id, one page at a time. Google needs
// resourcemanager.folders.list on the parent.
func (s *Folders) ListFolders(_ context.Context, req *resourcemanagerpb.ListFoldersRequest) (*resourcemanagerpb.ListFoldersResponse, error) {
	parent := req.GetParent()
	if core.ValidParent(parent) != nil {
		return nil, core.Errorf(codes.InvalidArgument, "parent %q: want folders/{folder_id} or organizations/{org_id}", parent)
	}
	if !s.knownParent(parent) {
		return nil, core.Errorf(codes.PermissionDenied, "Permission 'resourcemanager.folders.list' denied on resource '//cloudresourcemanager.googleapis.com/%s' (or it may not exist).", parent)
	}
	size, after, err := pageArgs(req)
	if err != nil {
		return nil, err
	}
	resp := &resourcemanagerpb.ListFoldersResponse{}
	skipping := after != ""
	for _, f := range s.c.Projects.Folders() { // sorted by id
		if skipping {
			skipping = f.ID != after
			continue
		}
		if f.Parent != parent {
			continue
		}
		if len(resp.Folders) == size {
			resp.NextPageToken = pageToken(strings.TrimPrefix(resp.Folders[size-1].GetName(), "folders/"))
			break
		}
		resp.Folders = append(resp.Folders, folder(f))
	}
	return resp, nil
}

// knownParent reports whether parent is a folder of the emulator or an
// organisation some project or folder names as its parent.
func (s *Folders) knownParent(parent string) bool {
	if id, ok := strings.CutPrefix(parent, "folders/"); ok {
		_, ok := s.c.Projects.Folder(id)
		return ok
	}
	for _, f := range s.c.Projects.Folders() {
		if f.Parent == parent {
			return true
		}
	}
	for _, p := range s.c.Projects.All() {
		if p.Parent == parent {
			return true
		}
	}
	return false
}
