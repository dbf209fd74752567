package test

// The organisation-wide path (docs/orgwide.md): an aggregated log sink
// routes the audit entries of many projects to one Pub/Sub topic, whose
// messagePublished trigger delivers them to one function, which enforces in
// the projects its scope (IAPGUARD_PROJECTS, with patterns) allows.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/logsink"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// An organisation: the function runs in team-a; team-b matches the scope's
// pattern; legacy-c is in the organisation (its entries reach the function
// through the sink) but outside the scope.
var orgProjects = []core.Project{
	{ID: "team-a", Number: 111111111111},
	{ID: "team-b", Number: 222222222222},
	{ID: "legacy-c", Number: 333333333333},
}

// orgScope is IAPGUARD_PROJECTS as the deployment writes it: the pattern,
// plus the numbers of the projects it matched.
var orgScope = []string{"team-*", "111111111111", "222222222222"}

func newOrgEnv(t *testing.T, directToo bool) *env {
	t.Helper()
	return newEnv(t, stack.Options{
		Emulator: emulator.Options{
			Projects:           orgProjects,
			LogSink:            &logsink.SinkOptions{}, // an organisation sink: every project
			NoAuditLogTriggers: !directToo,
		},
		Projects: orgScope,
	})
}

func (e *env) in(project string) *env {
	c := *e
	c.p = project
	return &c
}

// outcomesOf returns the outcome kinds received since mark() for one
// project's service, and how they arrived.
func (e *env) outcomesOf(project, svc string) (kinds, vias []string) {
	for _, m := range e.st.Outcomes.All() {
		if m.Resource.Project == project && m.Resource.Service == svc {
			kinds = append(kinds, string(m.Outcome))
			vias = append(vias, m.Trigger.Via)
		}
	}
	return kinds, vias
}

// acceptedWrites counts, since mark(), the successful mutations the
// function made per project and method (a Compute operation counts once).
func (e *env) acceptedWrites() map[string]int {
	out := map[string]int{}
	for _, en := range e.st.Emu.Core.Audit.Entries()[e.auditMark:] {
		p := en.ProtoPayload
		if p.AuthenticationInfo == nil || p.AuthenticationInfo.PrincipalEmail != stack.FunctionPrincipal || p.Status != nil {
			continue
		}
		if en.Operation != nil && en.Operation.Last || strings.Contains(p.MethodName, "GenerateServiceIdentity") {
			continue
		}
		project := strings.TrimPrefix(strings.Split(en.LogName, "/logs/")[0], "projects/")
		out[project+" "+p.MethodName]++
	}
	return out
}

// functionCalls returns the API calls the function made since the counters
// were reset, without its outcome publishes.
func (e *env) functionCalls() map[string]int64 {
	out := map[string]int64{}
	for k, v := range e.st.Emu.Core.Stats.ByPrincipal(stack.FunctionPrincipal) {
		if !strings.HasPrefix(k, "google.pubsub.") {
			out[k] = v
		}
	}
	return out
}

func agentOf(p core.Project) string {
	return "serviceAccount:service-" + p.NumberString() + "@gcp-sa-iap.iam.gserviceaccount.com"
}

