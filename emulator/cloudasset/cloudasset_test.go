package cloudasset_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	asset "cloud.google.com/go/asset/apiv1"
	"cloud.google.com/go/asset/apiv1/assetpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/cloudasset"
	"github.com/iapguard/iapguard/emulator/core"
)

const region = "us-central1"

var tmpl = &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}

// start runs the whole emulator (organisation 1 > folder 10 > team-a,
// team-b; legacy directly under the organisation; lone without a parent)
// and connects the official Cloud Asset client to its one address.
func start(t *testing.T, opts cloudasset.Options) (*emulator.Emulator, *asset.Client) {
	t.Helper()
	em, err := emulator.New(emulator.Options{
		Projects: []core.Project{
			{ID: "team-a", Number: 101, Parent: "folders/10"},
			{ID: "team-b", Number: 102, Parent: "folders/10"},
			{ID: "legacy", Number: 103, Parent: "organizations/1"},
			{ID: "lone", Number: 104},
		},
		Folders: []core.Folder{{ID: "10", Parent: "organizations/1"}},
		Asset:   opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	c, err := asset.NewClient(t.Context(), option.WithEndpoint(em.Addr()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(), option.WithTelemetryDisabled())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return em, c
}

func seed(t *testing.T, em *emulator.Emulator, project, name string, labels map[string]string) {
	t.Helper()
	if _, err := em.Run.Seed(project, region, name, &runpb.Service{Labels: labels, Template: tmpl}); err != nil {
		t.Fatal(err)
	}
}

// search follows every page and returns the names found and the pages.
func search(ctx context.Context, c *asset.Client, req *assetpb.SearchAllResourcesRequest) ([]string, int, error) {
	var names []string
	pages := 0
	it := c.SearchAllResources(ctx, req)
	var last any
	for {
		r, err := it.Next()
		if it.Response != last {
			pages, last = pages+1, it.Response
		}
		if errors.Is(err, iterator.Done) {
			return names, pages, nil
		}
		if err != nil {
			return names, pages, err
		}
		names = append(names, r.GetName())
	}
}

func name(project, svc string) string {
	return "//run.googleapis.com/projects/" + project + "/locations/" + region + "/services/" + svc
}

func TestSearchScopesAndQueries(t *testing.T) {
	em, c := start(t, cloudasset.Options{})
	seed(t, em, "team-a", "web", map[string]string{"iap": "enabled"})
	seed(t, em, "team-a", "docs", nil)
	seed(t, em, "team-b", "api", map[string]string{"iap": "disabled", "team": "b"})
	seed(t, em, "legacy", "old", map[string]string{"iap": "enabled"})
	seed(t, em, "lone", "solo", map[string]string{"iap": "enabled"})
	types := []string{cloudasset.ServiceAssetType}
	tests := []struct {
		name, scope, query string
		want               []string
	}{
		{"organisation, labelled", "organizations/1", "labels.iap:*", []string{name("legacy", "old"), name("team-a", "web"), name("team-b", "api")}},
		{"organisation, label value", "organizations/1", "labels.iap:enabled", []string{name("legacy", "old"), name("team-a", "web")}},
		{"organisation, equals form", "organizations/1", "labels.iap=disabled", []string{name("team-b", "api")}},
		{"folder, every service", "folders/10", "", []string{name("team-a", "docs"), name("team-a", "web"), name("team-b", "api")}},
		{"project by id", "projects/team-a", "labels.iap:*", []string{name("team-a", "web")}},
		{"project by number", "projects/102", "", []string{name("team-b", "api")}},
		{"project without organisation", "projects/lone", "labels.iap:*", []string{name("lone", "solo")}},
		{"no match", "projects/team-a", "labels.team:*", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := search(t.Context(), c, &assetpb.SearchAllResourcesRequest{Scope: tt.scope, Query: tt.query, AssetTypes: types})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}

	// One result in full: what iapguard reads (name, project, location,
	// labels) and the ancestry.
	it := c.SearchAllResources(t.Context(), &assetpb.SearchAllResourcesRequest{Scope: "projects/team-b", AssetTypes: types})
	r, err := it.Next()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetProject() != "projects/102" || r.GetLocation() != region || r.GetLabels()["team"] != "b" ||
		!slices.Equal(r.GetFolders(), []string{"folders/10"}) || r.GetOrganization() != "organizations/1" ||
		r.GetAssetType() != cloudasset.ServiceAssetType || r.GetDisplayName() != "api" {
		t.Errorf("result = %v", r)
	}
}

func TestSearchRefusesWhatItDoesNotServe(t *testing.T) {
	_, c := start(t, cloudasset.Options{})
	types := []string{cloudasset.ServiceAssetType}
	tests := []struct {
		name string
		req  *assetpb.SearchAllResourcesRequest
		code codes.Code
	}{
		{"free text", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: types, Query: "web"}, codes.InvalidArgument},
		{"NOT", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: types, Query: "NOT labels.iap:*"}, codes.InvalidArgument},
		{"two terms", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: types, Query: "labels.iap:* location:us-central1"}, codes.InvalidArgument},
		{"no asset types", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a"}, codes.InvalidArgument},
		{"other asset type", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: []string{"compute.googleapis.com/Instance"}}, codes.InvalidArgument},
		{"order_by", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: types, OrderBy: "name DESC"}, codes.InvalidArgument},
		{"versioned resources", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: types, ReadMask: &fieldmaskpb.FieldMask{Paths: []string{"versionedResources"}}}, codes.InvalidArgument},
		{"malformed scope", &assetpb.SearchAllResourcesRequest{Scope: "team-a", AssetTypes: types}, codes.InvalidArgument},
		{"unknown project", &assetpb.SearchAllResourcesRequest{Scope: "projects/ghost", AssetTypes: types}, codes.PermissionDenied},
		{"unknown folder", &assetpb.SearchAllResourcesRequest{Scope: "folders/99", AssetTypes: types}, codes.PermissionDenied},
		{"unknown organisation", &assetpb.SearchAllResourcesRequest{Scope: "organizations/2", AssetTypes: types}, codes.PermissionDenied},
		{"foreign page token", &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: types, PageToken: "bm9wZQ"}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.SearchAllResources(t.Context(), tt.req).Next()
			if got := status.Code(err); got != tt.code {
				t.Errorf("code = %v (%v), want %v", got, err, tt.code)
			}
		})
	}
}

