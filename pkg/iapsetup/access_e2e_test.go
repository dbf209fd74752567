package iapsetup_test

// Access (who may pass IAP) at the transport seam: the real adapters over
// the official clients against the emulated Cloud Run, Compute, Service
// Usage and IAP APIs.

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

const projectNumber = "123456789012"

var runIAP = iapsetup.CloudRunIAPResource(projectNumber, ref)

func policies(t *testing.T, m map[string][]string) *access.Policies {
	t.Helper()
	a, err := access.New("test", m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func withPolicies(a *access.Policies) func(*iapsetup.Options) {
	return func(o *iapsetup.Options) { o.AccessPolicies = a }
}

// accessors returns the unconditional holders of the accessor role on res.
func (f *fixture) accessors(t *testing.T, res string) []string {
	t.Helper()
	p, err := f.e.Clients.IAPAdapter.GetIAPPolicy(t.Context(), res)
	if err != nil {
		t.Fatalf("reading IAP policy %s: %v", res, err)
	}
	var out []string
	for _, b := range p.Bindings {
		if b.Role == iapsetup.RoleAccessor && b.Condition == nil {
			out = append(out, b.Members...)
		}
	}
	sort.Strings(out)
	return out
}

// grantForeign adds member to the accessor role on res, as a person would.
func (f *fixture) grantForeign(t *testing.T, res, member string) {
	t.Helper()
	a := f.e.Clients.IAPAdapter
	p, err := a.GetIAPPolicy(t.Context(), res)
	if err != nil {
		t.Fatal(err)
	}
	p.Bindings = append(p.Bindings, iapsetup.Binding{Role: iapsetup.RoleAccessor, Members: []string{member}})
	if _, err := a.SetIAPPolicy(t.Context(), res, p); err != nil {
		t.Fatal(err)
	}
}

// mSecret is the access-record key read (once per key version per
// reconciler and TTL).
const mSecret = "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion"

// recorded returns the members the service's access record lists, joined
// with commas (every IAP resource), after checking it is signed.
func (f *fixture) recorded(t *testing.T, service string) string {
	t.Helper()
	v := f.e.Service(t, service).GetAnnotations()[iapsetup.AccessAnnotation]
	if v == "" {
		return ""
	}
	var rec struct {
		Granted map[string][]string `json:"granted"`
		Key     string              `json:"key"`
		MAC     string              `json:"mac"`
	}
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		t.Fatalf("access record %q: %v", v, err)
	}
	if rec.Key == "" || rec.MAC == "" {
		t.Errorf("access record %q is not signed", v)
	}
	var all []string
	for _, ms := range rec.Granted {
		for _, m := range ms {
			if !slices.Contains(all, m) {
				all = append(all, m)
			}
		}
	}
	slices.Sort(all)
	return strings.Join(all, ",")
}

func accessLabels(policy string) map[string]string {
	return map[string]string{"iap": "enabled", "iap-access": policy}
}

func stepOf(res *iapsetup.Result, name string) outcome.Step {
	for _, s := range res.Steps {
		if s.Name == name {
			return s
		}
	}
	return outcome.Step{}
}

func TestReconcileAccessGrantsAndPolicyChange(t *testing.T) {
	t.Parallel()
	v1 := policies(t, map[string][]string{"web-users": {"group:web@example.com", "user:a@example.com"}})
	f := newFixture(t, withPolicies(v1))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users"), NoInvokerIAM: true})

	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated {
		t.Fatalf("outcome %s (%s), want remediated", res.Outcome, res.Reason)
	}
	if s := stepOf(res, outcome.StepAccess); s.Result != outcome.StepChanged || s.Resource != runIAP ||
		!strings.Contains(s.Message, "who can pass: group:web@example.com, user:a@example.com") {
		t.Errorf("access step = %+v, want changed on %s listing who can pass", s, runIAP)
	}
	// The grant is one IAP write; it rides on the same reconcile as the
	// rest: one UpdateService records it as intended before it is made,
	// one confirms it with the rest (signed with the key read once).
	checkCalls(t, "first reconcile", calls, plus(warmReads, plus(coldIAP, map[string]int64{
		mIdentity: 1, mSetPolicy: 1, mIAPSet: 1, mUpdateService: 2, mGetOperation: 2, mSecret: 1,
	})))
	if diff := cmp.Diff([]string{"group:web@example.com", "user:a@example.com"}, f.accessors(t, runIAP)); diff != "" {
		t.Errorf("accessors (-want +got):\n%s", diff)
	}
	if got := f.recorded(t, "hello"); got != "group:web@example.com,user:a@example.com" {
		t.Errorf("access annotation = %q", got)
	}
	if len(res.Access) != 1 || res.Access[0].Resource != runIAP || len(res.Access[0].Members)+len(res.Access[0].Conditional)+len(res.Access[0].ProjectMembers) == 0 {
		t.Errorf("Result.Access = %+v", res.Access)
	}
	f.checkSecondRunCompliant(t, ref, accessReads)

	// Someone grants boss@ by hand; then the policy file changes (a new
	// function instance): a@ is dropped, c@ added.
	f.grantForeign(t, runIAP, "user:boss@example.com")
	v2 := policies(t, map[string][]string{"web-users": {"group:web@example.com", "user:c@example.com"}})
	r2, err := iapsetup.New(f.e.Clients.Deps(), iapsetup.Options{Scope: scope.AllProjects(), AccessPolicies: v2})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r2
	res, err, calls = f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("after the policy change: %s (%s), %v", res.Outcome, res.Reason, err)
	}
	if diff := cmp.Diff([]string{"group:web@example.com", "user:boss@example.com", "user:c@example.com"}, f.accessors(t, runIAP)); diff != "" {
		t.Errorf("accessors after the policy change (-want +got):\n%s", diff)
	}
	if got := f.recorded(t, "hello"); got != "group:web@example.com,user:c@example.com" {
		t.Errorf("access annotation = %q", got)
	}
	checkCalls(t, "policy change", calls, plus(warmReads, plus(coldIAP, map[string]int64{
		mIdentity: 1, mIAPSet: 1, mUpdateService: 2, mGetOperation: 2, mSecret: 1, // intent, then confirmation; a new reconciler reads the key once
	})))
	f.checkSecondRunCompliant(t, ref, accessReads)

	// Dropping boss@ from nothing: boss@ is never revoked, even by a policy
	// with no members.
	r3, err := iapsetup.New(f.e.Clients.Deps(), iapsetup.Options{Scope: scope.AllProjects(),
		AccessPolicies: policies(t, map[string][]string{"web-users": nil})})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r3
	res, err, _ = f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("after emptying the policy: %s (%s), %v", res.Outcome, res.Reason, err)
	}
	if diff := cmp.Diff([]string{"user:boss@example.com"}, f.accessors(t, runIAP)); diff != "" {
		t.Errorf("accessors after emptying the policy (-want +got):\n%s", diff)
	}
	if _, ok := f.e.Service(t, "hello").GetAnnotations()[iapsetup.AccessAnnotation]; ok {
		t.Error("the access annotation was kept although iapguard manages no member any more")
	}
	f.checkSecondRunCompliant(t, ref, accessReads)
}