// TestOrgWideSinkPathConverges is the acceptance test: three
// projects, direct Eventarc delivery off, one log sink. The two projects in
// scope converge through the sink path alone; the third gets rejected
// outcomes and not a single API call from the function.
func TestOrgWideSinkPathConverges(t *testing.T) {
	t.Parallel()
	e := newOrgEnv(t, false)
	if e.st.Emu.Delivery != nil {
		t.Fatal("the Eventarc audit-log stand-in is running; this test must exercise the sink path alone")
	}
	a, b, c := e.in("team-a"), e.in("team-b"), e.in("legacy-c")
	for _, x := range []*env{a, b, c} {
		x.create(demo.ServiceSpec{Name: "web", Public: true})
	}
	e.mark()

	// In scope: both projects converge, each write once.
	a.label("web", enabled)
	b.label("web", enabled)
	e.settle()
	for _, x := range []struct {
		env *env
		p   core.Project
	}{{a, orgProjects[0]}, {b, orgProjects[1]}} {
		kinds, vias := e.outcomesOf(x.p.ID, "web")
		if count(kinds, "remediated") != 1 || count(kinds, "compliant") != len(kinds)-1 {
			t.Errorf("%s/web outcomes = %v, want one remediated, the rest compliant", x.p.ID, kinds)
		}
		for _, v := range vias {
			if v != "log-sink" {
				t.Errorf("%s/web: an outcome arrived via %q; only the sink path runs", x.p.ID, v)
			}
		}
		svc := x.env.service("web")
		if !svc.IapEnabled || svc.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
			t.Errorf("%s/web: iapEnabled %v, ingress %v; want Cloud Run's IAP on, ingress left as it was", x.p.ID, svc.IapEnabled, svc.Ingress)
		}
		if diff := cmp.Diff([]string{agentOf(x.p)}, x.env.policy("web")["roles/run.invoker"]); diff != "" {
			t.Errorf("%s/web invokers (-want +got):\n%s", x.p.ID, diff)
		}
	}
	wantWrites := map[string]int{
		"team-a google.cloud.run.v2.Services.SetIamPolicy":  1,
		"team-a google.cloud.run.v2.Services.UpdateService": 1,
		"team-b google.cloud.run.v2.Services.SetIamPolicy":  1,
		"team-b google.cloud.run.v2.Services.UpdateService": 1,
	}
	if diff := cmp.Diff(wantWrites, e.acceptedWrites()); diff != "" {
		t.Errorf("the function's writes (-want +got):\n%s", diff)
	}
	if len(e.functionCalls()) == 0 {
		t.Error("no API call is attributed to the function; the zero-call check below would prove nothing")
	}
	if st := e.st.Emu.Sink.Stats(); st.Failed != 0 || st.Routed == 0 {
		t.Errorf("sink stats = %+v", st)
	}

	// A load-balanced service in scope converges through Compute events
	// routed by the sink as well.
	e.mark()
	b.create(demo.ServiceSpec{Name: "shop", Public: true})
	shopLB := b.lb(demo.LBSpec{Service: "shop"})
	b.label("shop", enabled)
	e.settle()
	if bs := b.backend(shopLB.BackendService); bs.Iap == nil || !bs.Iap.Enabled {
		t.Errorf("team-b backend %s IAP = %+v, want enabled", shopLB.BackendService, bs.Iap)
	}
	if svc := b.service("shop"); svc.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER {
		t.Errorf("team-b/shop ingress = %v, want internal load balancer", svc.Ingress)
	}

	// Out of scope: rejected, and the function calls nothing at all.
	e.mark()
	e.st.Emu.Core.Stats.Reset()
	c.label("web", enabled)
	c.create(demo.ServiceSpec{Name: "batch", Public: true, Labels: enabled})
	c.lb(demo.LBSpec{Service: "batch"})
	e.settle()
	for _, svc := range []string{"web", "batch"} {
		kinds, vias := e.outcomesOf("legacy-c", svc)
		if len(kinds) == 0 || count(kinds, "rejected") != len(kinds) {
			t.Errorf("legacy-c/%s outcomes = %v, want only rejected", svc, kinds)
		}
		if count(vias, "log-sink") != len(vias) {
			t.Errorf("legacy-c/%s arrived via %v, want the sink", svc, vias)
		}
	}
	// Compute events: the decoder skips operations' first entries before
	// any scope check (no call either way); the last ones are rejected.
	var computeRejected int
	for _, m := range e.st.Outcomes.All() {
		if m.Resource.Project != "legacy-c" || m.Resource.Service != "" {
			continue
		}
		switch {
		case m.Outcome == outcome.Rejected:
			computeRejected++
		case m.Outcome == outcome.Skipped && strings.Contains(m.Reason, "last entry"):
		default:
			t.Errorf("legacy-c %s (%s): outcome %s (%s), want rejected", m.Resource.Name, m.Trigger.Method, m.Outcome, m.Reason)
		}
	}
	if computeRejected == 0 {
		t.Error("no rejected outcome for legacy-c's load balancer events; the sink did not route them")
	}
	if calls := e.functionCalls(); len(calls) != 0 {
		t.Errorf("the function called %v for an out-of-scope project; want no call", calls)
	}
	if w := e.acceptedWrites(); len(w) != 0 {
		t.Errorf("the function wrote %v", w)
	}
	if !slices.Contains(c.policy("web")["roles/run.invoker"], "allUsers") || c.service("web").IapEnabled {
		t.Error("legacy-c/web was changed although it is outside the scope")
	}
	t.Logf("sink %+v; pushers %+v", e.st.Emu.Sink.Stats(), e.st.Emu.Pushers[0].Stats())
}

