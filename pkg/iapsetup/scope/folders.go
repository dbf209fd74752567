package scope

// Folder entries of a Scope ("folders/123"): deciding them per event
// (Check, through an AncestryReader with bounded, expiring caches and
// singleflight) and expanding them for enumeration (Projects, through a
// FolderDirectory).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
	"github.com/iapguard/iapguard/pkg/iapsetup/internal/sentinel"
)

// AncestryReader reads one link of the resource hierarchy at a time.
// internal/gcp.ProjectDirectory implements it with Resource Manager v3
// GetProject and GetFolder; the emulator serves both. Its errors wrap
// iapsetup's sentinels (ErrPermission, ErrNotFound, ErrTransient...), as
// every adapter's do.
type AncestryReader interface {
	// ProjectParent returns the parent of project (an id or a number):
	// organizations/N, folders/N, or "" for a project without a parent.
	// Needs resourcemanager.projects.get on the project.
	ProjectParent(ctx context.Context, project string) (string, error)
	// FolderParent returns the parent of folders/ID (organizations/N or
	// folders/N). Needs resourcemanager.folders.get on the folder.
	FolderParent(ctx context.Context, id string) (string, error)
}

// AncestryOptions tune the ancestry caches of WithAncestry.
type AncestryOptions struct {
	// TTL is how long a project's or a folder's parent is cached. A
	// project moved to another folder is judged by its old place for up
	// to TTL. Default 10 minutes.
	TTL time.Duration
	// DeniedTTL is how long a link that could not be read (PERMISSION_DENIED
	// or NOT_FOUND: out of scope) is cached. Default 1 minute, so a fixed
	// grant takes effect soon.
	DeniedTTL time.Duration
	// Size bounds each cache (projects; folders); the least recently used
	// entry is evicted first. Default cache.DefaultSize.
	Size int
	// now is the clock (tests set it). Default time.Now.
	now func() time.Time
}

// maxAncestry bounds the links Check follows: Google nests folders at most
// 10 deep under the organisation.
const maxAncestry = 16

// ancestry resolves and caches the links from projects up to their
// organisation. Shared by every copy of the Scope it was attached to.
type ancestry struct {
	projects *cache.Loading[link] // by project id or number, as named
	folders  *cache.Loading[link] // by folder id
}

// link is one cached parent, or why it could not be read.
type link struct {
	parent string
	denied string // non-empty: the read was refused (out of scope)
}

// linkLoader reads one link with read and says how long to cache it: a
// parent for o.TTL, a refusal (PERMISSION_DENIED, NOT_FOUND) for
// o.DeniedTTL; other errors are returned and not cached. perm names the
// permission the read needs, for the refusal's reason.
func linkLoader(o AncestryOptions, perm func(key string) string, read func(ctx context.Context, key string) (string, error)) func(context.Context, string) (link, time.Duration, error) {
	return func(ctx context.Context, key string) (link, time.Duration, error) {
		parent, err := read(ctx, key)
		switch {
		case err == nil:
			return link{parent: parent}, o.TTL, nil
		case errors.Is(err, sentinel.ErrPermission) || errors.Is(err, sentinel.ErrNotFound):
			return link{denied: fmt.Sprintf("%s (the function needs %s; granted on the listed folders, it reaches everything below them)", oneLineErr(err), perm(key))}, o.DeniedTTL, nil
		default:
			return link{}, 0, err
		}
	}
}

// WithAncestry returns a copy of s whose Check resolves folder entries
// through r, with caches bounded and expiring as o says. Without folder
// entries, Check never calls r.
func (s Scope) WithAncestry(r AncestryReader, o AncestryOptions) Scope {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Minute
	}
	if o.DeniedTTL <= 0 {
		o.DeniedTTL = time.Minute
	}
	if o.Size <= 0 {
		o.Size = cache.DefaultSize
	}
	if o.now == nil {
		o.now = time.Now
	}
	s.anc = &ancestry{
		projects: cache.NewLoading(o.Size, o.now, linkLoader(o,
			func(p string) string { return "resourcemanager.projects.get on projects/" + p }, r.ProjectParent)),
		folders: cache.NewLoading(o.Size, o.now, linkLoader(o,
			func(id string) string { return "resourcemanager.folders.get on folders/" + id }, r.FolderParent)),
	}
	return s
}

// HasFolders reports whether the scope has folder entries.
func (s Scope) HasFolders() bool { return len(s.folders) > 0 }

// Folders returns the scope's folder entries ("folders/N"), sorted.
func (s Scope) Folders() []string {
	out := make([]string, 0, len(s.folders))
	for id := range s.folders {
		out = append(out, "folders/"+id)
	}
	slices.SortFunc(out, func(a, b string) int { // numeric order
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	})
	return out
}