func TestReconcileAccessNobodyCanPass(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	res, err, _ := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	s := stepOf(res, outcome.StepAccess)
	if s.Result != outcome.StepWarning || !strings.Contains(s.Message, "nobody holds roles/iap.httpsResourceAccessor") ||
		!strings.Contains(s.Message, "project-level grants outside iap_web are not checked") || !strings.Contains(s.Message, "gcloud iap web add-iam-policy-binding") {
		t.Errorf("access step = %+v, want the nobody-can-pass warning with a fix", s)
	}
	// Security first: IAP is on regardless.
	if !f.e.Service(t, "hello").GetIapEnabled() || res.Outcome != outcome.Remediated {
		t.Errorf("IAP not enforced: outcome %s", res.Outcome)
	}
	// A project-wide grant lets someone pass (after the cache expires:
	// use a fresh reconciler).
	f.grantForeign(t, iapsetup.ProjectIAPResource(projectNumber), "domain:example.com")
	r2, err := iapsetup.New(f.e.Clients.Deps(), iapsetup.Options{Scope: scope.AllProjects()})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r2
	// IAP is on now; the who-can-pass check runs on request (as iapctl
	// audit and doctor ask for it).
	res, err, _ = f.reconcile(t, ref, iapsetup.WithAccessCheck())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if s := stepOf(res, outcome.StepAccess); s.Result != outcome.StepOK || !strings.Contains(s.Message, "project-wide on projects/"+projectNumber+"/iap_web: domain:example.com") {
		t.Errorf("access step = %+v, want ok naming the project-wide grant", s)
	}
}