// TestOrgWideFolderScope: the scope is one folder, IAPGUARD_PROJECTS=
// folders/10. team-a sits in folders/10, team-b two folders deep
// (folders/10 → folders/20), legacy-c in the sibling folders/11; an
// organisation sink routes all three. team-b converges through the sink;
// legacy-c is rejected after its ancestry is read once (GetProject and
// GetFolder), and its later events cost no call at all.
func TestOrgWideFolderScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{
		Emulator: emulator.Options{
			Projects: []core.Project{
				{ID: "team-a", Number: 111111111111, Parent: "folders/10"},
				{ID: "team-b", Number: 222222222222, Parent: "folders/20"},
				{ID: "legacy-c", Number: 333333333333, Parent: "folders/11"},
			},
			Folders: []core.Folder{
				{ID: "10", Parent: "organizations/1"}, {ID: "11", Parent: "organizations/1"}, {ID: "20", Parent: "folders/10"},
			},
			LogSink:            &logsink.SinkOptions{},
			NoAuditLogTriggers: true,
		},
		Projects: []string{"folders/10"},
	})
	b, c := e.in("team-b"), e.in("legacy-c")
	e.mark()
	e.st.Emu.Core.Stats.Reset()
	b.create(demo.ServiceSpec{Name: "web", Public: true})
	b.label("web", enabled)
	e.settle()
	kinds, _ := e.outcomesOf("team-b", "web")
	if count(kinds, "remediated") == 0 || count(kinds, "rejected") != 0 {
		t.Errorf("team-b/web outcomes = %v, want remediated and none rejected", kinds)
	}
	wantWrites := map[string]int{
		"team-b google.cloud.run.v2.Services.SetIamPolicy":  1,
		"team-b google.cloud.run.v2.Services.UpdateService": 1,
	}
	if diff := cmp.Diff(wantWrites, e.acceptedWrites()); diff != "" {
		t.Errorf("the function's writes (-want +got):\n%s", diff)
	}
	if svc := b.service("web"); !svc.IapEnabled {
		t.Error("team-b/web: IAP is off; the folder scope did not reach two folders deep")
	}
	rm := func() map[string]int64 {
		out := map[string]int64{}
		for k, v := range e.functionCalls() {
			if strings.HasPrefix(k, "google.cloud.resourcemanager.") {
				out[k] = v
			}
		}
		return out
	}
	// Every event of team-b (the create, the label) shares one ancestry
	// lookup: GetProject, then GetFolder of folders/20 (its parent
	// folders/10 is listed).
	want := map[string]int64{"google.cloud.resourcemanager.v3.Projects.GetProject": 1, "google.cloud.resourcemanager.v3.Folders.GetFolder": 1}
	if diff := cmp.Diff(want, rm()); diff != "" {
		t.Errorf("Resource Manager calls for team-b's events (-want +got):\n%s", diff)
	}
	t.Logf("team-b, first events: function calls %v", e.functionCalls())

	e.st.Emu.Core.Stats.Reset()
	c.create(demo.ServiceSpec{Name: "web", Public: true})
	c.label("web", enabled)
	e.settle()
	kinds, _ = e.outcomesOf("legacy-c", "web")
	if len(kinds) == 0 || count(kinds, "rejected") != len(kinds) {
		t.Errorf("legacy-c/web outcomes = %v, want only rejected", kinds)
	}
	for _, m := range e.st.Outcomes.All() {
		if m.Resource.Project == "legacy-c" && !strings.Contains(m.Reason, "projects/legacy-c → folders/11 → organizations/1") {
			t.Errorf("legacy-c rejected with %q, want the ancestry checked", m.Reason)
		}
	}
	if diff := cmp.Diff(want, e.functionCalls()); diff != "" {
		t.Errorf("the function's calls for legacy-c (-want +got):\n%s", diff)
	}

	// Warm: another out-of-scope event costs nothing.
	e.st.Emu.Core.Stats.Reset()
	c.label("web", map[string]string{"iap": "enabled", "team": "ops"})
	e.settle()
	if calls := e.functionCalls(); len(calls) != 0 {
		t.Errorf("the function called %v for a cached out-of-scope project; want no call", calls)
	}
	if !slices.Contains(c.policy("web")["roles/run.invoker"], "allUsers") || c.service("web").IapEnabled {
		t.Error("legacy-c/web was changed although it is outside the scope")
	}
}

