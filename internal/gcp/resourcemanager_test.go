package gcp_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// startDirectory runs an emulator with opts and a ProjectDirectory on it.
func startDirectory(t *testing.T, opts emulator.Options, pageSize int32) (*emulator.Emulator, *gcp.ProjectDirectory) {
	t.Helper()
	em, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	d, err := gcp.NewProjectDirectory(context.Background(), gcp.Options{EmulatorHost: em.Addr(), Principal: "operator@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	d.PageSize = pageSize
	return em, d
}

func TestProjectDirectoryPages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		projects  int
		pageSize  int32
		wantCalls int64
	}{
		{name: "one page", projects: 3, pageSize: 0, wantCalls: 1},
		{name: "exact pages", projects: 20, pageSize: 10, wantCalls: 2},
		{name: "partial last page", projects: 25, pageSize: 10, wantCalls: 3},
		{name: "1000 projects in default pages", projects: 1000, pageSize: 0, wantCalls: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ps []core.Project
			var want []scope.ProjectInfo
			for i := range tc.projects {
				p := core.Project{ID: fmt.Sprintf("proj-%04d", i), Number: int64(100000000000 + i)}
				ps = append(ps, p)
				want = append(want, scope.ProjectInfo{ID: p.ID, Number: p.NumberString()})
			}
			em, d := startDirectory(t, emulator.Options{Projects: ps}, tc.pageSize)
			got, err := d.ListProjects(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ListProjects (-want +got):\n%s", diff)
			}
			if n := em.Core.Stats.Snapshot().Calls["google.cloud.resourcemanager.v3.Projects.SearchProjects"]; n != tc.wantCalls {
				t.Errorf("SearchProjects calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestProjectDirectoryError(t *testing.T) {
	t.Parallel()
	em, d := startDirectory(t, emulator.Options{}, 0)
	if err := em.Core.Faults.FailNext("google.cloud.resourcemanager.v3.Projects.SearchProjects", 1, codes.PermissionDenied); err != nil {
		t.Fatal(err)
	}
	_, err := d.ListProjects(context.Background())
	if !gcperr.IsPermissionDenied(err) {
		t.Errorf("ListProjects error = %v, want PERMISSION_DENIED in its chain", err)
	}
}

// TestProjectDirectoryFolders: the hierarchy reads behind folder scopes.
// organizations/1 → folders/10 → {folders/20 → deep, mid}; sibling under
// folders/11.
func TestProjectDirectoryFolders(t *testing.T) {
	t.Parallel()
	em, d := startDirectory(t, emulator.Options{
		Projects: []core.Project{
			{ID: "deep", Number: 100000000001, Parent: "folders/20"},
			{ID: "mid", Number: 100000000002, Parent: "folders/10"},
			{ID: "sibling", Number: 100000000003, Parent: "folders/11"},
		},
		Folders: []core.Folder{{ID: "10", Parent: "organizations/1"}, {ID: "11", Parent: "organizations/1"}, {ID: "20", Parent: "folders/10"}},
	}, 1) // every list follows pages
	ctx := context.Background()

	for _, p := range []string{"deep", "100000000001"} {
		if got, err := d.ProjectParent(ctx, p); err != nil || got != "folders/20" {
			t.Errorf("ProjectParent(%s) = %q, %v; want folders/20", p, got, err)
		}
	}
	if got, err := d.FolderParent(ctx, "20"); err != nil || got != "folders/10" {
		t.Errorf("FolderParent(20) = %q, %v; want folders/10", got, err)
	}
	if _, err := d.ProjectParent(ctx, "nope"); !gcperr.IsPermissionDenied(err) {
		t.Errorf("ProjectParent(nope) error = %v, want PERMISSION_DENIED in its chain", err)
	}
	if _, err := d.FolderParent(ctx, "99"); !gcperr.IsPermissionDenied(err) {
		t.Errorf("FolderParent(99) error = %v, want PERMISSION_DENIED in its chain", err)
	}
	folders, err := d.ListFolders(ctx, "organizations/1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"folders/10", "folders/11"}, folders); diff != "" {
		t.Errorf("ListFolders(organizations/1) (-want +got):\n%s", diff)
	}
	in, err := d.ListProjectsIn(ctx, "folders/10")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]scope.ProjectInfo{{ID: "mid", Number: "100000000002", Parent: "folders/10"}}, in); diff != "" {
		t.Errorf("ListProjectsIn(folders/10) (-want +got):\n%s", diff)
	}
	calls := em.Core.Stats.Snapshot().Calls
	if calls["google.cloud.resourcemanager.v3.Folders.ListFolders"] != 2 {
		t.Errorf("ListFolders calls for 2 folders in pages of 1 = %d, want 2 (no empty last page)", calls["google.cloud.resourcemanager.v3.Folders.ListFolders"])
	}

	// The directory enumerates a folder scope end to end.
	ps, err := scope.New("folders/10").Projects(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name())
	}
	if diff := cmp.Diff([]string{"deep", "mid"}, names); diff != "" {
		t.Errorf("projects of folders/10 (-want +got):\n%s", diff)
	}
}
