package iapsetup_test

// Many projects, one reconciler: calls per event and the bounded
// per-project caches (docs/orgwide.md "Bounded per-project caches").

import (
	"context"
	"fmt"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// agentOf is the IAP service agent member of p.
func agentOf(p core.Project) string {
	return "serviceAccount:service-" + p.NumberString() + "@gcp-sa-iap.iam.gserviceaccount.com"
}

// seedCompliant stores n projects' worth of compliant labelled services
// (Cloud Run IAP on, the agent as sole invoker, marked as iapguard's)
// without audit entries.
func seedCompliant(t testing.TB, em *emulator.Emulator, projects []core.Project) {
	t.Helper()
	for _, p := range projects {
		if _, err := em.Run.Seed(p.ID, emulatortest.Region, "web", &runpb.Service{Labels: map[string]string{"iap": "enabled"}, IapEnabled: true,
			Annotations: map[string]string{iapsetup.ManagedAnnotation: "true"},
			Template:    &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := em.Run.SeedIAMPolicy(p.ID, emulatortest.Region, "web", &iampb.Policy{Bindings: []*iampb.Binding{
			{Role: "roles/run.invoker", Members: []string{agentOf(p)}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
}

// manyProjects returns n emulated projects proj-0000… (numbers 100000000000+i).
func manyProjects(n int) []core.Project {
	out := make([]core.Project, n)
	for i := range out {
		out[i] = core.Project{ID: fmt.Sprintf("proj-%04d", i), Number: int64(100000000000 + i)}
	}
	return out
}

// orgReconciler is the function's reconciler over n emulated projects, the
// whole organisation in scope by pattern.
type orgReconciler struct {
	em       *emulator.Emulator
	projects []core.Project
	rec      *iapsetup.Reconciler
}

func newOrgReconciler(t testing.TB, n, cacheSize int) *orgReconciler {
	t.Helper()
	ps := manyProjects(n)
	em, err := emulator.New(emulator.Options{Projects: ps})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	seedCompliant(t, em, ps)
	cl, err := gcp.NewClients(context.Background(), gcp.Options{EmulatorHost: em.Addr(), Principal: stack.FunctionPrincipal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	rec, err := iapsetup.New(cl.Deps(), iapsetup.Options{Scope: scope.New("proj-*"), ProjectCacheSize: cacheSize})
	if err != nil {
		t.Fatal(err)
	}
	return &orgReconciler{em: em, projects: ps, rec: rec}
}

// pass reconciles every project's service once, as one event each, and
// returns the calls per event.
func (o *orgReconciler) pass(t testing.TB) float64 {
	t.Helper()
	before := o.em.Core.Stats.Snapshot()
	for _, p := range o.projects {
		res, err := o.rec.Reconcile(context.Background(), iapsetup.ServiceRef{Project: p.ID, Region: emulatortest.Region, Name: "web"})
		if err != nil || res.Outcome != outcome.Compliant {
			t.Fatalf("%s: %v %v (%s)", p.ID, res.Outcome, err, res.Reason)
		}
	}
	return float64(o.em.Core.Stats.Snapshot().Sub(before).Total()) / float64(len(o.projects))
}

// Calls per event across many projects: a project's first event costs one
// generateServiceIdentity more than a warm one; the caches stay within
// their bound, and a bound smaller than the organisation only costs that
// call again. An out-of-scope project costs nothing.
func TestOrgWideCallsPerEvent(t *testing.T) {
	t.Parallel()
	const n, bound = 120, 40
	o := newOrgReconciler(t, n, bound)
	first, cycling := o.pass(t), o.pass(t)
	// The bound is below n and events cycle through every project, so each
	// event finds its project evicted: the worst case for an LRU.
	if first != cycling {
		t.Errorf("calls per event: first %.2f, cycling with %d of %d cached %.2f; want them equal (the agent evicted each time)", first, bound, n, cycling)
	}
	c := iapsetup.CachesOf(o.rec)
	if c.Agents.Len != bound || c.Agents.Evictions != 2*n-bound {
		t.Errorf("agent cache = %+v, want %d entries after %d evictions", c.Agents, bound, 2*n-bound)
	}

	// With room for everyone, the second pass is warm: exactly one call less per event.
	big := newOrgReconciler(t, n, 0)
	first, warm := big.pass(t), big.pass(t)
	if first != warm+1 {
		t.Errorf("calls per event: first %.2f, warm %.2f; want warm = first - 1 (generateServiceIdentity)", first, warm)
	}
	if c := iapsetup.CachesOf(big.rec); c.Agents.Len != n || c.Agents.Evictions != 0 {
		t.Errorf("agent cache = %+v, want all %d projects, no eviction", c.Agents, n)
	}
	before := big.em.Core.Stats.Snapshot()
	res, err := big.rec.Reconcile(context.Background(), iapsetup.ServiceRef{Project: "legacy-c", Region: emulatortest.Region, Name: "web"})
	if err != nil || res.Outcome != outcome.Rejected {
		t.Errorf("out-of-scope reconcile = %v, %v; want rejected", res.Outcome, err)
	}
	if d := big.em.Core.Stats.Snapshot().Sub(before).Calls; len(d) != 0 {
		t.Errorf("out-of-scope reconcile called %v", d)
	}
}

// BenchmarkOrgWide1000Projects reconciles one compliant labelled service in
// each of 1,000 projects through the real adapters and the emulator:
// calls per event on the first pass (every project cold), on later passes
// (warm), and when the per-project caches hold only 100 projects, with the
// agent cache's size. docs/orgwide.md records the figures.
func BenchmarkOrgWide1000Projects(b *testing.B) {
	for _, bc := range []struct {
		name  string
		bound int
		warm  bool
	}{
		{"first", 0, false},
		{"warm", 0, true},
		{"bounded-100", 100, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := newOrgReconciler(b, 1000, bc.bound)
			if bc.warm {
				o.pass(b)
			}
			var calls float64
			passes := 0
			b.ResetTimer()
			for b.Loop() {
				if !bc.warm && passes > 0 {
					b.StopTimer()
					o = newOrgReconciler(b, 1000, bc.bound)
					b.StartTimer()
				}
				calls += o.pass(b)
				passes++
			}
			b.StopTimer()
			c := iapsetup.CachesOf(o.rec)
			b.ReportMetric(calls/float64(passes), "calls/event")
			b.ReportMetric(float64(c.Agents.Len), "cached-agents")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(passes*len(o.projects)), "µs/event")
		})
	}
}
