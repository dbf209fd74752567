package resourcemanager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	resourcemanager "cloud.google.com/go/resourcemanager/apiv3"
	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	rm "github.com/iapguard/iapguard/emulator/resourcemanager"
)

var projects = []core.Project{
	{ID: "team-a", Number: 111111111111},
	{ID: "team-b", Number: 222222222222},
	{ID: "legacy-c", Number: 333333333333},
}

// serve serves the surface on 127.0.0.1:0 with the emulator's Begin
// interceptor and returns the options that connect an official client to it.
func serve(t *testing.T, c *core.Core) []option.ClientOption {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(core.UnaryServerInterceptor(c)))
	rm.New(c).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return []option.ClientOption{
		option.WithEndpoint(ln.Addr().String()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(), option.WithTelemetryDisabled(),
	}
}

// newClient returns the official Projects client connected to a surface over c.
func newClient(t *testing.T, c *core.Core) *resourcemanager.ProjectsClient {
	t.Helper()
	cl, err := resourcemanager.NewProjectsClient(context.Background(), serve(t, c)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// newFoldersClient returns the official Folders client connected to a
// surface over c.
func newFoldersClient(t *testing.T, c *core.Core) *resourcemanager.FoldersClient {
	t.Helper()
	cl, err := resourcemanager.NewFoldersClient(context.Background(), serve(t, c)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// collect follows an iterator's every page, keeping key(item) of each item,
// until it is done or fails.
func collect[T any, K any](next func() (T, error), key func(T) K) ([]K, error) {
	var out []K
	for {
		v, err := next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, key(v))
	}
}

func search(ctx context.Context, cl *resourcemanager.ProjectsClient, req *resourcemanagerpb.SearchProjectsRequest) ([]string, error) {
	return collect(cl.SearchProjects(ctx, req).Next, (*resourcemanagerpb.Project).GetProjectId)
}

func TestSearchProjects(t *testing.T) {
	t.Parallel()
	cl := newClient(t, core.New("", projects...))
	for _, tc := range []struct {
		name, query string
		want        []string
		wantCode    codes.Code
	}{
		{name: "every project, sorted by id", want: []string{"legacy-c", "team-a", "team-b"}},
		{name: "active", query: "state:ACTIVE", want: []string{"legacy-c", "team-a", "team-b"}},
		{name: "lifecycleState, case-insensitive", query: "LIFECYCLESTATE:active", want: []string{"legacy-c", "team-a", "team-b"}},
		{name: "deleted projects: none", query: "state:DELETE_REQUESTED"},
		{name: "id", query: "id:team-b", want: []string{"team-b"}},
		{name: "projectId prefix", query: "projectId:team-*", want: []string{"team-a", "team-b"}},
		{name: "quoted name", query: `name:"LEGACY-C"`, want: []string{"legacy-c"}},
		{name: "several terms", query: "id:team-a id:team-b", wantCode: codes.InvalidArgument},
		{name: "parent without a folder id", query: "parent:folders/x", wantCode: codes.InvalidArgument},
		{name: "parent of another kind", query: "parent:projects/1", wantCode: codes.InvalidArgument},
		{name: "parent.id: not supported", query: "parent.id:123", wantCode: codes.InvalidArgument},
		{name: "labels", query: "labels.env:prod", wantCode: codes.InvalidArgument},
		{name: "inner star", query: "id:te*m", wantCode: codes.InvalidArgument},
		{name: "no colon", query: "team-a", wantCode: codes.InvalidArgument},
		{name: "unbalanced quotes", query: `id:"team-a`, wantCode: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := search(context.Background(), cl, &resourcemanagerpb.SearchProjectsRequest{Query: tc.query})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("SearchProjects(%q) error = %v, want code %v", tc.query, err, tc.wantCode)
			}
			if diff := cmp.Diff(tc.want, got); err == nil && diff != "" {
				t.Errorf("SearchProjects(%q) (-want +got):\n%s", tc.query, diff)
			}
		})
	}
}

func TestSearchProjectsPages(t *testing.T) {
	t.Parallel()
	var ps []core.Project
	var want []string
	for i := range 23 {
		p := core.Project{ID: fmt.Sprintf("p-%03d", i), Number: int64(500000000000 + i)}
		ps = append(ps, p)
		want = append(want, p.ID)
	}
	c := core.New("", ps...)
	cl := newClient(t, c)
	ctx := context.Background()

	// One raw page: 10 projects and a token; the token resumes after them.
	it := cl.SearchProjects(ctx, &resourcemanagerpb.SearchProjectsRequest{PageSize: 10})
	if _, err := it.Next(); err != nil {
		t.Fatal(err)
	}
	resp, ok := it.Response.(*resourcemanagerpb.SearchProjectsResponse)
	if !ok || len(resp.GetProjects()) != 10 || resp.GetNextPageToken() == "" {
		t.Fatalf("first page: %d projects, token %q; want 10 and a token", len(resp.GetProjects()), resp.GetNextPageToken())
	}

	before := c.Stats.Snapshot()
	got, err := search(ctx, cl, &resourcemanagerpb.SearchProjectsRequest{PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("all pages (-want +got):\n%s", diff)
	}
	if n := c.Stats.Snapshot().Sub(before).Calls["google.cloud.resourcemanager.v3.Projects.SearchProjects"]; n != 3 {
		t.Errorf("SearchProjects calls for 23 projects in pages of 10 = %d, want 3", n)
	}

	_, err = search(ctx, cl, &resourcemanagerpb.SearchProjectsRequest{PageToken: "not-a-token"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad page token: %v, want INVALID_ARGUMENT", err)
	}
	_, err = search(ctx, cl, &resourcemanagerpb.SearchProjectsRequest{PageSize: -1})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative page size: %v, want INVALID_ARGUMENT", err)
	}
}

func TestGetProject(t *testing.T) {
	t.Parallel()
	cl := newClient(t, core.New("", projects...))
	want := &resourcemanagerpb.Project{Name: "projects/222222222222", ProjectId: "team-b", DisplayName: "team-b", State: resourcemanagerpb.Project_ACTIVE}
	for _, tc := range []struct {
		name, project string
		wantCode      codes.Code
	}{
		{name: "by number", project: "projects/222222222222"},
		{name: "by id", project: "projects/team-b"},
		{name: "unknown: permission denied, as Google", project: "projects/nope", wantCode: codes.PermissionDenied},
		{name: "not a project name", project: "folders/1", wantCode: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cl.GetProject(context.Background(), &resourcemanagerpb.GetProjectRequest{Name: tc.project})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("GetProject(%s) error = %v, want code %v", tc.project, err, tc.wantCode)
			}
			if err != nil {
				return
			}
			if got.GetName() != want.Name || got.GetProjectId() != want.ProjectId || got.GetDisplayName() != want.DisplayName || got.GetState() != want.State {
				t.Errorf("GetProject(%s) = %v, want %v", tc.project, got, want)
			}
		})
	}
}

