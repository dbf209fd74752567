package core

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
)

// Project is one emulated Google Cloud project.
type Project struct {
	ID     string
	Number int64
	// Parent is "organizations/N", "folders/N", or empty for a project
	// with no parent (Google still has a few of those).
	Parent string
}

// ParseProject parses "ID=NUMBER" or "ID=NUMBER@PARENT" (the --project
// flag syntax), PARENT being organizations/N or folders/N.
func ParseProject(s string) (Project, error) {
	id, rest, ok := strings.Cut(s, "=")
	if !ok || id == "" {
		return Project{}, fmt.Errorf("project %q: want ID=NUMBER or ID=NUMBER@PARENT", s)
	}
	num, parent, hasParent := strings.Cut(rest, "@")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return Project{}, fmt.Errorf("project %q: NUMBER must be a positive integer", s)
	}
	if hasParent {
		if err := ValidParent(parent); err != nil {
			return Project{}, fmt.Errorf("project %q: %w", s, err)
		}
	}
	return Project{ID: id, Number: n, Parent: parent}, nil
}

// Folder is one emulated Resource Manager folder: folders/ID under Parent
// (organizations/N or folders/N).
type Folder struct {
	ID     string // digits, as Google's folder ids
	Parent string
}

// Name returns folders/ID.
func (f Folder) Name() string { return "folders/" + f.ID }

// ParseFolder parses "ID=PARENT" (the --folder flag syntax): a numeric
// folder id and organizations/N or folders/N.
func ParseFolder(s string) (Folder, error) {
	id, parent, ok := strings.Cut(s, "=")
	if !ok {
		return Folder{}, fmt.Errorf("folder %q: want ID=PARENT, PARENT being organizations/N or folders/N", s)
	}
	if !positiveNumber(id) {
		return Folder{}, fmt.Errorf("folder %q: ID must be a positive integer", s)
	}
	if err := ValidParent(parent); err != nil {
		return Folder{}, fmt.Errorf("folder %q: %w", s, err)
	}
	return Folder{ID: id, Parent: parent}, nil
}

// ValidParent checks that parent is organizations/N or folders/N.
func ValidParent(parent string) error {
	for _, kind := range []string{"organizations/", "folders/"} {
		if n, ok := strings.CutPrefix(parent, kind); ok && positiveNumber(n) {
			return nil
		}
	}
	return fmt.Errorf("parent %q: want organizations/N or folders/N", parent)
}

func positiveNumber(s string) bool {
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n > 0 && strconv.FormatInt(n, 10) == s
}

// NumberString returns the project number in decimal.
func (p Project) NumberString() string { return strconv.FormatInt(p.Number, 10) }

// Projects maps project IDs to numbers and back. Google accepts either form
// in most resource names; surfaces resolve through Lookup and echo the form
// the caller used.
//
// It also holds the folders projects may live in (the organisations above
// them are implied by the folders' and projects' parents).
type Projects struct {
	mu       sync.RWMutex
	byID     map[string]Project
	byNumber map[int64]Project
	folders  map[string]Folder // by id
}

// NewProjects returns a table holding ps.
func NewProjects(ps ...Project) *Projects {
	t := &Projects{byID: map[string]Project{}, byNumber: map[int64]Project{}, folders: map[string]Folder{}}
	for _, p := range ps {
		t.Add(p)
	}
	return t
}

// Add registers a project. It replaces any project with the same ID or the
// same number (IDs and numbers are unique in Google Cloud), so a replaced
// project's old ID or number no longer resolves.
func (t *Projects) Add(p Project) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byID[p.ID]; ok {
		delete(t.byNumber, old.Number)
	}
	if old, ok := t.byNumber[p.Number]; ok {
		delete(t.byID, old.ID)
	}
	t.byID[p.ID] = p
	t.byNumber[p.Number] = p
}

// Lookup resolves a project ID or number.
func (t *Projects) Lookup(idOrNumber string) (Project, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p, ok := t.byID[idOrNumber]; ok {
		return p, true
	}
	if n, err := strconv.ParseInt(idOrNumber, 10, 64); err == nil {
		p, ok := t.byNumber[n]
		return p, ok
	}
	return Project{}, false
}

// All returns every project, sorted by ID.
func (t *Projects) All() []Project {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.SortedFunc(maps.Values(t.byID), func(a, b Project) int { return strings.Compare(a.ID, b.ID) })
}

// AddFolders registers folders, replacing any with the same id, after
// checking the whole hierarchy: every folders/N named as a parent (of a
// folder, or of a project already in the table) must be a folder of the
// table or of fs, and no folder may be its own ancestor. On error nothing
// is added.
func (t *Projects) AddFolders(fs ...Folder) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := maps.Clone(t.folders)
	for _, f := range fs {
		if !positiveNumber(f.ID) {
			return fmt.Errorf("folder %q: the id must be a positive integer", f.ID)
		}
		if err := ValidParent(f.Parent); err != nil {
			return fmt.Errorf("folder %s: %w", f.Name(), err)
		}
		next[f.ID] = f
	}
	for _, f := range next {
		seen := map[string]bool{}
		for cur := f; ; {
			if seen[cur.ID] {
				return fmt.Errorf("folder %s is its own ancestor", f.Name())
			}
			seen[cur.ID] = true
			pid, ok := strings.CutPrefix(cur.Parent, "folders/")
			if !ok {
				break
			}
			p, ok := next[pid]
			if !ok {
				return fmt.Errorf("folder %s: parent %s is not a folder of the emulator (add it with --folder)", cur.Name(), cur.Parent)
			}
			cur = p
		}
	}
	for _, p := range t.byID {
		if err := parentKnown(p, next); err != nil {
			return err
		}
	}
	t.folders = next
	return nil
}

// CheckParents reports a project whose parent is a folder the table does
// not hold.
func (t *Projects) CheckParents() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.byID {
		if err := parentKnown(p, t.folders); err != nil {
			return err
		}
	}
	return nil
}

func parentKnown(p Project, folders map[string]Folder) error {
	if id, ok := strings.CutPrefix(p.Parent, "folders/"); ok {
		if _, ok := folders[id]; !ok {
			return fmt.Errorf("project %s: parent %s is not a folder of the emulator (add it with --folder)", p.ID, p.Parent)
		}
	}
	return nil
}

// Folder returns folders/ID's folder, by id.
func (t *Projects) Folder(id string) (Folder, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	f, ok := t.folders[id]
	return f, ok
}

// Folders returns every folder, sorted by id (numerically).
func (t *Projects) Folders() []Folder {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// Ids are canonical positive integers (no leading zeros): the shorter
	// is the smaller.
	return slices.SortedFunc(maps.Values(t.folders), func(a, b Folder) int {
		return cmp.Or(cmp.Compare(len(a.ID), len(b.ID)), strings.Compare(a.ID, b.ID))
	})
}

// UnknownProject is Google's answer to a request naming a project that does
// not exist (or that the caller may not see: Google does not tell the two
// apart): 403 PERMISSION_DENIED "Permission denied on resource project X."
// (the API front end's answer, with ErrorInfo reason CONSUMER_INVALID:
// cloudquery issue 5385 records it for Cloud Run v2). Compute differs: it
// answers 404 "The resource 'projects/X' was not found" (package compute).
func UnknownProject(project string) *Error {
	return &Error{Code: codes.PermissionDenied, Reason: "forbidden",
		Message: "Permission denied on resource project " + project + "."}
}