func TestReconcileAccessUnknownPolicyRejected(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"web-users": {"group:web@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("webusers")})
	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile = %v; a rejected access policy is acknowledged, not retried", err)
	}
	if res.Outcome != outcome.Rejected || !strings.Contains(res.Reason, `iap-access="webusers" names no access policy; known policies: web-users`) {
		t.Errorf("outcome %s reason %q, want rejected naming the known policies", res.Outcome, res.Reason)
	}
	if calls[mIAPSet] != 0 || len(f.accessors(t, runIAP)) != 0 {
		t.Errorf("something was granted: %v", calls)
	}
	if !f.e.Service(t, "hello").GetIapEnabled() {
		t.Error("IAP was not enforced because of a bad access policy name")
	}
}

func TestReconcileAccessWriteRejectedByAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"web-users": {"user:gone@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users")})
	if err := f.e.Core.Faults.FailNext(mIAPSet, 1, codes.InvalidArgument); err != nil {
		t.Fatal(err)
	}
	res, err, _ := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if s := stepOf(res, outcome.StepAccess); s.Result != outcome.StepRejected || res.Outcome != outcome.Rejected {
		t.Errorf("access step %+v, outcome %s; want rejected", s, res.Outcome)
	}
	svc := f.e.Service(t, "hello")
	if !svc.GetIapEnabled() {
		t.Error("IAP not enforced")
	}
	if v, ok := svc.GetAnnotations()[iapsetup.AccessAnnotation]; ok {
		t.Errorf("a refused grant was recorded: %q", v)
	}
	// Next time (the member exists by then) it is granted.
	res, err, _ = f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated {
		t.Errorf("retry: %s (%s), %v", res.Outcome, res.Reason, err)
	}
	f.checkSecondRunCompliant(t, ref, accessReads)
}

func TestReconcileAccessEtagRaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"web-users": {"group:web@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users"), IAP: true,
		Annotations: map[string]string{iapsetup.ManagedAnnotation: "true"}})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	if err := f.e.Core.Faults.ForceRaces(mIAPSet, 2); err != nil {
		t.Fatal(err)
	}
	res, err, calls := f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("Reconcile: %s (%s), %v", res.Outcome, res.Reason, err)
	}
	// Three attempts; the two lost ones re-read the IAP policy.
	if calls[mIAPSet] != 3 || calls[mIAPGet] != 2+2 {
		t.Errorf("IAP calls %v, want 3 sets and 4 gets (resource, project-wide, 2 re-reads)", calls)
	}
	if diff := cmp.Diff([]string{"group:web@example.com"}, f.accessors(t, runIAP)); diff != "" {
		t.Errorf("accessors (-want +got):\n%s", diff)
	}
	f.checkSecondRunCompliant(t, ref, accessReads)
}

