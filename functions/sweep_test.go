package functions

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// capturingReplays records the replay messages a sweep publishes.
type capturingReplays struct {
	mu sync.Mutex
	ms []event.ReplayMessage
}

func (c *capturingReplays) PublishReplays(_ context.Context, ms []event.ReplayMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ms = append(c.ms, ms...)
	return nil
}

func (c *capturingReplays) services() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.ms {
		out = append(out, m.Project+"/"+m.Region+"/"+m.Service+" by "+m.RequestedBy)
	}
	sort.Strings(out)
	return out
}

// sweepEnv: organizations/1 > folders/10 > team-a, team-b; legacy under the
// organisation. team-a has web (iap=enabled, public) and docs (no label);
// team-b has api (iap=enabled) in europe-west1; legacy has old
// (iap=enabled).
func sweepEnv(t *testing.T, allow []string, mode string) (*emulator.Emulator, *Handler, *fakePublisher, *capturingReplays) {
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
		{"team-a", "us-central1", "web", "enabled"}, {"team-a", "us-central1", "docs", ""},
		{"team-b", "europe-west1", "api", "enabled"}, {"legacy", "us-central1", "old", "enabled"},
	} {
		var labels map[string]string
		if s.label != "" {
			labels = map[string]string{"iap": s.label}
		}
		if _, err := em.Run.Seed(s.p, s.r, s.n, &runpb.Service{Labels: labels, Template: tmpl}); err != nil {
			t.Fatal(err)
		}
	}
	clients, err := gcp.NewClients(t.Context(), gcp.Options{EmulatorHost: em.Addr(), Principal: "iapguard@p.iam.gserviceaccount.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = clients.Close() })
	dir, err := gcp.NewProjectDirectory(t.Context(), gcp.Options{EmulatorHost: em.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	clients.Discovery.SetOptions(gcp.DiscoveryOptions{Mode: mode, Projects: gcp.NewProjectsUnder(dir)})
	rec, err := iapsetup.New(clients.Deps(), iapsetup.Options{Scope: scope.New(allow...), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, replays := &fakePublisher{}, &capturingReplays{}
	cfg := Config{Project: "team-a", Projects: allow, OutcomesTopic: "t", Timeout: 30 * time.Second, DryRun: true}
	h := NewHandler(cfg, rec, pub, nil)
	h.SetDiscovery(clients.Discovery, replays)
	return em, h, pub, replays
}

func replayEvent(t *testing.T, m event.ReplayMessage) cloudevents.Event {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.NewMessagePublishedEvent("team-a", "iapguard-replay", "projects/team-a/subscriptions/s",
		event.PubSubMessage{Data: data, MessageID: "m-" + m.Scope + m.Project, PublishTime: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func outcomesOf(pub *fakePublisher) []string {
	var out []string
	for _, m := range pub.all() {
		out = append(out, m.Resource.Name+" "+string(m.Outcome))
	}
	sort.Strings(out)
	return out
}

// TestSweepFansOut: a sweep request for a folder discovers the labelled
// services in it (Cloud Asset by default, per region when told or when
// Cloud Asset is off) and publishes one replay message per service; it
// reconciles nothing itself. No call names the "-" location.
func TestSweepFansOut(t *testing.T) {
	for _, tt := range []struct {
		name, mode string
		disable    bool
		wantCalls  string
	}{
		{"cloud asset", gcp.ModeAuto, false, "google.cloud.asset.v1.AssetService.SearchAllResources"},
		{"per region", gcp.ModeRegions, false, "run.projects.locations.list"},
		{"fallback when cloud asset is off", gcp.ModeAuto, true, "run.projects.locations.list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			em, h, pub, replays := sweepEnv(t, []string{"folders/10"}, tt.mode)
			em.Asset.SetDisabled(tt.disable)
			before := em.Core.Stats.Snapshot()
			if err := h.Handle(t.Context(), replayEvent(t, event.ReplayMessage{Version: 1, Scope: "folders/10", RequestedBy: "scheduler"})); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			want := []string{"team-a/us-central1/web by sweep", "team-b/europe-west1/api by sweep"}
			if diff := cmp.Diff(want, replays.services()); diff != "" {
				t.Errorf("replays (-want +got):\n%s", diff)
			}
			if got := pub.all(); len(got) != 0 {
				t.Errorf("the sweep itself published outcomes %v, want none (each replay does)", outcomesOf(pub))
			}
			calls := em.Core.Stats.Snapshot().Sub(before).Calls
			if calls[tt.wantCalls] == 0 {
				t.Errorf("no %s call: %v", tt.wantCalls, calls)
			}
			for _, m := range []string{"google.cloud.run.v2.Services.GetService", "google.cloud.run.v2.Services.UpdateService"} {
				if calls[m] != 0 {
					t.Errorf("%s calls = %d, want 0: the sweep only discovers", m, calls[m])
				}
			}
		})
	}
}

// TestSweepScope: a sweep is refused (rejected outcome, no discovery) for a
// scope the allowlist does not cover as a whole.
func TestSweepScope(t *testing.T) {
	tests := []struct {
		allow []string
		scope string
		ok    bool
	}{
		{[]string{"folders/10"}, "folders/10", true},
		{[]string{"folders/10"}, "organizations/1", false},
		{[]string{"team-a"}, "projects/team-a", true},
		{[]string{"team-a"}, "projects/team-b", false},
		{[]string{"team-*"}, "folders/10", false},
		{[]string{"*"}, "organizations/1", true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.allow, ",")+" "+tt.scope, func(t *testing.T) {
			em, h, pub, replays := sweepEnv(t, tt.allow, gcp.ModeAuto)
			before := em.Core.Stats.Snapshot()
			if err := h.Handle(t.Context(), replayEvent(t, event.ReplayMessage{Version: 1, Scope: tt.scope})); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			searched := em.Core.Stats.Snapshot().Sub(before).Calls["google.cloud.asset.v1.AssetService.SearchAllResources"] > 0
			rejected := slices.ContainsFunc(pub.all(), func(m *outcome.Message) bool { return m.Outcome == outcome.Rejected })
			if tt.ok != searched || tt.ok == rejected || (!tt.ok && len(replays.services()) != 0) {
				t.Errorf("searched %v, rejected %v, replays %v; want allowed=%v", searched, rejected, replays.services(), tt.ok)
			}
		})
	}
}

// TestProjectReplayDiscovers: a whole-project replay (no region) finds the
// project's labelled services without the "-" wildcard and reconciles each
// (dry run); the Cloud Asset path reads each service fresh, the per-region
// path reconciles from the listing.
func TestProjectReplayDiscovers(t *testing.T) {
	for _, mode := range []string{gcp.ModeAsset, gcp.ModeRegions} {
		t.Run(mode, func(t *testing.T) {
			em, h, pub, _ := sweepEnv(t, []string{"team-a", "team-b"}, mode)
			if err := h.Handle(t.Context(), replayEvent(t, event.ReplayMessage{Version: 1, Project: "team-a"})); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			want := []string{"projects/team-a/locations/us-central1/services/web remediated"}
			if diff := cmp.Diff(want, outcomesOf(pub)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			// No labelled service: the skip names the discovery path.
			if err := h.Handle(t.Context(), replayEvent(t, event.ReplayMessage{Version: 1, Project: "team-b", RequestedBy: "x"})); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			_ = em
		})
	}
	em, h, pub, _ := sweepEnv(t, []string{"legacy"}, gcp.ModeAsset)
	em.Run.Seed("legacy", "us-central1", "old", &runpb.Service{Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "x"}}}}) //nolint:errcheck
	if err := h.Handle(t.Context(), replayEvent(t, event.ReplayMessage{Version: 1, Project: "legacy"})); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	ms := pub.all()
	if len(ms) != 1 || ms[0].Outcome != outcome.Skipped || !strings.Contains(ms[0].Reason, "discovery: cloud-asset") {
		t.Errorf("outcomes %v; want one skipped naming the discovery path", outcomesOf(pub))
	}
}
