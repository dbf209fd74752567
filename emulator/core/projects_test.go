package core_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator/core"
)

func TestParseProject(t *testing.T) {
	tests := []struct {
		in      string
		want    core.Project
		wantErr bool
	}{
		{in: "p=12", want: core.Project{ID: "p", Number: 12}},
		{in: "demo-project=123456789012", want: core.Project{ID: "demo-project", Number: 123456789012}},
		{in: "x", wantErr: true},
		{in: "", wantErr: true},
		{in: "=12", wantErr: true},
		{in: "p=", wantErr: true},
		{in: "p=0", wantErr: true},
		{in: "p=-5", wantErr: true},
		{in: "p=abc", wantErr: true},
		{in: "p=1.5", wantErr: true},
		{in: "p=1=2", wantErr: true},
		{in: "p=99999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := core.ParseProject(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseProject(%q) = %+v, %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got != tt.want {
				t.Errorf("ParseProject(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.NumberString() != tt.in[len(tt.want.ID)+1:] {
				t.Errorf("NumberString() = %q", got.NumberString())
			}
		})
	}
}

func TestProjectsLookup(t *testing.T) {
	a, b := core.Project{ID: "alpha", Number: 11}, core.Project{ID: "beta-2", Number: 222}
	ps := core.NewProjects(a, b)
	tests := []struct {
		in   string
		want core.Project
		ok   bool
	}{
		{"alpha", a, true},
		{"11", a, true},
		{"beta-2", b, true},
		{"222", b, true},
		{"gamma", core.Project{}, false},
		{"12", core.Project{}, false},
		{"", core.Project{}, false},
		{"-11", core.Project{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ps.Lookup(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Lookup(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
	if diff := cmp.Diff([]core.Project{a, b}, ps.All()); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
}

func TestProjectsAddReplaces(t *testing.T) {
	tests := []struct {
		name    string
		add     []core.Project
		resolve map[string]string // id or number → ID; "" = unknown
		all     []core.Project
	}{
		{
			name:    "new number for an ID",
			add:     []core.Project{{ID: "a", Number: 1}, {ID: "a", Number: 2}},
			resolve: map[string]string{"a": "a", "2": "a", "1": ""},
			all:     []core.Project{{ID: "a", Number: 2}},
		},
		{
			name:    "number taken by a new ID",
			add:     []core.Project{{ID: "a", Number: 1}, {ID: "b", Number: 1}},
			resolve: map[string]string{"b": "b", "1": "b", "a": ""},
			all:     []core.Project{{ID: "b", Number: 1}},
		},
		{
			name:    "same project twice",
			add:     []core.Project{{ID: "a", Number: 1}, {ID: "a", Number: 1}},
			resolve: map[string]string{"a": "a", "1": "a"},
			all:     []core.Project{{ID: "a", Number: 1}},
		},
		{
			name:    "unrelated projects kept",
			add:     []core.Project{{ID: "a", Number: 1}, {ID: "c", Number: 3}, {ID: "a", Number: 2}},
			resolve: map[string]string{"a": "a", "c": "c", "3": "c", "1": ""},
			all:     []core.Project{{ID: "a", Number: 2}, {ID: "c", Number: 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := core.NewProjects()
			for _, p := range tt.add {
				ps.Add(p)
			}
			for in, want := range tt.resolve {
				got, ok := ps.Lookup(in)
				if ok != (want != "") || got.ID != want {
					t.Errorf("Lookup(%q) = %+v, %v; want ID %q", in, got, ok, want)
				}
			}
			if diff := cmp.Diff(tt.all, ps.All()); diff != "" {
				t.Errorf("All (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFoldersSortedNumerically: Folders orders ids as numbers (9 < 20 <
// 100), not as strings.
func TestFoldersSortedNumerically(t *testing.T) {
	ps := core.NewProjects()
	fs := []core.Folder{{ID: "100", Parent: "organizations/1"}, {ID: "9", Parent: "organizations/1"}, {ID: "20", Parent: "folders/100"}}
	if err := ps.AddFolders(fs...); err != nil {
		t.Fatal(err)
	}
	want := []core.Folder{fs[1], fs[2], fs[0]}
	if diff := cmp.Diff(want, ps.Folders()); diff != "" {
		t.Errorf("Folders (-want +got):\n%s", diff)
	}
}
