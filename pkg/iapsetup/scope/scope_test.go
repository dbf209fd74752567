package scope

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"team-*", "team-a", true},
		{"team-*", "team-", true},
		{"team-*", "team", false},
		{"team-*", "xteam-a", false},
		{"*-prod", "billing-prod", true},
		{"*-prod", "billing-prod-2", false},
		{"team-*-prod", "team-a-prod", true},
		{"team-*-prod", "team--prod", true},
		{"team-*-prod", "team-prod", false}, // the two dashes cannot share one character
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"*a*b*", "xaxbx", true},
		{"*a*b*", "xbxax", false},
		{"a*b*b", "ab", false},
		{"a*b*b", "abb", true},
		{"*", "", true},
		{"**", "anything", true},
		{"exact", "exact", true},
		{"example.com:*", "example.com:legacy", true},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+"~"+tc.name, func(t *testing.T) {
			if got := matchParts(strings.Split(tc.pattern, "*"), tc.name); got != tc.want {
				t.Errorf("matchParts(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
			}
		})
	}
}

func TestScopeAllows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		scope string
		allow []string
		deny  []string
	}{
		{
			name: "ids and numbers as written", scope: "p1, 123",
			allow: []string{"p1", "123"}, deny: []string{"p2", "1234", "", "p1 "},
		},
		{
			name: "patterns match ids", scope: "team-*,*-prod",
			allow: []string{"team-a", "team-b-x", "billing-prod"},
			deny:  []string{"other", "team", "billing-prod-2"},
		},
		{
			name: "a pattern alone leaves numbers out", scope: "1*",
			allow: []string{"1abc"}, deny: []string{"123", "1"},
		},
		{
			name: "listed number with a pattern", scope: "team-*,123456789012",
			allow: []string{"team-a", "123456789012"}, deny: []string{"42", "other"},
		},
		{
			name: "every project", scope: "*",
			allow: []string{"anything", "42"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.scope)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.scope, err)
			}
			for _, p := range tc.allow {
				if !s.Allows(p) {
					t.Errorf("%s: Allows(%q) = false, want true", s, p)
				}
			}
			for _, p := range tc.deny {
				if s.Allows(p) {
					t.Errorf("%s: Allows(%q) = true, want false", s, p)
				}
			}
		})
	}
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		want     string // String(); empty with wantErr
		wantErr  string
		patterns []string
	}{
		{in: " p1, 123 ,", want: "123,p1"},
		{in: "team-*, p1, team-*", want: "p1,team-*", patterns: []string{"team-*"}},
		{in: "*", want: "*"},
		{in: " * ", want: "*"},
		{in: "example.com:legacy,b-*-prod", want: "example.com:legacy,b-*-prod", patterns: []string{"b-*-prod"}},
		{in: "", wantErr: "want"},
		{in: " , ", wantErr: "want"},
		{in: "p1,projects/p2", wantErr: `"projects/p2"`},
		{in: "folders/123", want: "folders/123"},
		{in: "folders/20, team-*, p1, folders/3", want: "p1,team-*,folders/3,folders/20", patterns: []string{"team-*"}},
		{in: "organizations/1", wantErr: "organizations are not scope entries"},
		{in: "folders/", wantErr: "a folder entry is folders/ followed by the folder's number"},
		{in: "folders/abc", wantErr: "a folder entry is folders/"},
		{in: "folders/012", wantErr: "a folder entry is folders/"},
		{in: "folders/1/x", wantErr: "a folder entry is folders/"},
		{in: "folders/1,*", wantErr: "cannot be combined"},
		{in: "p?", wantErr: "only '*' is a wildcard"},
		{in: "team-[ab]", wantErr: "only '*' is a wildcard"},
		{in: "p1,*", wantErr: "cannot be combined"},
		{in: "p 1", wantErr: "not a project id"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			s, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if diff := cmp.Diff(tc.patterns, s.Patterns()); diff != "" {
				t.Errorf("Patterns() (-want +got):\n%s", diff)
			}
			// What String renders parses back to the same scope.
			again, err := Parse(s.String())
			if err != nil || again.String() != s.String() {
				t.Errorf("Parse(String()) = %v, %v; want %v", again, err, s)
			}
		})
	}
}