// TestOrgWideBothPaths runs the direct Eventarc path and the sink path at
// once, as when the host project sits in the sink's folder: every entry
// reaches the function twice, and every write still happens once.
func TestOrgWideBothPaths(t *testing.T) {
	t.Parallel()
	e := newOrgEnv(t, true)
	if e.st.Emu.Delivery == nil || e.st.Emu.Sink == nil {
		t.Fatal("want both the Eventarc stand-in and the sink running")
	}
	a, b := e.in("team-a"), e.in("team-b")
	a.create(demo.ServiceSpec{Name: "web", Public: true})
	b.create(demo.ServiceSpec{Name: "web", Public: true})
	lb := b.lb(demo.LBSpec{Service: "web"})
	e.mark()

	a.label("web", enabled)
	b.label("web", enabled)
	e.settle()

	wantWrites := map[string]int{
		"team-a google.cloud.run.v2.Services.SetIamPolicy":  1,
		"team-a google.cloud.run.v2.Services.UpdateService": 1,
		"team-b google.cloud.run.v2.Services.SetIamPolicy":  1,
		"team-b google.cloud.run.v2.Services.UpdateService": 1,
		"team-b v1.compute.backendServices.patch":           1,
	}
	if diff := cmp.Diff(wantWrites, e.acceptedWrites()); diff != "" {
		t.Errorf("the function's writes with both paths on (-want +got):\n%s", diff)
	}
	// The user's change arrives on both paths with one event id; the two
	// deliveries share one reconcile (functions' coalescer), so both report
	// the same remediation, and everything after is compliant.
	for _, p := range []string{"team-a", "team-b"} {
		kinds, vias := e.outcomesOf(p, "web")
		if count(kinds, "remediated")+count(kinds, "compliant") != len(kinds) {
			t.Errorf("%s/web outcomes = %v, want remediated or compliant only", p, kinds)
		}
		if count(vias, "eventarc") == 0 || count(vias, "log-sink") == 0 {
			t.Errorf("%s/web arrived via %v, want both paths", p, vias)
		}
		remediatedBy := map[string][]string{}
		for _, m := range e.st.Outcomes.All() {
			if m.Resource.Project == p && m.Resource.Service == "web" && m.Outcome == outcome.Remediated {
				remediatedBy[m.Trigger.EventID] = append(remediatedBy[m.Trigger.EventID], m.Trigger.Via)
			}
		}
		if len(remediatedBy) != 1 {
			t.Errorf("%s/web remediated by events %v, want exactly one event (the user's change)", p, remediatedBy)
		}
	}
	if bs := b.backend(lb.BackendService); bs.Iap == nil || !bs.Iap.Enabled {
		t.Errorf("backend IAP = %+v, want enabled", bs.Iap)
	}
}

