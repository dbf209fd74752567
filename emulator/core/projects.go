package core

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Project is one emulated Google Cloud project.
type Project struct {
	ID     string
	Number int64
}

// ParseProject parses "ID=NUMBER" (the --project flag syntax).
func ParseProject(s string) (Project, error) {
	id, num, ok := strings.Cut(s, "=")
	if !ok || id == "" {
		return Project{}, fmt.Errorf("project %q: want ID=NUMBER", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return Project{}, fmt.Errorf("project %q: NUMBER must be a positive integer", s)
	}
	return Project{ID: id, Number: n}, nil
}

// NumberString returns the project number in decimal.
func (p Project) NumberString() string { return strconv.FormatInt(p.Number, 10) }

// Projects maps project IDs to numbers and back. Google accepts either form
// in most resource names; surfaces resolve through Lookup and echo the form
// the caller used.
type Projects struct {
	mu       sync.RWMutex
	byID     map[string]Project
	byNumber map[int64]Project
}

// NewProjects returns a table holding ps.
func NewProjects(ps ...Project) *Projects {
	t := &Projects{byID: map[string]Project{}, byNumber: map[int64]Project{}}
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
	out := make([]Project, 0, len(t.byID))
	for _, p := range t.byID {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
