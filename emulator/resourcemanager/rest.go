package resourcemanager

import (
	"context"
	"net/http"
	"strings"

	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/internal/rest"
)

// RESTPrefix is where Resource Manager v3's read methods are served over
// REST/JSON, as Google transcodes them
// (google/cloud/resourcemanager/v3/{projects,folders}.proto):
//
//	GET /v3/{name=projects/*}                                     Projects.GetProject
//	GET /v3/projects:search?query=&pageSize=&pageToken=           Projects.SearchProjects
//	GET /v3/{name=folders/*}                                      Folders.GetFolder
//	GET /v3/folders?parent=&pageSize=&pageToken=&showDeleted=     Folders.ListFolders
//
// The discovery-based client (google.golang.org/api/cloudresourcemanager/v3)
// works against it with option.WithEndpoint("http://ADDR/") and no
// credentials. Counted, faulted and audited as the gRPC methods.
const RESTPrefix = "/v3/"

// ServeREST serves the methods listed at RESTPrefix.
func (s *Server) ServeREST(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, RESTPrefix)
	if r.Method != http.MethodGet {
		rest.NotFound(w, r)
		return
	}
	folders := &Folders{c: s.c}
	kind, id, _ := strings.Cut(path, "/")
	switch {
	case path == "projects:search":
		rest.Serve(w, r, s.c, "google.cloud.resourcemanager.v3.Projects.SearchProjects", func(ctx context.Context, q *rest.Query, _ []byte) (proto.Message, error) {
			if err := q.Bind("query", "page_size", "page_token"); err != nil {
				return nil, err
			}
			return s.SearchProjects(ctx, &resourcemanagerpb.SearchProjectsRequest{
				Query: q.Str("query"), PageSize: q.Int32("page_size"), PageToken: q.Str("page_token")})
		})
	case kind == "projects" && id != "" && !strings.Contains(id, "/"):
		rest.Serve(w, r, s.c, "google.cloud.resourcemanager.v3.Projects.GetProject", func(ctx context.Context, q *rest.Query, _ []byte) (proto.Message, error) {
			if err := q.Bind(); err != nil {
				return nil, err
			}
			return s.GetProject(ctx, &resourcemanagerpb.GetProjectRequest{Name: path})
		})
	case path == "folders":
		rest.Serve(w, r, s.c, "google.cloud.resourcemanager.v3.Folders.ListFolders", func(ctx context.Context, q *rest.Query, _ []byte) (proto.Message, error) {
			if err := q.Bind("parent", "page_size", "page_token", "show_deleted"); err != nil {
				return nil, err
			}
			return folders.ListFolders(ctx, &resourcemanagerpb.ListFoldersRequest{
				Parent: q.Str("parent"), PageSize: q.Int32("page_size"), PageToken: q.Str("page_token"),
				ShowDeleted: q.Bool("show_deleted")})
		})
	case kind == "folders" && id != "" && !strings.Contains(id, "/"):
		rest.Serve(w, r, s.c, "google.cloud.resourcemanager.v3.Folders.GetFolder", func(ctx context.Context, q *rest.Query, _ []byte) (proto.Message, error) {
			if err := q.Bind(); err != nil {
				return nil, err
			}
			return folders.GetFolder(ctx, &resourcemanagerpb.GetFolderRequest{Name: path})
		})
	default:
		rest.NotFound(w, r)
	}
}
