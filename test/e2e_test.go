package test

import (
	"bytes"
	"net/http"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

var enabled = map[string]string{"iap": "enabled"}

// TestLoadBalancedServiceConverges is the headline scenario: a public,
// ingress-all service behind NEG → backend → URL map → HTTPS proxy →
// forwarding rule is labelled; iapguard converges it in one reconcile and
// the events caused by its own writes end compliant with zero writes.
func TestLoadBalancedServiceConverges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{
		Name: "web", Public: true, ExtraInvokers: []string{"group:web-team@example.com"},
		Bindings: map[string][]string{"roles/run.developer": {"user:dev@example.com"}},
	})
	lb := e.lb(demo.LBSpec{Service: "web"})
	e.mark()

	e.label("web", enabled)
	e.settle()

	kinds := e.kinds("web")
	if count(kinds, "remediated") != 1 || count(kinds, "compliant") != len(kinds)-1 {
		t.Errorf("outcomes for web = %v, want exactly one remediated, the rest compliant", kinds)
	}
	e.checkLBRemediationWrites(t)
	wantPolicy := map[string][]string{
		"roles/run.invoker":   {"group:web-team@example.com", agent},
		"roles/run.developer": {"user:dev@example.com"},
	}
	if d := cmp.Diff(wantPolicy, e.policy("web")); d != "" {
		t.Errorf("IAM policy (-want +got):\n%s", d)
	}
	svc := e.service("web")
	if svc.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER {
		t.Errorf("ingress = %v, want internal load balancer", svc.Ingress)
	}
	if svc.IapEnabled {
		t.Error("Cloud Run built-in IAP turned on although a load balancer fronts the service")
	}
	if b := e.backend(lb.BackendService); b.Iap == nil || !b.Iap.Enabled {
		t.Errorf("backend IAP = %+v, want enabled", b.Iap)
	}
	golden(t, "lb-remediated", e.byUser("web"))
	calls, total := e.fnCalls()
	t.Logf("function's API calls after labelling (%d): %v", total, calls)
}

// TestOwnBackendPatchEventWaitsForTheReconcile: iapguard patches the
// backend service and updates the Cloud Run service at once. When the
// update is slow (held 300 ms here, as a loaded machine or Google can make
// it), the event of the backend patch arrives while the reconcile that made
// the patch still runs. That event must wait for it and then find the
// service compliant; it used to reconcile at once, from the state before
// the update, write the update itself and make the first reconcile lose its
// etag (ABORTED, an event skipped as "call failed"), so an event of
// iapguard's own write reported remediated. That race made
// TestOrgWideBothPaths flaky under load.
func TestOwnBackendPatchEventWaitsForTheReconcile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "web", Public: true})
	lb := e.lb(demo.LBSpec{Service: "web"})
	e.mark()
	if err := e.st.Emu.Core.Faults.SetLatency("google.cloud.run.v2.Services.UpdateService", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.label("web", enabled)
	e.settle()

	var patchEvents int
	for _, m := range e.st.Outcomes.ForService("web") {
		own := m.Trigger.Principal == stack.FunctionPrincipal
		if own && m.Trigger.Method == "v1.compute.backendServices.patch" {
			patchEvents++
		}
		if own && m.Outcome != outcome.Compliant || !own && m.Outcome != outcome.Remediated {
			t.Errorf("event %s by %s: outcome %s (%s); want the user's change remediated, every event of iapguard's writes compliant",
				m.Trigger.Method, m.Trigger.Principal, m.Outcome, m.Reason)
		}
	}
	if patchEvents == 0 {
		t.Fatal("no outcome for web from the event of iapguard's backend patch; the test would prove nothing")
	}
	if got := e.byUser("web"); got.Outcome != outcome.Remediated {
		t.Errorf("the user's change: %s, want remediated", got.Outcome)
	}
	for _, en := range e.st.Emu.Core.Audit.Entries()[e.auditMark:] {
		if p := en.ProtoPayload; p.AuthenticationInfo.PrincipalEmail == stack.FunctionPrincipal && p.Status != nil && p.Status.Code != 0 {
			t.Errorf("iapguard's %s was refused (%s): two reconciles of web raced", p.MethodName, p.Status.Message)
		}
	}
	e.checkLBRemediationWrites(t)
	if b := e.backend(lb.BackendService); b.Iap == nil || !b.Iap.Enabled {
		t.Errorf("backend IAP = %+v, want enabled", b.Iap)
	}
}

