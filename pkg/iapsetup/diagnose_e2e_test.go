package iapsetup_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// stepLines are the name, status and resource of each step.
func stepLines(steps []outcome.Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Name+" "+string(s.Result)+" "+s.Resource)
	}
	return out
}

// TestDiagnose: Diagnose is the dry run's plan for a labelled service, the
// as-if-labelled plan for an unlabelled one, and makes no write.
func TestDiagnose(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	other := iapsetup.ServiceRef{Project: ref.Project, Region: ref.Region, Name: "plain"}
	f.e.SeedService(t, emulatortest.Svc{Name: "plain", Labels: map[string]string{"team": "web"}})
	f.e.SeedPolicy(t, "plain", publicPolicy())
	ctx := t.Context()

	res, err, _ := f.reconcile(t, ref, iapsetup.WithDryRun(true), iapsetup.WithAccessCheck())
	if err != nil {
		t.Fatal(err)
	}
	before := f.e.Snapshot()
	dg, err := f.r.Diagnose(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	calls := f.e.Snapshot().Sub(before).Calls
	if diff := cmp.Diff(stepLines(res.Steps), stepLines(dg.Plan.Steps)); diff != "" {
		t.Errorf("Diagnose steps differ from the dry run's (-dry run +Diagnose):\n%s", diff)
	}
	if dg.Plan.Outcome != res.Outcome || dg.Plan.Mode != res.Mode {
		t.Errorf("Diagnose %s/%s, dry run %s/%s", dg.Plan.Outcome, dg.Plan.Mode, res.Outcome, res.Mode)
	}
	for _, m := range []string{mSetPolicy, mUpdateService, mPatchBackend} {
		if calls[m] != 0 {
			t.Errorf("Diagnose called %s", m)
		}
	}
	if len(dg.Fronting) != 1 || dg.Fronting[0].Ref.String() != l.backend.Path() || dg.ProjectNumber != "123456789012" || dg.AgentErr != nil {
		t.Errorf("fronting %v, project number %q, agent error %v", dg.Fronting, dg.ProjectNumber, dg.AgentErr)
	}

	// Unlabelled: the dry run leaves it alone; Diagnose plans as if labelled.
	res, err, _ = f.reconcile(t, other, iapsetup.WithDryRun(true))
	if err != nil || res.Outcome != outcome.Skipped {
		t.Fatalf("dry run of an unlabelled service: %s, %v", res.Outcome, err)
	}
	dg, err = f.r.Diagnose(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	// Remediated (not skipped) in direct mode: planned as if labelled.
	if dg.Desired.Intent != iapsetup.Unmanaged || dg.Plan.Mode != outcome.Direct || dg.Plan.Outcome != outcome.Remediated || !dg.Plan.DryRun {
		t.Errorf("unlabelled: desired %s, mode %s, outcome %s, dry run %v", dg.Desired.Intent, dg.Plan.Mode, dg.Plan.Outcome, dg.Plan.DryRun)
	}

	// Backend IAP already on: the function checks no frontend; Diagnose
	// checks every fronting backend's.
	f.e.SeedService(t, emulatortest.Svc{Name: "hello2", Labels: labelled()})
	neg := f.e.AddNEG(t, "hello2-neg", "hello2", "")
	b := emulatortest.Backend{Name: "web2", Groups: []string{neg}, IAP: true}
	f.e.AddFrontend(t, b.Name, f.e.AddBackend(t, b), false)
	dg, err = f.r.Diagnose(ctx, iapsetup.ServiceRef{Project: ref.Project, Region: ref.Region, Name: "hello2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dg.Fronting) != 1 {
		t.Fatalf("fronting %v", dg.Fronting)
	}
	if fe, ok := dg.Frontends[iapsetup.ResourcePath(dg.Fronting[0].SelfLink)]; !ok || fe.HTTPS {
		t.Errorf("frontend of %s: %+v, checked %v; want checked, no HTTPS", b.Name, fe, ok)
	}
}