// TestReplayTopicReachesTheFunction: with topic triggers on (the sandbox's
// setting), a replay message published to the replay topic is delivered to
// the function by the same push stand-in the sink path uses.
func TestReplayTopicReachesTheFunction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{Emulator: emulator.Options{TopicTriggers: true}})
	// A labelled service no event announced (seeded without an audit
	// entry): only a replay reaches it.
	if _, err := e.st.Emu.Run.Seed(e.p, region, "api", &runpb.Service{Labels: enabled,
		Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}}); err != nil {
		t.Fatal(err)
	}
	e.mark()
	if got := e.st.Outcomes.All(); len(got) != 0 {
		t.Fatalf("outcomes before the replay: %d", len(got))
	}
	if len(e.st.Emu.Pushers) != 1 {
		t.Fatalf("%d pushers, want 1 (the replay trigger's)", len(e.st.Emu.Pushers))
	}
	topic := e.st.Emu.Pushers[0].Topic()
	body := fmt.Sprintf(`{"version":1,"project":%q,"region":%q,"service":"api","requestedBy":"test"}`, e.p, region)
	e.st.Emu.PubSub.Publish(topic, []byte(body), nil)
	e.settle()
	var replayed []string
	for _, m := range e.st.Outcomes.ForService("api") {
		if m.Trigger.Via == "pubsub-replay" {
			replayed = append(replayed, string(m.Outcome))
		}
	}
	if diff := cmp.Diff([]string{"remediated"}, replayed); diff != "" {
		t.Errorf("outcomes of the replay message (-want +got):\n%s", diff)
	}
	if !e.service("api").IapEnabled {
		t.Error("the replayed service was not reconciled")
	}
}

// TestOrgWideSweepEnumeratesTheScope: the sweep (and iapctl audit
// --all-projects) enumerate the projects in scope from the pattern and
// Resource Manager's SearchProjects (the production adapter,
// gcp.ProjectDirectory, against the emulator's Resource Manager surface),
// then replay each; drift no event announced is healed in every project in
// scope and nowhere else.
func TestOrgWideSweepEnumeratesTheScope(t *testing.T) {
	t.Parallel()
	e := newOrgEnv(t, false)
	// Drift without audit entries: labelled, public services seeded directly.
	for _, p := range orgProjects {
		if _, err := e.st.Emu.Run.Seed(p.ID, region, "drifted", &runpb.Service{Labels: enabled,
			Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	e.mark()

	sc, err := scope.Parse(strings.Join(orgScope, ","))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gcp.NewProjectDirectory(e.ctx, gcp.Options{EmulatorHost: e.st.Emu.Addr(), Principal: "operator@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	got, err := sc.Projects(e.ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []scope.ProjectInfo{{ID: "team-a", Number: "111111111111"}, {ID: "team-b", Number: "222222222222"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("projects in scope (-want +got):\n%s", diff)
	}
	topic := e.st.Emu.Pushers[0].Topic()
	for _, p := range got {
		e.st.Emu.PubSub.Publish(topic, fmt.Appendf(nil, `{"version":1,"project":%q,"requestedBy":"scheduler"}`, p.ID), nil)
	}
	e.settle()
	for _, p := range orgProjects {
		svc, ok := e.st.Emu.Run.Service(p.ID, region, "drifted")
		if inScope := p.ID != "legacy-c"; !ok || svc.IapEnabled != inScope {
			t.Errorf("%s/drifted: iapEnabled %v, want %v", p.ID, svc.GetIapEnabled(), inScope)
		}
	}
}