func TestDirectIAPWithoutLoadBalancer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "api", Public: true})
	e.mark()
	e.label("api", enabled)
	e.settle()
	svc := e.service("api")
	if !svc.IapEnabled {
		t.Error("iapEnabled = false, want Cloud Run's built-in IAP on")
	}
	if svc.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
		t.Errorf("ingress = %v, want it left as it was (all) in direct mode", svc.Ingress)
	}
	if d := cmp.Diff(map[string][]string{"roles/run.invoker": {agent}}, e.policy("api")); d != "" {
		t.Errorf("IAM policy (-want +got):\n%s", d)
	}
	m := e.st.Outcomes.Latest("api")
	if m == nil || m.Outcome != "compliant" || m.Mode != "direct" {
		t.Fatalf("latest outcome = %+v, want compliant in direct mode", m)
	}
	golden(t, "direct-remediated", e.byUser("api"))
	calls, total := e.fnCalls()
	t.Logf("function's API calls after labelling (%d): %v", total, calls)
}

func TestCDNBackendIsAConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "assets"})
	lb := e.lb(demo.LBSpec{Service: "assets", CDN: true})
	e.mark()
	e.label("assets", enabled)
	e.settle()
	kinds := e.kinds("assets")
	if len(kinds) == 0 || count(kinds, "conflict") != len(kinds) {
		t.Errorf("outcomes = %v, want only conflict", kinds)
	}
	b := e.backend(lb.BackendService)
	if b.Iap != nil && b.Iap.Enabled {
		t.Error("IAP was enabled on a CDN backend")
	}
	if !b.EnableCDN {
		t.Error("iapguard turned CDN off; it must leave the decision to a person")
	}
	golden(t, "cdn-conflict", e.byUser("assets"))
}

func TestUnlabelledServiceIsLeftAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.mark()
	e.create(demo.ServiceSpec{Name: "site", Labels: map[string]string{"team": "growth"}, Public: true})
	e.settle()
	if kinds := e.kinds("site"); len(kinds) == 0 || count(kinds, "skipped") != len(kinds) {
		t.Errorf("outcomes = %v, want only skipped", kinds)
	}
	if w := e.iapguardWrites(); len(w) != 0 {
		t.Errorf("iapguard wrote %v to an unlabelled service", w)
	}
	if !slices.Contains(e.policy("site")["roles/run.invoker"], "allUsers") {
		t.Error("the public invoker of an unlabelled service was removed")
	}
}

func TestUnknownLabelValueIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "odd", Public: true})
	e.mark()
	e.label("odd", map[string]string{"iap": "yes"})
	e.settle()
	m := e.byUser("odd")
	if m.Outcome != "rejected" {
		t.Fatalf("outcome of the label event = %+v, want rejected", m)
	}
	if w := e.iapguardWrites(); len(w) != 0 {
		t.Errorf("iapguard wrote %v for a rejected label", w)
	}
	golden(t, "label-rejected", m)
}

func TestLabelRemovedAfterEnforcementOptsOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "api", Labels: enabled, Public: true})
	e.mark()
	e.label("api", map[string]string{"team": "x"})
	e.settle()
	kinds := e.kinds("api")
	if len(kinds) == 0 || count(kinds, "opted-out") != len(kinds) {
		t.Errorf("outcomes = %v, want opted-out", kinds)
	}
	if w := e.iapguardWrites(); len(w) != 0 {
		t.Errorf("iapguard wrote %v after the opt-out", w)
	}
	svc := e.service("api")
	if !svc.IapEnabled {
		t.Error("opting out turned IAP off: iapguard must never weaken")
	}
	if slices.Contains(e.policy("api")["roles/run.invoker"], "allUsers") {
		t.Error("opting out made the service public again")
	}
	golden(t, "opted-out", e.byUser("api"))
}