// tree is organizations/1 → folders/10 → folders/20 → deep; folders/10 →
// mid; folders/11 (sibling of 10) → sibling; organizations/1 → top;
// orphan has no parent.
var (
	tree = []core.Project{
		{ID: "deep", Number: 100000000001, Parent: "folders/20"},
		{ID: "mid", Number: 100000000002, Parent: "folders/10"},
		{ID: "sibling", Number: 100000000003, Parent: "folders/11"},
		{ID: "top", Number: 100000000004, Parent: "organizations/1"},
		{ID: "orphan", Number: 100000000005},
	}
	treeFolders = []core.Folder{
		{ID: "10", Parent: "organizations/1"},
		{ID: "11", Parent: "organizations/1"},
		{ID: "20", Parent: "folders/10"},
	}
)

func newTree(t *testing.T) *core.Core {
	t.Helper()
	c := core.New("", tree...)
	if err := c.Projects.AddFolders(treeFolders...); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSearchProjectsByParent(t *testing.T) {
	t.Parallel()
	cl := newClient(t, newTree(t))
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{query: "parent:folders/10", want: []string{"mid"}}, // direct children only, not deep
		{query: "parent:folders/20", want: []string{"deep"}},
		{query: `parent:"folders/11"`, want: []string{"sibling"}},
		{query: "parent:organizations/1", want: []string{"top"}},
		{query: "parent:folders/99"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got, err := search(context.Background(), cl, &resourcemanagerpb.SearchProjectsRequest{Query: tc.query})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SearchProjects(%q) (-want +got):\n%s", tc.query, diff)
			}
		})
	}
	// Every project carries its parent.
	all, err := collect(cl.SearchProjects(context.Background(), &resourcemanagerpb.SearchProjectsRequest{}).Next,
		func(p *resourcemanagerpb.Project) *resourcemanagerpb.Project { return p })
	if err != nil {
		t.Fatal(err)
	}
	parents := map[string]string{}
	for _, p := range all {
		parents[p.GetProjectId()] = p.GetParent()
	}
	want := map[string]string{"deep": "folders/20", "mid": "folders/10", "sibling": "folders/11", "top": "organizations/1", "orphan": ""}
	if diff := cmp.Diff(want, parents); diff != "" {
		t.Errorf("parents (-want +got):\n%s", diff)
	}
}

