// Package scope is iapguard's project allowlist (IAPGUARD_PROJECTS): which
// projects the reconciler may act on, decided per event without a call for
// ids, numbers and patterns and through the resource hierarchy for folder
// entries (folders.go), and enumerated for sweeps and iapctl --all-projects.
// A Scope satisfies iapsetup.ScopeCheck.
package scope

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Scope is the allowlist of projects iapguard may act on. A reconcile of a
// service in a project outside the scope ends "rejected" without a single
// API call. The zero Scope allows nothing; iapsetup.New refuses it, so a
// missing configuration is loud rather than silently permissive.
//
// A scope is written as comma-separated entries (IAPGUARD_PROJECTS,
// Parse, New):
//
//   - "*": every project the credentials reach, by id or number.
//   - a project id ("team-a-prod", "example.com:legacy") or a project number
//     ("123456789012"): that project, named exactly that way.
//   - a pattern: a project id with one or more '*', each matching any run of
//     characters, possibly empty ("team-*", "*-prod", "team-*-prod").
//   - a folder, "folders/123": every project under that folder, however
//     deep (in its sub-folders too).
//
// Patterns match project ids only, never numbers: iapguard cannot map a
// number to an id without an API call, and Allows must cost none. A
// project that events name by number (audit entries written by Google
// service agents do) is matched by an id entry only if its number is
// listed; the deployment lists the numbers of the projects the patterns
// match when it runs (docs/orgwide.md).
//
// Folder entries need the project's ancestry, which costs Resource Manager
// calls: Allows ignores them, and Check, given an AncestryReader
// (WithAncestry), reads the ancestry of a project no id or pattern entry
// allows — GetProject, then GetFolder up the chain until a listed folder or
// the organisation — and caches every link (folders.go). A project named
// by number resolves the same way, so folder entries cover numbers too.
type Scope struct {
	all      bool
	projects map[string]bool
	patterns []pattern       // sorted by raw
	folders  map[string]bool // folder ids, without "folders/"
	anc      *ancestry       // nil: folder entries cannot be resolved
}

// pattern is a scope entry with '*', split at the stars once.
type pattern struct {
	raw   string
	parts []string
}

// AllProjects is a scope that allows every project the credentials reach.
func AllProjects() Scope { return Scope{all: true} }

// New allows exactly the given entries (see Scope): project ids
// and numbers match as written, entries with '*' are patterns over ids,
// "folders/N" entries are folders, and "*" alone allows every project.
// Blank entries are ignored. Entries are not validated; use Parse for
// text from a person.
func New(entries ...string) Scope {
	s := Scope{projects: map[string]bool{}, folders: map[string]bool{}}
	for _, e := range entries {
		switch e = strings.TrimSpace(e); {
		case e == "":
		case e == "*":
			s.all = true
		case strings.HasPrefix(e, "folders/"):
			s.folders[strings.TrimPrefix(e, "folders/")] = true
		case strings.Contains(e, "*"):
			if !slices.ContainsFunc(s.patterns, func(p pattern) bool { return p.raw == e }) {
				s.patterns = append(s.patterns, pattern{raw: e, parts: strings.Split(e, "*")})
			}
		default:
			s.projects[e] = true
		}
	}
	slices.SortFunc(s.patterns, func(a, b pattern) int { return strings.Compare(a.raw, b.raw) })
	return s
}

// Parse parses "*" (every project) or comma-separated project ids,
// numbers, patterns and folders/N (see Scope). It rejects entries that
// cannot name a project or a folder: other resource names ("projects/p",
// "organizations/1"), spaces, and glob syntax other than '*' ("?",
// "[...]").
func Parse(s string) (Scope, error) {
	if strings.TrimSpace(s) == "*" {
		return AllProjects(), nil
	}
	var entries []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if e == "*" {
			return Scope{}, fmt.Errorf("project scope %q: \"*\" (every project) cannot be combined with other entries", s)
		}
		if err := validEntry(e); err != nil {
			return Scope{}, fmt.Errorf("project scope %q: %w", s, err)
		}
		entries = append(entries, e)
	}
	sc := New(entries...)
	if sc.Empty() {
		return Scope{}, fmt.Errorf("project scope %q: want \"*\" or comma-separated project ids, numbers, patterns such as team-* or folders/N", s)
	}
	return sc, nil
}