func TestStricterIngressIsKept(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "ledger", Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY})
	lb := e.lb(demo.LBSpec{Service: "ledger"})
	e.mark()
	e.label("ledger", enabled)
	e.settle()
	if got := e.service("ledger").Ingress; got != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY {
		t.Errorf("ingress = %v, want internal-only kept", got)
	}
	if b := e.backend(lb.BackendService); b.Iap == nil || !b.Iap.Enabled {
		t.Error("backend IAP not enabled")
	}
	if m := e.st.Outcomes.Latest("ledger"); m == nil || m.Outcome != "compliant" {
		t.Errorf("latest outcome = %+v, want compliant", m)
	}
}

func TestDuplicateEventsShareWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{Emulator: emulator.Options{Delivery: delivery.Options{Duplicate: 1}}})
	e.create(demo.ServiceSpec{Name: "web", Public: true})
	e.lb(demo.LBSpec{Service: "web"})
	e.mark()
	e.label("web", enabled)
	e.settle()
	if ds := e.st.Emu.Delivery.Stats(); ds.Duplicated == 0 {
		t.Fatalf("no duplicates were delivered: %+v", ds)
	}
	want := map[string]int{
		"google.cloud.run.v2.Services.SetIamPolicy":  1,
		"google.cloud.run.v2.Services.UpdateService": 1,
		"v1.compute.backendServices.patch":           1,
	}
	if d := cmp.Diff(want, e.iapguardWrites()); d != "" {
		t.Errorf("iapguard's writes with every event delivered twice (-want +got):\n%s", d)
	}
	if kinds := e.kinds("web"); count(kinds, "remediated") < 1 || count(kinds, "remediated")+count(kinds, "compliant") != len(kinds) {
		t.Errorf("outcomes = %v", kinds)
	}
	calls, total := e.fnCalls()
	t.Logf("function's API calls with every event delivered twice (%d): %v", total, calls)
}

func TestBackendIAPTurnedOffIsTurnedBackOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	// Labelled once the load balancer exists: a service labelled earlier
	// gets Cloud Run's built-in IAP, which then guards the load balancer
	// path instead (TestBuiltInIAPKeptWhenALoadBalancerAppears).
	e.create(demo.ServiceSpec{Name: "web"})
	lb := e.lb(demo.LBSpec{Service: "web"})
	e.label("web", enabled)
	e.mark()
	if err := e.cl.SetBackendIAP(e.ctx, e.p, lb.BackendService, false); err != nil {
		t.Fatal(err)
	}
	e.settle()
	if b := e.backend(lb.BackendService); b.Iap == nil || !b.Iap.Enabled {
		t.Errorf("backend IAP = %+v, want turned back on", b.Iap)
	}
	if d := cmp.Diff(map[string]int{"v1.compute.backendServices.patch": 1}, e.iapguardWrites()); d != "" {
		t.Errorf("iapguard's writes (-want +got):\n%s", d)
	}
	calls, total := e.fnCalls()
	t.Logf("function's API calls to repair (%d): %v", total, calls)
}

func TestMalformedEventIsRejectedWithout2xxRetryStorm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.mark()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.st.FunctionURL, bytes.NewReader([]byte(`{"protoPayload":{"serviceName":"run.googleapis.com","methodName":"google.cloud.run.v2.Services.UpdateService"`)))
	for k, v := range map[string]string{
		"Ce-Specversion": "1.0", "Ce-Type": "google.cloud.audit.log.v1.written", "Ce-Id": "bad-1",
		"Ce-Source": "//cloudaudit.googleapis.com/projects/demo-project/logs/activity", "Content-Type": "application/json",
	} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Errorf("status = %d, want 2xx so Eventarc does not redeliver", resp.StatusCode)
	}
	e.settle()
	all := e.st.Outcomes.All()
	if len(all) != 1 || all[0].Outcome != "rejected" || all[0].Trigger.EventID != "bad-1" {
		t.Fatalf("outcomes = %+v, want one rejected for event bad-1", all)
	}
	if c := e.calls(); len(c) != 0 {
		t.Errorf("a malformed event caused API calls: %v", c)
	}
}