func TestGetProjectParent(t *testing.T) {
	t.Parallel()
	cl := newClient(t, newTree(t))
	p, err := cl.GetProject(context.Background(), &resourcemanagerpb.GetProjectRequest{Name: "projects/deep"})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetParent() != "folders/20" || p.GetName() != "projects/100000000001" {
		t.Errorf("GetProject(deep) = %s parent %q, want projects/100000000001 parent folders/20", p.GetName(), p.GetParent())
	}
}

func TestGetFolder(t *testing.T) {
	t.Parallel()
	c := newTree(t)
	cl := newFoldersClient(t, c)
	for _, tc := range []struct {
		name, folder string
		wantParent   string
		wantCode     codes.Code
	}{
		{name: "nested", folder: "folders/20", wantParent: "folders/10"},
		{name: "under the organisation", folder: "folders/10", wantParent: "organizations/1"},
		{name: "unknown: permission denied, as Google", folder: "folders/99", wantCode: codes.PermissionDenied},
		{name: "not a folder name", folder: "projects/deep", wantCode: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := cl.GetFolder(context.Background(), &resourcemanagerpb.GetFolderRequest{Name: tc.folder})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("GetFolder(%s) error = %v, want code %v", tc.folder, err, tc.wantCode)
			}
			if err == nil && (f.GetName() != tc.folder || f.GetParent() != tc.wantParent || f.GetState() != resourcemanagerpb.Folder_ACTIVE) {
				t.Errorf("GetFolder(%s) = %v, want parent %s, ACTIVE", tc.folder, f, tc.wantParent)
			}
		})
	}
	if n := c.Stats.Snapshot().Calls["google.cloud.resourcemanager.v3.Folders.GetFolder"]; n != 4 {
		t.Errorf("GetFolder calls counted = %d, want 4", n)
	}
}

func TestListFolders(t *testing.T) {
	t.Parallel()
	c := core.New("", tree...)
	fs := append([]core.Folder(nil), treeFolders...)
	var want []string
	for i := range 12 {
		id := fmt.Sprint(1000 + i)
		fs = append(fs, core.Folder{ID: id, Parent: "folders/11"})
		want = append(want, "folders/"+id)
	}
	if err := c.Projects.AddFolders(fs...); err != nil {
		t.Fatal(err)
	}
	cl := newFoldersClient(t, c)
	list := func(parent string, size int32) ([]string, error) {
		it := cl.ListFolders(context.Background(), &resourcemanagerpb.ListFoldersRequest{Parent: parent, PageSize: size})
		return collect(it.Next, (*resourcemanagerpb.Folder).GetName)
	}
	for _, tc := range []struct {
		name, parent string
		size         int32
		want         []string
		wantCode     codes.Code
	}{
		{name: "organisation: direct children only", parent: "organizations/1", want: []string{"folders/10", "folders/11"}},
		{name: "folder", parent: "folders/10", want: []string{"folders/20"}},
		{name: "leaf", parent: "folders/20"},
		{name: "pages", parent: "folders/11", size: 5, want: want},
		{name: "unknown folder", parent: "folders/99", wantCode: codes.PermissionDenied},
		{name: "unknown organisation", parent: "organizations/2", wantCode: codes.PermissionDenied},
		{name: "no parent", parent: "", wantCode: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := list(tc.parent, tc.size)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("ListFolders(%q) error = %v, want code %v", tc.parent, err, tc.wantCode)
			}
			if diff := cmp.Diff(tc.want, got); err == nil && diff != "" {
				t.Errorf("ListFolders(%q) (-want +got):\n%s", tc.parent, diff)
			}
		})
	}
}