// A deployment-sized scope renders short, patterns first.
func TestScopeStringAbbreviates(t *testing.T) {
	t.Parallel()
	s, _ := scopeOf1000()
	want := "*-sandbox,team-*,100000000000,100000000001,100000000002,100000000003,100000000004,100000000005,…and 1994 more"
	if got := s.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

type listerFunc func(context.Context) ([]ProjectInfo, error)

func (f listerFunc) ListProjects(ctx context.Context) ([]ProjectInfo, error) { return f(ctx) }

func TestScopeProjects(t *testing.T) {
	t.Parallel()
	directory := []ProjectInfo{
		{ID: "team-a", Number: "101"},
		{ID: "team-b", Number: "102"},
		{ID: "other", Number: "103"},
		{ID: "legacy", Number: "104"},
		{ID: "team-a", Number: "101"}, // listed twice by a paging directory
	}
	list := listerFunc(func(context.Context) ([]ProjectInfo, error) { return directory, nil })
	tests := []struct {
		name    string
		scope   Scope
		lister  ProjectLister
		want    []ProjectInfo
		wantErr error
	}{
		{
			name: "pattern, with a directory", scope: New("team-*"), lister: list,
			want: []ProjectInfo{{ID: "team-a", Number: "101"}, {ID: "team-b", Number: "102"}},
		},
		{
			name: "id and number of one project come out once", scope: New("legacy", "104", "team-*"), lister: list,
			want: []ProjectInfo{{ID: "legacy", Number: "104"}, {ID: "team-a", Number: "101"}, {ID: "team-b", Number: "102"}},
		},
		{
			name: "a project listed by number only is found by its number", scope: New("103"), lister: list,
			want: []ProjectInfo{{ID: "other", Number: "103"}},
		},
		{
			name: "listed entries the directory does not know are kept", scope: New("team-*", "hidden", "999"), lister: list,
			want: []ProjectInfo{{Number: "999"}, {ID: "hidden"}, {ID: "team-a", Number: "101"}, {ID: "team-b", Number: "102"}},
		},
		{
			name: "patterns never match numbers", scope: New("10*"), lister: list,
		},
		{
			name: "an explicit id comes out with the number the directory knows", scope: New("other"), lister: list,
			want: []ProjectInfo{{ID: "other", Number: "103"}},
		},
		{
			name: "an explicit id and the pattern matching it: once", scope: New("team-b", "team-*"), lister: list,
			want: []ProjectInfo{{ID: "team-a", Number: "101"}, {ID: "team-b", Number: "102"}},
		},
		{
			name: "every project", scope: AllProjects(), lister: list,
			want: []ProjectInfo{{ID: "legacy", Number: "104"}, {ID: "other", Number: "103"}, {ID: "team-a", Number: "101"}, {ID: "team-b", Number: "102"}},
		},
		{
			name: "explicit entries need no directory", scope: New("p2", "p1", "42"),
			want: []ProjectInfo{{Number: "42"}, {ID: "p1"}, {ID: "p2"}},
		},
		{name: "patterns need a directory", scope: New("team-*"), wantErr: ErrNeedDirectory},
		{name: "so does every project", scope: AllProjects(), wantErr: ErrNeedDirectory},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.scope.Projects(t.Context(), tc.lister)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Projects() error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Projects() (-want +got):\n%s", diff)
			}
		})
	}

	boom := errors.New("resource manager unavailable")
	_, err := New("team-*").Projects(t.Context(), listerFunc(func(context.Context) ([]ProjectInfo, error) { return nil, boom }))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "team-*") {
		t.Errorf("Projects() with a failing lister = %v, want the lister's error wrapped with the scope", err)
	}
}

// scopeOf1000 is a deployment-sized scope: 1,000 projects listed by id and
// number, plus two patterns.
func scopeOf1000() (Scope, []string) {
	var entries, probes []string
	for i := range 1000 {
		id, num := fmt.Sprintf("proj-%04d", i), fmt.Sprintf("%d", 100000000000+i)
		entries = append(entries, id, num)
		probes = append(probes, id, num, fmt.Sprintf("team-%04d", i), fmt.Sprintf("stranger-%04d", i))
	}
	return New(append(entries, "team-*", "*-sandbox")...), probes
}

// BenchmarkScopeAllows measures the scope decision the function makes for
// every event at 1,000 projects (hits by id, by number, by pattern, and
// misses): no call, no allocation.
func BenchmarkScopeAllows(b *testing.B) {
	s, probes := scopeOf1000()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := range b.N {
		if s.Allows(probes[i%len(probes)]) {
			n++
		}
	}
	if b.N >= len(probes) && n == 0 {
		b.Fatal("nothing allowed")
	}
}

// BenchmarkScopeProjects enumerates a 1,000-project scope from a 2,000-project directory.
func BenchmarkScopeProjects(b *testing.B) {
	s, _ := scopeOf1000()
	var dir []ProjectInfo
	for i := range 1000 {
		dir = append(dir, ProjectInfo{ID: fmt.Sprintf("proj-%04d", i), Number: fmt.Sprintf("%d", 100000000000+i)},
			ProjectInfo{ID: fmt.Sprintf("outside-%04d", i), Number: fmt.Sprintf("%d", 200000000000+i)})
	}
	l := listerFunc(func(context.Context) ([]ProjectInfo, error) { return dir, nil })
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Projects(context.Background(), l)
		if err != nil || len(got) != 1000 {
			b.Fatalf("Projects() = %d projects, %v; want 1000", len(got), err)
		}
	}
}