func TestSearchPaging(t *testing.T) {
	em, c := start(t, cloudasset.Options{})
	var want []string
	for i := range 1203 {
		id := fmt.Sprintf("s%04d", i)
		seed(t, em, "team-a", id, map[string]string{"iap": "enabled"})
		want = append(want, name("team-a", id))
	}
	for _, tt := range []struct {
		size, pages int
	}{{0, 13}, {500, 3}, {5000, 3}, {700, 3}} {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			got, pages, err := search(t.Context(), c, &assetpb.SearchAllResourcesRequest{
				Scope: "organizations/1", Query: "labels.iap:*", AssetTypes: []string{cloudasset.ServiceAssetType}, PageSize: int32(tt.size)})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if pages != tt.pages {
				t.Errorf("pages = %d, want %d (default 100, capped at 500)", pages, tt.pages)
			}
		})
	}
}

// TestIndexLag: changes show only IndexLag after they were stored; the
// emulator's clock is moved, not waited for.
func TestIndexLag(t *testing.T) {
	em, c := start(t, cloudasset.Options{IndexLag: 3 * time.Minute})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	em.Core.SetNow(func() time.Time { return now })
	req := &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", Query: "labels.iap:*", AssetTypes: []string{cloudasset.ServiceAssetType}}
	names := func() []string {
		t.Helper()
		got, _, err := search(t.Context(), c, req)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	seed(t, em, "team-a", "web", map[string]string{"iap": "enabled"})
	if got := names(); len(got) != 0 {
		t.Fatalf("just created: found %v, want nothing yet", got)
	}
	now = now.Add(3 * time.Minute)
	if got := names(); !slices.Equal(got, []string{name("team-a", "web")}) {
		t.Fatalf("after the lag: found %v", got)
	}
	// The label goes: the index still shows it labelled until the lag passes.
	seed(t, em, "team-a", "web", nil)
	now = now.Add(time.Minute)
	if got := names(); len(got) != 1 {
		t.Fatalf("label removed a minute ago: found %v, want the stale labelled copy", got)
	}
	now = now.Add(2 * time.Minute)
	if got := names(); len(got) != 0 {
		t.Fatalf("label removed three minutes ago: found %v, want nothing", got)
	}
	// Lag 0 from now on: what is stored is found.
	em.Asset.SetIndexLag(0)
	seed(t, em, "team-a", "api", map[string]string{"iap": "enabled"})
	if got := names(); !slices.Equal(got, []string{name("team-a", "api")}) {
		t.Fatalf("lag 0: found %v", got)
	}
}

// TestQuotas: Google's documented per-project (400/min) and
// per-organisation (1,500/min) quotas, here set low; exhausted →
// RESOURCE_EXHAUSTED.
func TestQuotas(t *testing.T) {
	t.Run("project", func(t *testing.T) {
		_, c := start(t, cloudasset.Options{ProjectQuotaPerMinute: 2, OrgQuotaPerMinute: -1})
		req := &assetpb.SearchAllResourcesRequest{Scope: "projects/lone", AssetTypes: []string{cloudasset.ServiceAssetType}}
		var codesSeen []codes.Code
		for range 3 {
			_, err := c.SearchAllResources(t.Context(), req).Next()
			if errors.Is(err, iterator.Done) {
				err = nil
			}
			codesSeen = append(codesSeen, status.Code(err))
		}
		if want := []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted}; !slices.Equal(codesSeen, want) {
			t.Errorf("codes = %v, want %v", codesSeen, want)
		}
	})
	t.Run("organisation", func(t *testing.T) {
		_, c := start(t, cloudasset.Options{ProjectQuotaPerMinute: -1, OrgQuotaPerMinute: 1})
		types := []string{cloudasset.ServiceAssetType}
		call := func(scope string) codes.Code {
			_, err := c.SearchAllResources(t.Context(), &assetpb.SearchAllResourcesRequest{Scope: scope, AssetTypes: types}).Next()
			if errors.Is(err, iterator.Done) {
				err = nil
			}
			return status.Code(err)
		}
		got := []codes.Code{call("folders/10"), call("projects/legacy"), call("projects/lone"), call("projects/lone")}
		// The folder and legacy share organizations/1; lone has none.
		if want := []codes.Code{codes.OK, codes.ResourceExhausted, codes.OK, codes.OK}; !slices.Equal(got, want) {
			t.Errorf("codes = %v, want %v", got, want)
		}
	})
}