func TestAddFoldersChecksHierarchy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		projects []core.Project
		folders  []core.Folder
		wantErr  bool
	}{
		{name: "ok", projects: tree, folders: treeFolders},
		{name: "unknown parent folder", folders: []core.Folder{{ID: "1", Parent: "folders/2"}}, wantErr: true},
		{name: "cycle", folders: []core.Folder{{ID: "1", Parent: "folders/2"}, {ID: "2", Parent: "folders/1"}}, wantErr: true},
		{name: "project under a missing folder", projects: []core.Project{{ID: "p", Number: 1, Parent: "folders/5"}}, wantErr: true},
		{name: "non-numeric id", folders: []core.Folder{{ID: "x", Parent: "organizations/1"}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := core.NewProjects(tc.projects...).AddFolders(tc.folders...)
			if (err != nil) != tc.wantErr {
				t.Errorf("AddFolders error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    core.Project
		wantErr bool
	}{
		{in: "a=1", want: core.Project{ID: "a", Number: 1}},
		{in: "a=1@folders/20", want: core.Project{ID: "a", Number: 1, Parent: "folders/20"}},
		{in: "a=1@organizations/7", want: core.Project{ID: "a", Number: 1, Parent: "organizations/7"}},
		{in: "a=1@projects/2", wantErr: true},
		{in: "a=1@folders/", wantErr: true},
		{in: "a=1@", wantErr: true},
		{in: "a=x@folders/1", wantErr: true},
	} {
		got, err := core.ParseProject(tc.in)
		if (err != nil) != tc.wantErr || err == nil && got != tc.want {
			t.Errorf("ParseProject(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	for _, tc := range []struct {
		in      string
		want    core.Folder
		wantErr bool
	}{
		{in: "20=folders/10", want: core.Folder{ID: "20", Parent: "folders/10"}},
		{in: "10=organizations/1", want: core.Folder{ID: "10", Parent: "organizations/1"}},
		{in: "x=organizations/1", wantErr: true},
		{in: "010=organizations/1", wantErr: true},
		{in: "10", wantErr: true},
		{in: "10=folders/abc", wantErr: true},
	} {
		got, err := core.ParseFolder(tc.in)
		if (err != nil) != tc.wantErr || err == nil && got != tc.want {
			t.Errorf("ParseFolder(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestEmulatorFolders: emulator.Options.Folders reach the Resource Manager
// surface and the control API; a hierarchy naming a missing folder is
// refused by emulator.New.
func TestEmulatorFolders(t *testing.T) {
	t.Parallel()
	em, err := emulator.New(emulator.Options{Projects: tree, Folders: treeFolders})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + em.Addr() + emulator.ControlPrefix + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var fs struct {
		Folders []struct{ Name, Parent string }
	}
	get("folders", &fs)
	if len(fs.Folders) != 3 || fs.Folders[2].Name != "folders/20" || fs.Folders[2].Parent != "folders/10" {
		t.Errorf("GET folders = %+v, want folders 10, 11, 20 with 20 under 10", fs.Folders)
	}
	var ps struct {
		Projects []struct{ ID, Number, Parent string }
	}
	get("projects", &ps)
	parents := map[string]string{}
	for _, p := range ps.Projects {
		parents[p.ID] = p.Parent
	}
	if parents["deep"] != "folders/20" || parents["orphan"] != "" {
		t.Errorf("GET projects parents = %v", parents)
	}

	if _, err := emulator.New(emulator.Options{Projects: tree}); err == nil || !strings.Contains(err.Error(), "is not a folder of the emulator") {
		t.Errorf("emulator.New with projects under undeclared folders: %v, want an error", err)
	}
}
