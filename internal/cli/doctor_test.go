package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

func TestDoctor(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	ctx := t.Context()
	// One more: labelled, behind a load balancer with only an HTTP frontend.
	if _, err := ts.clients.CreateService(ctx, testProject, testRegion, demo.ServiceSpec{Name: "intranet", Labels: map[string]string{"iap": "enabled"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.clients.BuildLoadBalancer(ctx, testProject, testRegion, demo.LBSpec{Service: "intranet", HTTPOnly: true}); err != nil {
		t.Fatal(err)
	}
	before := ts.auditEntries()

	for _, svc := range []string{"storefront", "assets", "marketing", "intranet"} {
		out := ts.mustRun(t, ExitNonCompliant, "doctor", svc, "--project", testProject, "--region", testRegion)
		golden(t, "doctor-"+svc+".golden", out)
		// No contradictions: IAP is not "on" in one line and "off" in
		// another, and a labelled service is not told to get the label.
		if strings.Contains(out, "IAP is off for") && strings.Contains(out, "IAP is on and") {
			t.Errorf("doctor %s says IAP is both off and on:\n%s", svc, out)
		}
		if svc != "marketing" && strings.Contains(out, "label the service iap=enabled") {
			t.Errorf("doctor %s tells a labelled service to get the label:\n%s", svc, out)
		}
	}
	out := ts.mustRun(t, ExitNonCompliant, "doctor", "storefront", "--project", testProject, "--region", testRegion, "-o", "json")
	golden(t, "doctor-storefront.json.golden", out)
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var problems []string
	for _, f := range rep.Findings {
		if f.Status == findingProblem {
			problems = append(problems, f.Check)
			if !strings.HasPrefix(f.Fix, "gcloud ") {
				t.Errorf("problem %s has no gcloud fix: %q", f.Check, f.Fix)
			}
		}
	}
	if diff := cmp.Diff([]string{"invoker", "iam-auth", "backend-iap", "ingress"}, problems); diff != "" {
		t.Errorf("storefront problems (-want +got):\n%s", diff)
	}
	if got := ts.auditEntries(); got != before {
		t.Errorf("doctor wrote %d audit-log entries", got-before)
	}

	// After enforcement nothing is wrong: exit 0.
	ts.mustRun(t, ExitOK, "enforce", "storefront", "--project", testProject, "--region", testRegion)
	out = ts.mustRun(t, ExitOK, "doctor", "storefront", "--project", testProject, "--region", testRegion)
	if !strings.Contains(out, "\n0 problem(s), ") || strings.Contains(out, "✗") {
		t.Errorf("doctor after enforce:\n%s", out)
	}
}

// TestDiagnoseBuiltinIAP covers a service whose built-in IAP is on while a
// load balancer with Cloud CDN fronts it: the plan keeps it in direct mode,
// and the only problem is CDN serving cached responses past IAP.
func TestDiagnoseBuiltinIAP(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	ctx := t.Context()
	// Enforced with no load balancer in front (direct mode: built-in IAP
	// on, the agent bound), then fronted by a backend service with CDN.
	if _, err := ts.clients.CreateService(ctx, testProject, testRegion, demo.ServiceSpec{Name: "web", Labels: map[string]string{"iap": "enabled"}}); err != nil {
		t.Fatal(err)
	}
	ts.mustRun(t, ExitOK, "enforce", "web", "--project", testProject, "--region", testRegion)
	lb, err := ts.clients.BuildLoadBalancer(ctx, testProject, testRegion, demo.LBSpec{Service: "web", CDN: true})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := connect(withEnv(ctx, ts.env()), testProject, iapsetup.Options{Scope: scope.New(testProject), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	in, err := sess.inspect(withEnv(ctx, ts.env()), iapsetup.ServiceRef{Project: testProject, Region: testRegion, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Service.IAPEnabled || len(in.Fronting) != 1 || !in.Fronting[0].EnableCDN {
		t.Fatalf("setup: built-in IAP %v, fronting %+v", in.Service.IAPEnabled, in.Fronting)
	}
	rep := diagnose(in)
	got := map[string]string{}
	for _, f := range rep.Findings {
		if f.Status != findingNote {
			got[f.Check] = f.Status + ": " + f.Fix
		}
	}
	want := map[string]string{
		"service": "ok: ", "agent": "ok: ", "invoker": "ok: ", "iam-auth": "ok: ", "load-balancer": "ok: ", "https": "ok: ",
		"cdn":           "problem: gcloud compute backend-services update " + lb.BackendService + " --project=" + testProject + " --global --no-enable-cdn",
		"ingress":       "ok: ",
		"cloud-run-iap": "ok: ",
	}
	for k := range got {
		if k == "access" {
			delete(got, k) // who may pass is not this test's subject
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if rep.Mode != "direct" || rep.Problems != 1 {
		t.Errorf("mode %s, %d problems", rep.Mode, rep.Problems)
	}
}

// TestDoctorAgreesWithDryRun holds doctor to the function: for a set of
// states of the demo project, doctor's verdict on each rule of each
// labelled service (ok / problem / warning, per resource) is what the
// reconciler's dry run (Reconcile, WithDryRun, WithAccessCheck — what
// `enforce --dry-run` runs) plans for it. A diagnosis that observed or
// planned on its own would drift from these steps.
func TestDoctorAgreesWithDryRun(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	ctx := withEnv(t.Context(), ts.env())
	sess, err := connect(ctx, testProject, iapsetup.Options{Scope: scope.New(testProject), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// doctor's check name for each step, and its verdict for each status.
	checks := map[string]string{
		outcome.StepInvokerBinding: "invoker", outcome.StepIngress: "ingress", outcome.StepBackendIAP: "backend-iap",
		outcome.StepDirectIAP: "cloud-run-iap", outcome.StepAccess: "access",
	}
	// verdict is doctor's documented reading of a step (docs/iapctl.md).
	verdict := func(st outcome.Step) string {
		switch {
		case st.Result == outcome.StepOK:
			return findingOK
		case st.Result == outcome.StepChanged, st.Result == outcome.StepConflict,
			st.Name == outcome.StepAccess && (st.Result == outcome.StepRejected || st.Result == outcome.StepFailed):
			return findingProblem
		case st.Name == outcome.StepIngress && st.Result != outcome.StepWarning:
			return findingOK // ingress that needs nothing (no load balancer) is fine
		}
		return findingWarning
	}
	states := []struct {
		name  string
		setup func(t *testing.T)
	}{
		{"as built", func(*testing.T) {}},
		{"marketing labelled", func(t *testing.T) {
			if err := ts.clients.SetLabels(t.Context(), testProject, testRegion, "marketing", map[string]string{"iap": "enabled"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"storefront backend IAP on by hand", func(t *testing.T) {
			if err := ts.clients.SetBackendIAP(t.Context(), testProject, "storefront-backend", true); err != nil {
				t.Fatal(err)
			}
		}},
		{"storefront enforced", func(t *testing.T) {
			ts.mustRun(t, ExitOK, "enforce", "storefront", "--project", testProject, "--region", testRegion)
		}},
		// A declared access policy the function has not been given: the
		// function refuses it; a diagnosis that planned without the
		// service's own labels would not.
		{"storefront declares iap-access", func(t *testing.T) {
			if err := ts.clients.SetLabels(t.Context(), testProject, testRegion, "storefront", map[string]string{"iap": "enabled", "iap-access": "web-team"}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	compared := 0
	for _, state := range states {
		state.setup(t)
		for _, svc := range []string{"storefront", "assets", "marketing"} {
			res, err := sess.rec.Reconcile(ctx, iapsetup.ServiceRef{Project: testProject, Region: testRegion, Name: svc},
				iapsetup.WithDryRun(true), iapsetup.WithAccessCheck())
			if err != nil {
				t.Fatalf("%s: dry run of %s: %v", state.name, svc, err)
			}
			if res.Outcome == outcome.Skipped {
				continue // unlabelled: the function plans nothing to compare with
			}
			var want []string
			for _, st := range res.Steps {
				if c, ok := checks[st.Name]; ok && (st.Name != outcome.StepBackendIAP || st.Result != outcome.StepConflict || res.Mode != outcome.Direct) {
					want = append(want, c+" "+verdict(st))
				}
			}
			_, out, _ := ts.run(t, "doctor", svc, "--project", testProject, "--region", testRegion, "-o", "json")
			var rep doctorReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("%s: doctor %s: %v\n%s", state.name, svc, err, out)
			}
			var got []string
			for _, f := range rep.Findings {
				if slices.Contains([]string{"invoker", "ingress", "backend-iap", "cloud-run-iap", "access"}, f.Check) {
					got = append(got, f.Check+" "+f.Status)
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: doctor %s disagrees with the dry run (-dry run +doctor):\n%s", state.name, svc, diff)
			}
			if rep.Mode != string(res.Mode) {
				t.Errorf("%s: doctor %s: mode %s, dry run %s", state.name, svc, rep.Mode, res.Mode)
			}
			compared++
		}
	}
	if compared < 8 {
		t.Errorf("compared %d diagnoses, want at least 8", compared)
	}
}
