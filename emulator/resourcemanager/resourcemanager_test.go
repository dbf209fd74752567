package resourcemanager_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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

	"github.com/iapguard/iapguard/emulator/core"
	rm "github.com/iapguard/iapguard/emulator/resourcemanager"
)

var projects = []core.Project{
	{ID: "team-a", Number: 111111111111},
	{ID: "team-b", Number: 222222222222},
	{ID: "legacy-c", Number: 333333333333},
}

// newClient serves the surface on 127.0.0.1:0 with the emulator's Begin
// interceptor and returns the official client connected to it.
func newClient(t *testing.T, c *core.Core) *resourcemanager.ProjectsClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(core.UnaryServerInterceptor(c)))
	rm.New(c).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	cl, err := resourcemanager.NewProjectsClient(context.Background(),
		option.WithEndpoint(ln.Addr().String()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(), option.WithTelemetryDisabled())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func search(ctx context.Context, cl *resourcemanager.ProjectsClient, req *resourcemanagerpb.SearchProjectsRequest) ([]string, error) {
	var ids []string
	it := cl.SearchProjects(ctx, req)
	for {
		p, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return ids, nil
		}
		if err != nil {
			return ids, err
		}
		ids = append(ids, p.GetProjectId())
	}
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
		{name: "parent", query: "parent:folders/123", wantCode: codes.InvalidArgument},
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