// validEntry accepts project ids (letters, digits, '-', and the '.' and ':'
// of domain-scoped ids), numbers, those with '*', and folders/N.
func validEntry(e string) error {
	if id, ok := strings.CutPrefix(e, "folders/"); ok {
		if !isProjectNumber(id) || id[0] == '0' || len(id) > 20 {
			return fmt.Errorf("%q: a folder entry is folders/ followed by the folder's number, such as folders/123456789012", e)
		}
		return nil
	}
	if strings.HasPrefix(e, "organizations/") {
		return fmt.Errorf("%q: organizations are not scope entries; use \"*\", list the folders (folders/N), or a pattern their projects share (docs/orgwide.md)", e)
	}
	if strings.Contains(e, "/") {
		return fmt.Errorf("%q is not a project id, number, pattern or folders/N", e)
	}
	if len(e) > 100 {
		return fmt.Errorf("%q is not a project id, number or pattern (too long)", e)
	}
	for _, c := range e {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.:_*", c)
		if !ok {
			return fmt.Errorf("%q is not a project id, number or pattern (only '*' is a wildcard)", e)
		}
	}
	return nil
}

// Empty reports whether the scope allows nothing.
func (s Scope) Empty() bool {
	return !s.all && len(s.projects) == 0 && len(s.patterns) == 0 && len(s.folders) == 0
}

// Allows reports whether project (an id or a number, as an event names it)
// is allowed by the scope's "*", id, number or pattern entries. It makes no
// call and does not allocate. It ignores folder entries: Check decides
// with them.
func (s Scope) Allows(project string) bool {
	if s.all || s.projects[project] {
		return true
	}
	if project == "" || isProjectNumber(project) {
		return false
	}
	for _, p := range s.patterns {
		if matchParts(p.parts, project) {
			return true
		}
	}
	return false
}

// With returns a copy of s that also allows the given project ids and
// numbers (blank ones ignored); s is unchanged. iapctl --all-projects gives
// its reconciler the scope With the projects it enumerated, so that
// projects found under a folder entry pass the reconciler's check with no
// further call.
func (s Scope) With(projects ...string) Scope {
	out := s
	out.projects = make(map[string]bool, len(s.projects)+len(projects))
	maps.Copy(out.projects, s.projects)
	for _, p := range projects {
		if p = strings.TrimSpace(p); p != "" {
			out.projects[p] = true
		}
	}
	return out
}

// All reports whether the scope allows every project.
func (s Scope) All() bool { return s.all }

// Listed returns the project ids and numbers the scope names explicitly,
// sorted. They can be enumerated without a project directory.
func (s Scope) Listed() []string {
	return slices.Sorted(maps.Keys(s.projects))
}

// Patterns returns the scope's patterns, sorted.
func (s Scope) Patterns() []string {
	var out []string
	for _, p := range s.patterns {
		out = append(out, p.raw)
	}
	return out
}

// NeedsDirectory reports whether enumerating the scope's projects needs a
// directory: a list of the projects that exist ("*" or patterns), or the
// folder tree (folder entries; then a FolderDirectory).
func (s Scope) NeedsDirectory() bool { return s.all || len(s.patterns) > 0 || len(s.folders) > 0 }

// maxShown bounds the entries String renders, so that a rejected outcome's
// reason stays short however many projects the scope lists.
const maxShown = 8

// String renders the scope for messages: "*", or the listed projects, the
// patterns, then the folders, comma-separated (what Parse reads back);
// past maxShown entries the folders and patterns come first and the rest
// is counted ("…and 1992 more").
func (s Scope) String() string {
	if s.all {
		return "*"
	}
	listed, patterns, folders := s.Listed(), s.Patterns(), s.Folders()
	if len(listed)+len(patterns)+len(folders) <= maxShown {
		return strings.Join(append(append(listed, patterns...), folders...), ",")
	}
	shown := append(append(folders, patterns...), listed...)
	return fmt.Sprintf("%s,…and %d more", strings.Join(shown[:maxShown], ","), len(shown)-maxShown)
}

