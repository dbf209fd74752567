package gcp

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	crm "google.golang.org/api/cloudresourcemanager/v3"

	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// DefaultProjectPageSize is the page size ProjectDirectory asks
// SearchProjects for.
const DefaultProjectPageSize = 500

// ProjectDirectory reads projects and folders through Cloud Resource
// Manager v3 (REST, google.golang.org/api/cloudresourcemanager/v3): the same
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
	c         *crm.Service
	closeIdle func()
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
	ep, err := endpointsFor(opts)
	if err != nil {
		return nil, err
	}
	c, err := crm.NewService(ctx, ep.root...)
	if err != nil {
		return nil, fmt.Errorf("creating Resource Manager client: %w", err)
	}
	return &ProjectDirectory{c: c, closeIdle: ep.closeIdle, PageSize: DefaultProjectPageSize}, nil
}

// Close releases the emulator client's idle connections (nothing against
// Google: the REST client holds no connection of its own).
func (d *ProjectDirectory) Close() error {
	if d.closeIdle != nil {
		d.closeIdle()
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
	var out []scope.ProjectInfo
	err := d.c.Projects.Search().Query(query).PageSize(int64(d.pageSize())).Pages(ctx, func(r *crm.SearchProjectsResponse) error {
		for _, p := range r.Projects {
			if p.State != "ACTIVE" {
				continue
			}
			num, ok := strings.CutPrefix(p.Name, "projects/")
			if _, perr := strconv.ParseInt(num, 10, 64); !ok || perr != nil {
				num = "" // not projects/NUMBER: keep the id alone
			}
			out = append(out, scope.ProjectInfo{ID: p.ProjectId, Number: num, Parent: p.Parent})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("searching projects %q (resourcemanager.projects.search): %w", query, err)
	}
	return out, nil
}

// ListFolders returns the names of the folders directly under parent
// (folders/N or organizations/N), following every page of ListFolders.
// Needs resourcemanager.folders.list on parent.
func (d *ProjectDirectory) ListFolders(ctx context.Context, parent string) ([]string, error) {
	if err := checkRESTName(parent); err != nil {
		return nil, err
	}
	var out []string
	err := d.c.Folders.List().Parent(parent).PageSize(int64(d.pageSize())).Pages(ctx, func(r *crm.ListFoldersResponse) error {
		for _, f := range r.Folders {
			if f.State == "ACTIVE" {
				out = append(out, f.Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the folders under %s (resourcemanager.folders.list): %w", parent, err)
	}
	return out, nil
}

// ProjectParent returns the parent of project (an id or a number):
// organizations/N, folders/N, or "" (one GetProject). Needs
// resourcemanager.projects.get on the project; Google answers
// PERMISSION_DENIED for a project that does not exist too.
func (d *ProjectDirectory) ProjectParent(ctx context.Context, project string) (_ string, err error) {
	defer classify(&err)
	if err := checkRESTID(project); err != nil {
		return "", err
	}
	p, err := d.c.Projects.Get("projects/" + project).Context(ctx).Do()
	if err != nil {
		return "", fmt.Errorf("reading project %s (resourcemanager.projects.get): %w", project, err)
	}
	return p.Parent, nil
}

// FolderParent returns the parent of folders/ID (one GetFolder). Needs
// resourcemanager.folders.get on the folder.
func (d *ProjectDirectory) FolderParent(ctx context.Context, id string) (_ string, err error) {
	defer classify(&err)
	if err := checkRESTID(id); err != nil {
		return "", err
	}
	f, err := d.c.Folders.Get("folders/" + id).Context(ctx).Do()
	if err != nil {
		return "", fmt.Errorf("reading folder %s (resourcemanager.folders.get): %w", id, err)
	}
	return f.Parent, nil
}