func TestDisabled(t *testing.T) {
	em, c := start(t, cloudasset.Options{})
	em.Asset.SetDisabled(true)
	_, err := c.SearchAllResources(t.Context(), &assetpb.SearchAllResourcesRequest{Scope: "projects/lone", AssetTypes: []string{cloudasset.ServiceAssetType}}).Next()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("disabled API: %v, want PERMISSION_DENIED", err)
	}
}

// TestDeletedServicesForgotten: a deleted service still shows (its last
// state) until the lag passes, as Google's index does; then it is gone and
// the index forgets it, so churn does not grow memory. A service created
// again under the same name is found again.
func TestDeletedServicesForgotten(t *testing.T) {
	em, c := start(t, cloudasset.Options{IndexLag: 3 * time.Minute})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	em.Core.SetNow(func() time.Time { return now })
	req := &assetpb.SearchAllResourcesRequest{Scope: "projects/team-a", AssetTypes: []string{cloudasset.ServiceAssetType}}
	count := func() int {
		t.Helper()
		got, _, err := search(t.Context(), c, req)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	const n = 50
	for i := range n {
		seed(t, em, "team-a", fmt.Sprintf("churn-%d", i), nil)
	}
	seed(t, em, "team-a", "stays", nil)
	now = now.Add(3 * time.Minute)
	if got := count(); got != n+1 {
		t.Fatalf("after the lag: %d services found, want %d", got, n+1)
	}
	for i := range n {
		if _, err := em.Run.DeleteService(t.Context(), &runpb.DeleteServiceRequest{
			Name: "projects/team-a/locations/" + region + "/services/" + fmt.Sprintf("churn-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Minute)
	if got := count(); got != n+1 {
		t.Fatalf("deleted a minute ago: %d found, want the %d stale ones", got, n+1)
	}
	now = now.Add(2 * time.Minute)
	if got := count(); got != 1 {
		t.Fatalf("deleted three minutes ago: %d found, want 1", got)
	}
	if got := em.Asset.Tracked(); got != 1 {
		t.Errorf("the index still holds %d services after the deletions became visible, want 1", got)
	}
	seed(t, em, "team-a", "churn-0", nil)
	now = now.Add(3 * time.Minute)
	if got := count(); got != 2 {
		t.Errorf("re-created churn-0: %d found, want 2", got)
	}
}
