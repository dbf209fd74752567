package iapsetup

import (
	"fmt"
	"sort"
	"strings"
)

// Scope is the allowlist of projects iapguard may act on. A reconcile of a
// service in a project outside the scope ends "rejected" without a single
// API call. The zero Scope allows nothing; New refuses it, so a missing
// configuration is loud rather than silently permissive.
//
// Projects are matched as written: iapguard cannot map ids to numbers without
// an API call, so list both forms when events may name either.
type Scope struct {
	all      bool
	projects map[string]bool
}

// AllProjects is a scope that allows every project the credentials reach.
func AllProjects() Scope { return Scope{all: true} }

// ProjectScope allows exactly the given project ids or numbers.
func ProjectScope(projects ...string) Scope {
	s := Scope{projects: map[string]bool{}}
	for _, p := range projects {
		if p = strings.TrimSpace(p); p != "" {
			s.projects[p] = true
		}
	}
	return s
}

// ParseScope parses "*" (every project) or a comma-separated list of project
// ids or numbers.
func ParseScope(s string) (Scope, error) {
	if strings.TrimSpace(s) == "*" {
		return AllProjects(), nil
	}
	sc := ProjectScope(strings.Split(s, ",")...)
	if sc.Empty() {
		return Scope{}, fmt.Errorf("project scope %q: want \"*\" or a comma-separated list of project ids or numbers", s)
	}
	for p := range sc.projects {
		if strings.ContainsAny(p, "/ *") {
			return Scope{}, fmt.Errorf("project scope %q: %q is not a project id or number", s, p)
		}
	}
	return sc, nil
}

// Empty reports whether the scope allows nothing.
func (s Scope) Empty() bool { return !s.all && len(s.projects) == 0 }

// Allows reports whether project is in scope.
func (s Scope) Allows(project string) bool { return s.all || s.projects[project] }

func (s Scope) String() string {
	if s.all {
		return "*"
	}
	ps := make([]string, 0, len(s.projects))
	for p := range s.projects {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return strings.Join(ps, ",")
}
