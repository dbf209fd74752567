package gcp_test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// discoveryEnv: organizations/1 > folders/10 > team-a, team-b; legacy
// under the organisation. Services in three regions, two labelled iap.
func discoveryEnv(t *testing.T) (*emulator.Emulator, *gcp.Clients) {
	t.Helper()
	em, err := emulator.New(emulator.Options{
		Projects: []core.Project{
			{ID: "team-a", Number: 101, Parent: "folders/10"},
			{ID: "team-b", Number: 102, Parent: "folders/10"},
			{ID: "legacy", Number: 103, Parent: "organizations/1"},
		},
		Folders: []core.Folder{{ID: "10", Parent: "organizations/1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	tmpl := &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}
	for _, s := range []struct{ p, r, n, label string }{
		{"team-a", "us-central1", "web", "enabled"}, {"team-a", "asia-east1", "docs", ""},
		{"team-b", "europe-west1", "api", "disabled"}, {"legacy", "us-east4", "old", ""},
	} {
		var labels map[string]string
		if s.label != "" {
			labels = map[string]string{"iap": s.label}
		}
		if _, err := em.Run.Seed(s.p, s.r, s.n, &runpb.Service{Labels: labels, Template: tmpl}); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := gcp.NewClients(t.Context(), gcp.Options{EmulatorHost: em.Addr(), Principal: "me@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	dir, err := gcp.NewProjectDirectory(t.Context(), gcp.Options{EmulatorHost: em.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	cl.Discovery.SetOptions(gcp.DiscoveryOptions{Projects: gcp.NewProjectsUnder(dir)})
	return em, cl
}

func TestDiscovery(t *testing.T) {
	em, cl := discoveryEnv(t)
	regions := int64(len(em.Run.Regions("team-a")))
	tests := []struct {
		name, mode, scope string
		labelled, disable bool
		want              []string
		path              string
		calls             int64 // -1: not checked
		fallback          bool
	}{
		{"asset, organisation, labelled", gcp.ModeAuto, "organizations/1", true, false,
			[]string{"team-a/us-central1/web", "team-b/europe-west1/api"}, gcp.PathAsset, 1, false},
		{"asset, folder, every service", gcp.ModeAsset, "folders/10", false, false,
			[]string{"team-a/asia-east1/docs", "team-a/us-central1/web", "team-b/europe-west1/api"}, gcp.PathAsset, 1, false},
		{"asset, bare project id", gcp.ModeAuto, "team-a", false, false,
			[]string{"team-a/asia-east1/docs", "team-a/us-central1/web"}, gcp.PathAsset, 1, false},
		{"regions, project", gcp.ModeRegions, "projects/team-a", false, false,
			[]string{"team-a/asia-east1/docs", "team-a/us-central1/web"}, gcp.PathRegions, 1 + regions, false},
		{"regions, organisation, labelled", gcp.ModeRegions, "organizations/1", true, false,
			[]string{"team-a/us-central1/web", "team-b/europe-west1/api"}, gcp.PathRegions, -1, false},
		{"auto falls back when cloud asset is off", gcp.ModeAuto, "projects/team-a", true, true,
			[]string{"team-a/us-central1/web"}, gcp.PathRegions, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			em.Asset.SetDisabled(tt.disable)
			defer em.Asset.SetDisabled(false)
			d := *cl.Discovery
			o := gcp.DiscoveryOptions{Mode: tt.mode}
			dir, err := gcp.NewProjectDirectory(t.Context(), gcp.Options{EmulatorHost: em.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			o.Projects = gcp.NewProjectsUnder(dir)
			d.SetOptions(o)
			before := em.Core.Stats.Snapshot()
			got, err := d.Discover(t.Context(), tt.scope, tt.labelled)
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			var names []string
			for _, f := range got.Services {
				names = append(names, f.Ref.Project+"/"+f.Ref.Region+"/"+f.Ref.Name)
				if (f.Listed != nil) != (got.Path == gcp.PathRegions) {
					t.Errorf("%s: Listed = %v on path %s", f.Ref, f.Listed != nil, got.Path)
				}
			}
			sort.Strings(names)
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("found (-want +got):\n%s", diff)
			}
			if got.Path != tt.path || (got.Fallback != "") != tt.fallback {
				t.Errorf("path %q fallback %q, want %q (fallback %v)", got.Path, got.Fallback, tt.path, tt.fallback)
			}
			calls := em.Core.Stats.Snapshot().Sub(before).Calls
			var sum int64
			for m, n := range calls {
				switch m {
				case "google.cloud.asset.v1.AssetService.SearchAllResources", "run.projects.locations.list", "google.cloud.run.v2.Services.ListServices":
					sum += n
				}
			}
			if sum != got.Calls {
				t.Errorf("Calls = %d, the emulator counted %d (%v)", got.Calls, sum, calls)
			}
			if tt.calls >= 0 && got.Calls != tt.calls {
				t.Errorf("Calls = %d, want %d", got.Calls, tt.calls)
			}
		})
	}
}

// TestDiscoveryAssetOnlyFails: ModeAsset does not fall back.
func TestDiscoveryAssetOnlyFails(t *testing.T) {
	em, cl := discoveryEnv(t)
	em.Asset.SetDisabled(true)
	d := *cl.Discovery
	d.SetOptions(gcp.DiscoveryOptions{Mode: gcp.ModeAsset})
	_, err := d.Discover(t.Context(), "projects/team-a", true)
	if status.Code(err) != codes.PermissionDenied || !gcp.AssetUnavailable(err) {
		t.Fatalf("Discover = %v, want PERMISSION_DENIED", err)
	}
}

// TestNoWildcard: Cloud Run v2 refuses the "-" location (issue #18): the
// emulator answers INVALID_ARGUMENT as the v2 parent comment documents, and
// the adapter refuses it without a call.
func TestNoWildcard(t *testing.T) {
	em, cl := discoveryEnv(t)
	_, err := cl.Run.Projects.Locations.Services.List("projects/team-a/locations/-").Context(t.Context()).Do()
	if gcperr.Code(err) != codes.InvalidArgument {
		t.Fatalf("emulator ListServices(locations/-) = %v, want INVALID_ARGUMENT", err)
	}
	before := em.Core.Stats.Snapshot()
	if _, err := cl.RunAdapter.ListServices(t.Context(), "team-a", "-"); err == nil {
		t.Fatal(`RunAdapter.ListServices(region "-") succeeded`)
	}
	if n := em.Core.Stats.Snapshot().Sub(before).Calls["google.cloud.run.v2.Services.ListServices"]; n != 0 {
		t.Errorf(`RunAdapter.ListServices(region "-") made %d calls, want 0`, n)
	}
}

// TestProjectsUnderSaysWhenItStops: the folder walk of the per-region
// discovery is bounded; a scope with more folders than the bound is a
// permanent error saying so, not a silently partial list.
func TestProjectsUnderSaysWhenItStops(t *testing.T) {
	t.Parallel()
	em, err := emulator.New(emulator.Options{
		Projects: []core.Project{
			{ID: "team-a", Number: 101, Parent: "folders/10"},
			{ID: "team-b", Number: 102, Parent: "folders/11"},
		},
		Folders: []core.Folder{{ID: "10", Parent: "organizations/1"}, {ID: "11", Parent: "folders/10"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	dir, err := gcp.NewProjectDirectory(t.Context(), gcp.Options{EmulatorHost: em.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	got, err := gcp.ProjectsUnderAtMost(dir, 2)(t.Context(), "organizations/1")
	sort.Strings(got)
	if diff := cmp.Diff([]string{"team-a", "team-b"}, got); err != nil || diff != "" {
		t.Errorf("two folders, at most 2: err %v, projects (-want +got):\n%s", err, diff)
	}
	got, err = gcp.ProjectsUnderAtMost(dir, 1)(t.Context(), "organizations/1")
	if !errors.Is(err, iapsetup.ErrPermanent) || !strings.Contains(fmt.Sprint(err), "organizations/1 holds more than 1 folders") || got != nil {
		t.Errorf("two folders, at most 1: %v, %v; want a permanent error saying the walk stopped", got, err)
	}
}
