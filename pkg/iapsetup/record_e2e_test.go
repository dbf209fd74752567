package iapsetup_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// TestReconcileForgedRecordRevokesNobody (issue #19 item 1): whoever can
// update the service can write the access annotation, so a record iapguard
// cannot verify must not make it revoke anyone. An IAP admin granted
// boss@ by hand; a service editor lists boss@ in the record — as a plain
// list (what iapguard wrote before records were signed), as a record with
// a made-up signature, and as another service's genuine record copied
// over. boss@ keeps access each time, and the outcome says the record does
// not verify. (Before the fix the plain list made iapguard revoke boss@.)
func TestReconcileForgedRecordRevokesNobody(t *testing.T) {
	t.Parallel()
	pols := policies(t, map[string][]string{"web-users": {"group:web@example.com"}, "bosses": {"user:boss@example.com"}})
	donorRef := iapsetup.ServiceRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "donor"}
	donorIAP := iapsetup.CloudRunIAPResource(projectNumber, donorRef)
	// record builds the annotation from donor's genuine record (signed
	// with the same key, in the same emulator).
	tests := []struct {
		name   string
		record func(genuine string) string
		why    string
	}{
		{"plain member list", func(string) string { return "user:boss@example.com" }, "not a signed record"},
		{"made-up signature", func(string) string {
			return `{"granted":{"` + runIAP + `":["user:boss@example.com"]},"key":"projects/123456789012/secrets/iapguard-record-key/versions/1","mac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`
		}, "signature does not match"},
		{"another service's record", func(g string) string { return g }, "signature does not match"},
		{"another service's record re-pointed", func(g string) string { return strings.ReplaceAll(g, donorIAP, runIAP) }, "signature does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, withPolicies(pols))
			f.e.SeedService(t, emulatortest.Svc{Name: "donor", Labels: accessLabels("bosses"), IAP: true})
			if res, err, _ := f.reconcile(t, donorRef); err != nil {
				t.Fatalf("donor: %s (%s), %v", res.Outcome, res.Reason, err)
			}
			genuine := f.e.Service(t, "donor").GetAnnotations()[iapsetup.AccessAnnotation]
			if !strings.Contains(genuine, `"mac"`) || !strings.Contains(genuine, "user:boss@example.com") {
				t.Fatalf("donor record %q is not a signed record of boss@", genuine)
			}
			f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users"), IAP: true,
				Annotations: map[string]string{iapsetup.ManagedAnnotation: "true", iapsetup.AccessAnnotation: tc.record(genuine)}})
			f.grantForeign(t, runIAP, "user:boss@example.com")
			res, err, _ := f.reconcile(t, ref)
			if err != nil {
				t.Fatalf("Reconcile: %s (%s), %v", res.Outcome, res.Reason, err)
			}
			if diff := cmp.Diff([]string{"group:web@example.com", "user:boss@example.com"}, f.accessors(t, runIAP)); diff != "" {
				t.Errorf("accessors (-want +got):\n%s", diff)
			}
			if !slices.ContainsFunc(res.Warnings, func(w string) bool {
				return strings.Contains(w, "does not verify") && strings.Contains(w, tc.why) && strings.Contains(w, "user:boss@example.com")
			}) {
				t.Errorf("warnings %q do not report the unverifiable record listing boss@ (%s)", res.Warnings, tc.why)
			}
			// The record is replaced by a signed one of what iapguard granted.
			if got := f.recorded(t, "hello"); got != "group:web@example.com" {
				t.Errorf("record after the reconcile lists %q, want group:web@example.com", got)
			}
			f.checkSecondRunCompliant(t, ref, accessReads)
		})
	}
}

// TestReconcileRecognisesItsUnconfirmedGrant (issue #19 item 3): the
// service update that confirms a grant fails (UNAVAILABLE) after the grant
// was made. The grant was recorded as intended before it was made, so the
// redelivery recognises it as iapguard's own, reports it, and can revoke it
// later; before the fix it was never recorded, never reported, never
// revoked.
func TestReconcileRecognisesItsUnconfirmedGrant(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"web-users": {"user:a@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users"), IAP: true,
		Annotations: map[string]string{iapsetup.ManagedAnnotation: "true"}})
	// The first UpdateService (the intent) succeeds; the second (the
	// confirmation) fails.
	failSecond := &nthUpdateFails{CloudRun: f.e.Clients.Deps().CloudRun, n: 2}
	d := f.e.Clients.Deps()
	d.CloudRun = failSecond
	r, err := iapsetup.New(d, iapsetup.Options{Scope: scope.AllProjects(), AccessPolicies: policies(t, map[string][]string{"web-users": {"user:a@example.com"}})})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	if _, err, _ := f.reconcile(t, ref); err == nil {
		t.Fatal("first reconcile: want the confirming update's error")
	}
	if diff := cmp.Diff([]string{"user:a@example.com"}, f.accessors(t, runIAP)); diff != "" {
		t.Errorf("accessors after the first reconcile (-want +got):\n%s", diff)
	}
	res, err, _ := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool {
		return strings.Contains(w, "recorded as intended") && strings.Contains(w, "user:a@example.com")
	}) {
		t.Errorf("redelivery warnings %q do not report the recovered grant", res.Warnings)
	}
	if got := f.recorded(t, "hello"); got != "user:a@example.com" {
		t.Errorf("record after the redelivery lists %q, want user:a@example.com", got)
	}
	// The policy drops a@: iapguard revokes its own grant.
	r2, err := iapsetup.New(f.e.Clients.Deps(), iapsetup.Options{Scope: scope.AllProjects(), AccessPolicies: policies(t, map[string][]string{"web-users": {"user:b@example.com"}})})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r2
	if _, err, _ := f.reconcile(t, ref); err != nil {
		t.Fatalf("after the policy change: %v", err)
	}
	if diff := cmp.Diff([]string{"user:b@example.com"}, f.accessors(t, runIAP)); diff != "" {
		t.Errorf("accessors after the policy change (-want +got):\n%s", diff)
	}
}

// nthUpdateFails fails the n-th UpdateService with UNAVAILABLE.
type nthUpdateFails struct {
	iapsetup.CloudRun
	n     int
	calls int
}

func (s *nthUpdateFails) UpdateService(ctx context.Context, u *iapsetup.ServiceUpdate) (*iapsetup.Service, error) {
	s.calls++
	if s.calls == s.n {
		return nil, gcp.Classify(status.Error(codes.Unavailable, "The service is currently unavailable (injected)."))
	}
	return s.CloudRun.UpdateService(ctx, u)
}
