package iapsetup_test

import (
	"strings"
	"testing"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// TestReconcileSharedBackend (issue #19 item 2): one backend service fronts
// two teams' Cloud Run services. Labelling one must not turn IAP on for the
// unlabelled neighbour, nor grant its access policy on the shared backend:
// conflict, naming the services. Once both are labelled with the same
// policy, the backend is enabled.
func TestReconcileSharedBackend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"web-users": {"domain:example.com"}, "other": {"group:b@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users")})
	f.e.SeedService(t, emulatortest.Svc{Name: "neighbour"})
	a := f.e.AddNEG(t, "hello-neg", "hello", "")
	b := f.e.AddNEG(t, "neighbour-neg", "neighbour", "")
	web := emulatortest.Backend{Name: "web", Groups: []string{a, b}}
	l := f.e.AddBackend(t, web)
	f.e.AddFrontend(t, "web", l, true)

	check := func(what string, wantIAP bool) *iapsetup.Result {
		t.Helper()
		res, err, _ := f.reconcile(t, ref)
		if err != nil {
			t.Fatalf("%s: Reconcile: %v", what, err)
		}
		if got := f.e.GetBackend(t, web); (got.Iap != nil && got.Iap.Enabled) != wantIAP {
			t.Errorf("%s: backend IAP = %v, want %v", what, got.Iap != nil && got.Iap.Enabled, wantIAP)
		}
		return res
	}
	res := check("neighbour unlabelled", false)
	if res.Outcome != outcome.Conflict || !strings.Contains(res.Reason, "neighbour") || !strings.Contains(res.Reason, "not labelled") {
		t.Errorf("neighbour unlabelled: outcome %s (%s), want conflict naming neighbour", res.Outcome, res.Reason)
	}
	if n := f.e.Snapshot().Calls[mIAPSet]; n != 0 {
		t.Errorf("%d IAP policy writes on a shared backend", n)
	}

	f.e.SeedService(t, emulatortest.Svc{Name: "neighbour", Labels: accessLabels("other")})
	res = check("different policies", false)
	if res.Outcome != outcome.Conflict || !strings.Contains(res.Reason, `iap-access="other"`) {
		t.Errorf("different policies: outcome %s (%s), want conflict naming the policy", res.Outcome, res.Reason)
	}

	f.e.SeedService(t, emulatortest.Svc{Name: "neighbour", Labels: accessLabels("web-users")})
	res = check("agreeing", true)
	if res.Outcome != outcome.Remediated {
		t.Errorf("agreeing: outcome %s (%s), want remediated", res.Outcome, res.Reason)
	}
}