// ProjectInfo names one project. Any field may be empty when unknown.
type ProjectInfo struct {
	ID     string `json:"id,omitempty"`
	Number string `json:"number,omitempty"`
	// Parent is organizations/N or folders/N, as Resource Manager returns
	// it; empty when unknown or when the project has no parent.
	Parent string `json:"parent,omitempty"`
}

// Name returns the id, or the number when the id is unknown.
func (p ProjectInfo) Name() string {
	if p.ID != "" {
		return p.ID
	}
	return p.Number
}

// ProjectLister lists the projects that exist. internal/gcp.ProjectDirectory
// implements it with Resource Manager v3 SearchProjects, which returns the
// ACTIVE projects the caller has resourcemanager.projects.get on; the
// emulator serves the same API over its project table.
type ProjectLister interface {
	ListProjects(ctx context.Context) ([]ProjectInfo, error)
}

// ErrNeedDirectory is returned by Projects for a scope with "*", patterns
// or folders when no ProjectLister is given, or with folders when the
// lister is not a FolderDirectory.
var ErrNeedDirectory = errors.New("the scope has patterns or folders or is \"*\": enumerating its projects needs a project directory")

// Projects enumerates the projects in the scope, for the sweep and
// `iapctl audit --all-projects`: each project once, sorted by name.
//
// With a lister, a listed project is in scope when its id or its number is
// allowed, and explicit entries the lister does not know are kept as they
// are written, without an error: the lister returns only the projects the
// caller may see, the caller may still reach the others, and the command
// working on each project then says what is wrong with it (iapctl
// --all-projects reports that project as not scanned and goes on). Without one (l nil), only a scope without patterns can be
// enumerated (else ErrNeedDirectory): its explicit entries, where a
// project listed by id and by number appears twice.
//
// Folder entries need l to be a FolderDirectory: see projectsWithFolders
// (folders.go) for how, and at what cost, they are expanded.
func (s Scope) Projects(ctx context.Context, l ProjectLister) ([]ProjectInfo, error) {
	if len(s.folders) > 0 {
		return s.projectsWithFolders(ctx, l)
	}
	if l == nil {
		if s.NeedsDirectory() {
			return nil, ErrNeedDirectory
		}
		return s.Select(nil), nil
	}
	all, err := l.ListProjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing projects to enumerate scope %s: %w", s, err)
	}
	return s.Select(all), nil
}

// Select returns the candidates in the scope (by id or by number), merged
// with the explicit entries no candidate matches, each project once,
// sorted by name. It does not look at folder entries (Projects does).
func (s Scope) Select(candidates []ProjectInfo) []ProjectInfo {
	return s.selectIn(candidates, func(ProjectInfo) bool { return false })
}

// selectIn is Select where a candidate for which under returns true is in
// scope too.
func (s Scope) selectIn(candidates []ProjectInfo, under func(ProjectInfo) bool) []ProjectInfo {
	seen := map[string]bool{}
	var out []ProjectInfo
	known := func(k string) bool { return k != "" && seen[k] }
	for _, c := range candidates {
		in := c.ID != "" && s.Allows(c.ID) || c.Number != "" && s.Allows(c.Number) || under(c)
		if !in || known(c.ID) || known(c.Number) {
			continue
		}
		seen[c.ID], seen[c.Number] = true, true
		out = append(out, c)
	}
	for _, p := range s.Listed() {
		if known(p) {
			continue
		}
		seen[p] = true
		if isProjectNumber(p) {
			out = append(out, ProjectInfo{Number: p})
		} else {
			out = append(out, ProjectInfo{ID: p})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// isProjectNumber reports whether s is all digits (project ids start with a
// letter).
func isProjectNumber(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// matchParts reports whether name matches a pattern split at its stars,
// where each '*' matches any run of characters (possibly empty) and
// everything else matches itself. Finding the parts between stars leftmost
// first is exact for this dialect.
func matchParts(parts []string, name string) bool {
	if len(parts) == 1 {
		return parts[0] == name
	}
	first, last := parts[0], parts[len(parts)-1]
	if !strings.HasPrefix(name, first) {
		return false
	}
	name = name[len(first):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(name, mid)
		if i < 0 {
			return false
		}
		name = name[i+len(mid):]
	}
	return strings.HasSuffix(name, last)
}