func TestReconcileAccessLoadBalancer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"admins": {"group:admins@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("admins")})
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	res, err, _ := f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated || res.Mode != outcome.LoadBalancer {
		t.Fatalf("Reconcile: %s %s (%s), %v", res.Outcome, res.Mode, res.Reason, err)
	}
	b := f.e.GetBackend(t, l.backend)
	backendIAP := "projects/" + projectNumber + "/iap_web/compute/services/" + strconv.FormatUint(b.Id, 10)
	if s := stepOf(res, outcome.StepAccess); s.Resource != backendIAP {
		t.Errorf("access step resource %q, want %q", s.Resource, backendIAP)
	}
	if diff := cmp.Diff([]string{"group:admins@example.com"}, f.accessors(t, backendIAP)); diff != "" {
		t.Errorf("backend accessors (-want +got):\n%s", diff)
	}
	if b.Iap == nil || !b.Iap.Enabled {
		t.Error("backend IAP not enabled")
	}
	f.checkSecondRunCompliant(t, ref, accessReads)
}

// TestReconcileDirectServiceLaterBehindLoadBalancer: a service guarded by
// Cloud Run's built-in IAP that is later put behind a load balancer stays
// in direct mode; backend IAP is not enabled (Google does not support IAP
// on both) and nothing is turned off.
func TestReconcileDirectServiceLaterBehindLoadBalancer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	if res, err, _ := f.reconcile(t, ref); err != nil || res.Mode != outcome.Direct || !f.e.Service(t, "hello").GetIapEnabled() {
		t.Fatalf("first reconcile: %s %s, %v", res.Outcome, res.Mode, err)
	}
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Mode != outcome.Direct {
		t.Errorf("mode %s, want direct", res.Mode)
	}
	s := stepOf(res, outcome.StepBackendIAP)
	if s.Result != outcome.StepOK || !strings.Contains(s.Message, "does not support IAP on both") || !strings.Contains(s.Message, "--no-iap") {
		t.Errorf("backend-iap step = %+v, want ok explaining built-in IAP and how to move", s)
	}
	if slices.ContainsFunc([]string{mPatchBackend, mUpdateService, mSetPolicy}, func(m string) bool { return calls[m] != 0 }) {
		t.Errorf("writes after the load balancer appeared: %v", calls)
	}
	if b := f.e.GetBackend(t, l.backend); b.Iap != nil && b.Iap.Enabled {
		t.Error("backend IAP enabled although Cloud Run's built-in IAP is on")
	}
	svc := f.e.Service(t, "hello")
	if !svc.GetIapEnabled() || svc.GetIngress().String() != "INGRESS_TRAFFIC_ALL" {
		t.Errorf("service iapEnabled %v ingress %v; want built-in IAP kept, ingress left", svc.GetIapEnabled(), svc.GetIngress())
	}
}

// TestReconcileAccessIntentFailsRecordsNothing (#19 item 3, found by the
// soak): when the update recording the grants as intended fails, nothing
// is granted, and the service update that still runs (IAP, marker) must
// not carry a record of grants that were never made; before the fix it
// wrote them as granted.
func TestReconcileAccessIntentFailsRecordsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withPolicies(policies(t, map[string][]string{"web-users": {"user:a@example.com"}})))
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: accessLabels("web-users"), NoInvokerIAM: true})
	if err := f.e.Core.Faults.FailNext(mUpdateService, 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	if _, err, _ := f.reconcile(t, ref); err == nil {
		t.Fatal("Reconcile: nil error, want the intent write's UNAVAILABLE")
	}
	if got := f.accessors(t, runIAP); len(got) > 0 {
		t.Errorf("granted without a record of intent: %v", got)
	}
	if got := f.recorded(t, "hello"); got != "" {
		t.Errorf("access annotation = %q, want nothing recorded (nothing was granted)", got)
	}
	res, err, _ := f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("redelivery: %s (%s), %v", res.Outcome, res.Reason, err)
	}
	if got := f.recorded(t, "hello"); got != "user:a@example.com" {
		t.Errorf("after the redelivery: access annotation = %q", got)
	}
	f.checkSecondRunCompliant(t, ref, accessReads)
}