// Check decides whether project (an id or a number, as an event names it)
// is in scope. in is true, or reason says why not (for a rejected
// outcome). It costs no call when Allows decides (an id, number or pattern
// entry matches) or the scope has no folder entries; otherwise it walks the
// project's ancestry — GetProject, then GetFolder for each folder that is
// not listed, until a listed folder (in) or an organisation or a project
// without parent (out) — through the cache, with concurrent checks of one
// project or folder sharing one call.
//
// A link Resource Manager refuses to read (PERMISSION_DENIED, NOT_FOUND)
// puts the project out of scope, with the reason: with the function's
// Resource Manager role granted on each listed folder, it can read every
// project and folder below them and nothing else. Any other error is
// returned (classified as the reconciler classifies API errors: UNAVAILABLE
// and the like are transient, the event is redelivered).
//
// A scope with folder entries but no AncestryReader answers out of scope
// for projects Allows does not allow, saying so.
func (s Scope) Check(ctx context.Context, project string) (in bool, reason string, err error) {
	if s.Allows(project) {
		return true, "", nil
	}
	// The reasons are rendered only for a project out of scope: rendering
	// the scope sorts its entries.
	outside := func(why string) string {
		return fmt.Sprintf("project %s is outside iapguard's scope (%s)%s", project, s, why)
	}
	if len(s.folders) == 0 || project == "" {
		return false, outside(""), nil
	}
	if s.anc == nil {
		return false, outside("; its folders were not checked: no Resource Manager client is configured"), nil
	}
	var parents [maxAncestry]string // the links read so far, above the project
	chain := func(n int) string { return ancestryChain(project, parents[:n]) }
	l, err := s.anc.projects.Get(ctx, project)
	for n := range maxAncestry {
		switch {
		case err != nil:
			return false, "", fmt.Errorf("resolving the ancestry of project %s (%s) for the scope: %w", project, chain(n), err)
		case l.denied != "":
			last := "projects/" + project
			if n > 0 {
				last = parents[n-1]
			}
			return false, outside(fmt.Sprintf("; its ancestry could not be read past %s: %s", last, l.denied)), nil
		case l.parent == "":
			return false, outside(fmt.Sprintf("; ancestry checked: %s (no parent)", chain(n))), nil
		}
		parents[n] = l.parent
		id, isFolder := strings.CutPrefix(l.parent, "folders/")
		if !isFolder {
			return false, outside("; ancestry checked: " + chain(n+1)), nil
		}
		if s.folders[id] {
			return true, "", nil
		}
		l, err = s.anc.folders.Get(ctx, id)
	}
	return false, "", fmt.Errorf("resolving the ancestry of project %s: more than %d levels (%s)", project, maxAncestry, chain(maxAncestry))
}

// ancestryChain renders projects/project → parents[0] → … for messages.
func ancestryChain(project string, parents []string) string {
	return strings.Join(append([]string{"projects/" + project}, parents...), " → ")
}

// oneLineErr shortens err to its first line.
func oneLineErr(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// FolderDirectory is what enumerating a scope with folder entries needs
// besides the full project list. internal/gcp.ProjectDirectory implements
// it with Resource Manager v3 Folders.ListFolders and
// Projects.SearchProjects "parent:…".
type FolderDirectory interface {
	ProjectLister
	// ListFolders returns the names (folders/N) of the folders directly
	// under parent (folders/N). Needs resourcemanager.folders.list on
	// parent.
	ListFolders(ctx context.Context, parent string) ([]string, error)
	// ListProjectsIn returns the ACTIVE projects directly under parent
	// (folders/N), not those of its sub-folders. Needs
	// resourcemanager.projects.get on each project returned.
	ListProjectsIn(ctx context.Context, parent string) ([]ProjectInfo, error)
}

// projectsWithFolders is Projects for a scope with folder entries. It
// first walks the folder tree below each listed folder (one ListFolders
// per folder in the tree, more for trees wider than a page). Then:
//
//   - with patterns (which need the full project list anyway): one
//     ListProjects (every project, with its parent; a call per 500), a
//     project being in scope when allowed by id, number or pattern, or
//     when its parent is in the tree; no per-project call;
//   - without: one ListProjectsIn per folder in the tree.
//
// So a folder tree of F folders costs F + ceil(N/500) calls with patterns,
// 2F without, never a call per project. Listing every project and reading
// each one's ancestry would cost ceil(N/500) plus a GetFolder per distinct
// folder on the way up — more as soon as the organisation has more folders
// than the listed trees, which is the usual case.
func (s Scope) projectsWithFolders(ctx context.Context, l ProjectLister) ([]ProjectInfo, error) {
	fd, ok := l.(FolderDirectory)
	if !ok {
		return nil, ErrNeedDirectory
	}
	tree := map[string]bool{}
	queue := s.Folders()
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if tree[f] {
			continue
		}
		tree[f] = true
		kids, err := fd.ListFolders(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("listing the folders under %s to enumerate scope %s: %w", f, s, err)
		}
		queue = append(queue, kids...)
	}
	if s.all || len(s.patterns) > 0 {
		all, err := fd.ListProjects(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing projects to enumerate scope %s: %w", s, err)
		}
		return s.selectIn(all, func(p ProjectInfo) bool { return tree[p.Parent] }), nil
	}
	folders := make([]string, 0, len(tree))
	for f := range tree {
		folders = append(folders, f)
	}
	sort.Strings(folders)
	var under []ProjectInfo
	for _, f := range folders {
		ps, err := fd.ListProjectsIn(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("listing the projects in %s to enumerate scope %s: %w", f, s, err)
		}
		under = append(under, ps...)
	}
	return s.selectIn(under, func(ProjectInfo) bool { return true }), nil
}