func TestOutOfScopeProjectIsRejectedWithZeroCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{
		Emulator: emulator.Options{Projects: []core.Project{emulator.DefaultProject, {ID: "other-project", Number: 999}}},
		Projects: []string{"demo-project", "123456789012"},
	})
	e.mark()
	if _, err := e.cl.CreateService(e.ctx, "other-project", region, demo.ServiceSpec{Name: "foreign", Labels: enabled, Public: true}); err != nil {
		t.Fatal(err)
	}
	e.settle()
	all := e.st.Outcomes.All()
	for _, m := range all {
		if m.Outcome != "rejected" {
			t.Errorf("outcome %s for %s, want rejected", m.Outcome, m.Resource.Name)
		}
	}
	if len(all) == 0 {
		t.Fatal("no outcome for the out-of-scope event")
	}
	// The user's own calls: CreateService, GetOperation, SetIamPolicy.
	want := map[string]int64{
		"google.cloud.run.v2.Services.CreateService": 1,
		"google.longrunning.Operations.GetOperation": 1,
		"google.cloud.run.v2.Services.SetIamPolicy":  1,
	}
	if d := cmp.Diff(want, e.calls()); d != "" {
		t.Errorf("API calls (-only the user's +got): iapguard made calls for an out-of-scope project:\n%s", d)
	}
}

// A service behind a regional external Application Load Balancer (regional
// backend service, URL map, target HTTPS proxy and forwarding rule): the
// regional branch of the HTTPS-frontend check runs against the emulator's
// regional collections, and iapguard turns IAP on at the regional backend
// service (#14 item 6).
func TestRegionalLoadBalancedServiceConverges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	e.create(demo.ServiceSpec{Name: "shop", Public: true})
	lb := e.lb(demo.LBSpec{Service: "shop", Regional: true})
	e.mark()
	e.label("shop", enabled)
	e.settle()
	if m := e.byUser("shop"); m.Outcome != "remediated" {
		t.Fatalf("outcome = %s (%s), want remediated", m.Outcome, m.Reason)
	}
	bs, err := e.cl.Compute.RegionBackendServices.Get(e.p, region, lb.BackendService).Context(e.ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if bs.Iap == nil || !bs.Iap.Enabled {
		t.Errorf("regional backend service IAP = %+v, want enabled", bs.Iap)
	}
	if got := e.service("shop").Ingress; got != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER {
		t.Errorf("ingress = %s, want internal-and-cloud-load-balancing (an HTTPS load balancer fronts the service)", got)
	}
	calls := e.calls()
	for _, m := range []string{"compute.regionTargetHttpsProxies.list", "compute.forwardingRules.list"} {
		if calls[m] == 0 {
			t.Errorf("%s was not called: the regional HTTPS-frontend check did not run", m)
		}
	}
}

// checkLBRemediationWrites: remediating a public service behind a load
// balancer whose backend has IAP off takes exactly one write of each part,
// whatever events the writes cause.
func (e *env) checkLBRemediationWrites(t *testing.T) {
	t.Helper()
	want := map[string]int{
		"google.cloud.run.v2.Services.SetIamPolicy":  1,
		"google.cloud.run.v2.Services.UpdateService": 1,
		"v1.compute.backendServices.patch":           1,
	}
	if d := cmp.Diff(want, e.iapguardWrites()); d != "" {
		t.Errorf("iapguard's writes (-want +got):\n%s", d)
	}
}
