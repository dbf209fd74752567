package gcp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	resourcemanager "cloud.google.com/go/resourcemanager/apiv3"
	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// DefaultProjectPageSize is the page size ProjectDirectory asks
// SearchProjects for.
const DefaultProjectPageSize = 500

// ProjectDirectory reads projects and folders through Cloud Resource
// Manager v3 (gRPC, cloud.google.com/go/resourcemanager/apiv3): the same
// code against Google and the emulator, which serves the same API. It
// implements scope.ProjectLister and scope.FolderDirectory, for
// enumerating a scope with patterns, folders or "*" (iapctl
// audit/enforce/replay --all-projects), and scope.AncestryReader, for
// deciding folder entries of the function's scope per event.
//
// The function uses it only when its scope has folder entries; only then
// does its role need resourcemanager.projects.get and
// resourcemanager.folders.get (internal/iamperm).
type ProjectDirectory struct {
	c *resourcemanager.ProjectsClient
	f *resourcemanager.FoldersClient
	// PageSize is the page size asked of SearchProjects and ListFolders
	// (default DefaultProjectPageSize).
	PageSize int32
}

// NewProjectDirectory builds a Resource Manager client with opts as
// NewClients reads them: EmulatorHost (or IAPGUARD_EMULATOR_HOST) points it
// at the emulator with no authentication and Principal as the caller;
// otherwise Google Cloud with Application Default Credentials and
// ClientOptions. Close it when done.
func NewProjectDirectory(ctx context.Context, opts Options) (*ProjectDirectory, error) {
	host, err := resolveEmulatorHost(opts.EmulatorHost)
	if err != nil {
		return nil, err
	}
	var co []option.ClientOption
	if opts.UserAgent != "" {
		co = append(co, option.WithUserAgent(opts.UserAgent))
	}
	if host != "" {
		co = append(co, EmulatorGRPCOptions(host, opts.Principal)...)
	} else {
		co = append(co, opts.ClientOptions...)
	}
	c, err := resourcemanager.NewProjectsClient(ctx, co...)
	if err != nil {
		return nil, fmt.Errorf("creating Resource Manager client: %w", err)
	}
	f, err := resourcemanager.NewFoldersClient(ctx, co...)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("creating Resource Manager folders client: %w", err)
	}
	return &ProjectDirectory{c: c, f: f, PageSize: DefaultProjectPageSize}, nil
}

// Close releases the clients' connections.
func (d *ProjectDirectory) Close() error {
	err := d.c.Close()
	if ferr := d.f.Close(); err == nil {
		err = ferr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("closing Resource Manager client: %w", err)
	}
	return nil
}

// ListProjects returns every ACTIVE project the caller can see, following
// every page of SearchProjects (query "state:ACTIVE"; ceil(N/PageSize)
// calls). Google returns only the projects the caller has
// resourcemanager.projects.get on, so a project missing here may still
// exist: scope.Scope.Projects keeps explicit entries it does not find.
// Needs resourcemanager.projects.get on each project to be listed (no
// permission of its own).
func (d *ProjectDirectory) ListProjects(ctx context.Context) ([]scope.ProjectInfo, error) {
	return d.search(ctx, "state:ACTIVE")
}

// ListProjectsIn returns the ACTIVE projects directly under parent
// (folders/N or organizations/N), not those of its sub-folders: every page
// of SearchProjects with the query "parent:PARENT" (one term, which the
// emulator supports too), keeping the ACTIVE ones. Needs
// resourcemanager.projects.get on each project listed.
func (d *ProjectDirectory) ListProjectsIn(ctx context.Context, parent string) ([]scope.ProjectInfo, error) {
	return d.search(ctx, "parent:"+parent)
}

// pageSize is PageSize, or DefaultProjectPageSize when not positive.
func (d *ProjectDirectory) pageSize() int32 {
	if d.PageSize <= 0 {
		return DefaultProjectPageSize
	}
	return d.PageSize
}

// search follows every page of SearchProjects for query.
func (d *ProjectDirectory) search(ctx context.Context, query string) ([]scope.ProjectInfo, error) {
	it := d.c.SearchProjects(ctx, &resourcemanagerpb.SearchProjectsRequest{Query: query, PageSize: d.pageSize()})
	var out []scope.ProjectInfo
	for {
		p, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("searching projects %q (resourcemanager.projects.search): %w", query, err)
		}
		if p.GetState() != resourcemanagerpb.Project_ACTIVE {
			continue
		}
		num, ok := strings.CutPrefix(p.GetName(), "projects/")
		if _, perr := strconv.ParseInt(num, 10, 64); !ok || perr != nil {
			num = "" // not projects/NUMBER: keep the id alone
		}
		out = append(out, scope.ProjectInfo{ID: p.GetProjectId(), Number: num, Parent: p.GetParent()})
	}
}

// ListFolders returns the names of the folders directly under parent
// (folders/N or organizations/N), following every page of ListFolders.
// Needs resourcemanager.folders.list on parent.
func (d *ProjectDirectory) ListFolders(ctx context.Context, parent string) ([]string, error) {
	it := d.f.ListFolders(ctx, &resourcemanagerpb.ListFoldersRequest{Parent: parent, PageSize: d.pageSize()})
	var out []string
	for {
		f, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing the folders under %s (resourcemanager.folders.list): %w", parent, err)
		}
		if f.GetState() == resourcemanagerpb.Folder_ACTIVE {
			out = append(out, f.GetName())
		}
	}
}

// ProjectParent returns the parent of project (an id or a number):
// organizations/N, folders/N, or "" (one GetProject). Needs
// resourcemanager.projects.get on the project; Google answers
// PERMISSION_DENIED for a project that does not exist too.
func (d *ProjectDirectory) ProjectParent(ctx context.Context, project string) (_ string, err error) {
	defer classify(&err)
	p, err := d.c.GetProject(ctx, &resourcemanagerpb.GetProjectRequest{Name: "projects/" + project})
	if err != nil {
		return "", fmt.Errorf("reading project %s (resourcemanager.projects.get): %w", project, err)
	}
	return p.GetParent(), nil
}

// FolderParent returns the parent of folders/ID (one GetFolder). Needs
// resourcemanager.folders.get on the folder.
func (d *ProjectDirectory) FolderParent(ctx context.Context, id string) (_ string, err error) {
	defer classify(&err)
	f, err := d.f.GetFolder(ctx, &resourcemanagerpb.GetFolderRequest{Name: "folders/" + id})
	if err != nil {
		return "", fmt.Errorf("reading folder %s (resourcemanager.folders.get): %w", id, err)
	}
	return f.GetParent(), nil
}
