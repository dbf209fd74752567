package iapsetup_test

// Apply-path tests at the transport seam: the real adapters (internal/gcp)
// over the official clients, against the emulated Cloud Run, Compute and
// Service Usage APIs. Call counts come from the emulator's per-method stats.

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// Method keys, as the emulator counts them.
const (
	mGetService    = "google.cloud.run.v2.Services.GetService"
	mListServices  = "google.cloud.run.v2.Services.ListServices"
	mUpdateService = "google.cloud.run.v2.Services.UpdateService"
	mGetPolicy     = "google.cloud.run.v2.Services.GetIamPolicy"
	mSetPolicy     = "google.cloud.run.v2.Services.SetIamPolicy"
	mGetOperation  = "google.longrunning.Operations.GetOperation"
	mListNEGs      = "compute.regionNetworkEndpointGroups.list"
	mGetNEG        = "compute.regionNetworkEndpointGroups.get"
	mAggBackends   = "compute.backendServices.aggregatedList"
	mGetBackend    = "compute.backendServices.get"
	mPatchBackend  = "compute.backendServices.patch"
	mPatchRegional = "compute.regionBackendServices.patch"
	mWaitGlobal    = "compute.globalOperations.wait"
	mWaitRegional  = "compute.regionOperations.wait"
	mProxies       = "compute.targetHttpsProxies.list"
	mRules         = "compute.globalForwardingRules.list"
	mIdentity      = "serviceusage.services.generateServiceIdentity"
	mIAPGet        = "iap.getIamPolicy"
	mIAPSet        = "iap.setIamPolicy"
)

// baseReads is the first concurrent read round of a warm reconcile.
var baseReads = map[string]int64{mGetService: 1, mGetPolicy: 1, mListNEGs: 1, mAggBackends: 1}

// warmReads are a warm compliant reconcile's reads: one concurrent round.
// IAP policies are not read when IAP is already on and no access policy is
// declared (Observed.CheckAccess).
var warmReads = baseReads

// coldIAP are the IAP policy reads of a reconcile that turns IAP on: the
// resource's policy and the project-wide one (then cached).
var coldIAP = map[string]int64{mIAPGet: 2}

// accessReads is the IAP policy read a warm reconcile of a service with an
// access policy makes (its one resource; the project-wide one is cached).
var accessReads = map[string]int64{mIAPGet: 1}

func plus(base map[string]int64, more map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range base {
		out[k] += v
	}
	for k, v := range more {
		out[k] += v
	}
	return out
}

var ref = iapsetup.ServiceRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "hello"}

type fixture struct {
	e *testEnv
	r *iapsetup.Reconciler
}

// reconcileAll reconciles each service a resolver found, as the function
// does (functions.Handler.reconcileEach): from its listed copy when it has
// one, failures joined; a scope refusal is the named resource's result.
func (f *fixture) reconcileAll(cs []iapsetup.Candidate, err error) ([]*iapsetup.Result, error) {
	return f.each()(cs, err)
}

// each is reconcileAll with call options.
func (f *fixture) each(opts ...iapsetup.CallOption) func([]iapsetup.Candidate, error) ([]*iapsetup.Result, error) {
	return func(cs []iapsetup.Candidate, err error) ([]*iapsetup.Result, error) {
		var out []*iapsetup.Result
		errs := []error{err}
		if se := (*iapsetup.ScopeError)(nil); errors.As(err, &se) {
			out = append(out, se.Result(false))
			if se.Err == nil {
				errs = nil
			}
		}
		for _, c := range cs {
			res, err := f.r.Reconcile(context.Background(), c.Ref, append([]iapsetup.CallOption{iapsetup.Listed(c.Listed)}, opts...)...)
			out = append(out, res)
			errs = append(errs, err)
		}
		return out, errors.Join(errs...)
	}
}

func newFixture(t *testing.T, mods ...func(*iapsetup.Options)) *fixture {
	t.Helper()
	return newFixtureWith(t, envOptions{}, mods...)
}

func newFixtureWith(t *testing.T, eo envOptions, mods ...func(*iapsetup.Options)) *fixture {
	t.Helper()
	e := startEnv(t, eo)
	o := iapsetup.FastRetries(iapsetup.Options{Scope: scope.New(emulatortest.Project, "123456789012")})
	for _, m := range mods {
		m(&o)
	}
	r, err := iapsetup.New(e.Clients.Deps(), o)
	if err != nil {
		t.Fatalf("iapsetup.New: %v", err)
	}
	return &fixture{e: e, r: r}
}

// reconcile runs one reconcile and returns its result, error and the calls it made.
//
//lint:ignore ST1008 the call counts come last so results read naturally in tests
func (f *fixture) reconcile(t *testing.T, r iapsetup.ServiceRef, opts ...iapsetup.CallOption) (*iapsetup.Result, error, map[string]int64) {
	t.Helper()
	before := f.e.Snapshot()
	res, err := f.r.Reconcile(t.Context(), r, opts...)
	if res == nil {
		t.Fatalf("Reconcile returned a nil result (err %v)", err)
	}
	return res, err, f.e.Snapshot().Sub(before).Calls
}

func checkCalls(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: calls (-want +got):\n%s", what, diff)
	}
}

func stepStatus(res *iapsetup.Result) map[string]outcome.StepResult {
	out := map[string]outcome.StepResult{}
	for _, s := range res.Steps {
		if prev, ok := out[s.Name]; ok && prev != s.Result {
			out[s.Name] = prev + "," + s.Result
			continue
		}
		out[s.Name] = s.Result
	}
	return out
}

// checkSecondRunCompliant reconciles again and requires compliant with zero
// writes and the reads of a warm reconcile, plus extra reads (e.g. the IAP
// policies of further backend services).
func (f *fixture) checkSecondRunCompliant(t *testing.T, r iapsetup.ServiceRef, extra ...map[string]int64) {
	t.Helper()
	res, err, calls := f.reconcile(t, r)
	if err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	if res.Outcome != outcome.Compliant {
		t.Errorf("second Reconcile outcome = %s (%s), want compliant; steps %+v", res.Outcome, res.Reason, res.Steps)
	}
	want := warmReads
	for _, e := range extra {
		want = plus(want, e)
	}
	checkCalls(t, "second reconcile", calls, want)
}

func publicPolicy(extra ...*iampb.Binding) *iampb.Policy {
	return &iampb.Policy{Bindings: append([]*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}, extra...)}
}

func labelled() map[string]string { return map[string]string{"iap": "enabled", "team": "web"} }

func TestReconcileDirectNoLoadBalancer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), NoInvokerIAM: true})
	f.e.SeedPolicy(t, "hello", publicPolicy())

	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated || res.Mode != outcome.Direct {
		t.Fatalf("outcome %s mode %s (%s), want remediated direct", res.Outcome, res.Mode, res.Reason)
	}
	want := map[string]outcome.StepResult{
		outcome.StepAgentIdentity: outcome.StepOK, outcome.StepInvokerBinding: outcome.StepChanged,
		outcome.StepIAMAuth: outcome.StepChanged, outcome.StepIngress: outcome.StepSkipped, outcome.StepDirectIAP: outcome.StepChanged,
		outcome.StepAccess: outcome.StepWarning, // nobody may pass yet
	}
	if diff := cmp.Diff(want, stepStatus(res)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	// Cold: one read round including the agent identity; one policy write;
	// one service update and one poll of its operation.
	checkCalls(t, "first reconcile", calls, plus(warmReads, plus(coldIAP, map[string]int64{mSecret: 1, mIdentity: 1, mSetPolicy: 1, mUpdateService: 1, mGetOperation: 1})))

	svc := f.e.Service(t, "hello")
	if !svc.GetIapEnabled() || svc.GetInvokerIamDisabled() || svc.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
		t.Errorf("service after reconcile: iap %v invokerIamDisabled %v ingress %v; want iap on, IAM check on, ingress untouched",
			svc.GetIapEnabled(), svc.GetInvokerIamDisabled(), svc.GetIngress())
	}
	if !iapsetup.IsManagedMarker(svc.GetAnnotations()[iapsetup.ManagedAnnotation]) {
		t.Errorf("managed annotation missing: %v", svc.GetAnnotations())
	}
	checkPolicy(t, f.e.Policy(t, "hello"), map[string][]string{"roles/run.invoker": {"serviceAccount:" + emulatortest.Agent}})
	// iapguard's writes are attributed to it.
	for _, en := range f.e.Core.Audit.Entries() {
		if got := en.ProtoPayload.AuthenticationInfo.PrincipalEmail; got != emulatortest.Principal && en.ProtoPayload.ServiceName == "run.googleapis.com" {
			t.Errorf("audit entry %s by %s, want %s", en.ProtoPayload.MethodName, got, emulatortest.Principal)
		}
	}
	wantChanges := []string{
		"annotations[iapguard.dev/managed]:  → (signed)",
		"iamPolicy[roles/run.invoker]:  → serviceAccount:" + emulatortest.Agent,
		"iamPolicy[roles/run.invoker]: allUsers → ",
		"iapEnabled: false → true",
		"invokerIamDisabled: true → false",
	}
	if diff := cmp.Diff(wantChanges, changeLines(res)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	f.checkSecondRunCompliant(t, ref)
}

// signedAs shows a signed managed marker as "(signed)": its MAC depends on
// the run's random key.
func signedAs(v string) string {
	if v != iapsetup.ManagedValue && iapsetup.IsManagedMarker(v) {
		return "(signed)"
	}
	return v
}

func changeLines(res *iapsetup.Result) []string {
	var out []string
	for _, c := range res.Changes {
		out = append(out, c.Field+": "+signedAs(c.Before)+" → "+signedAs(c.After))
	}
	sort.Strings(out)
	return out
}

// checkPolicy compares unconditional bindings (role → sorted members).
func checkPolicy(t *testing.T, p *iampb.Policy, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, b := range p.GetBindings() {
		if b.GetCondition() != nil {
			continue
		}
		m := slices.Clone(b.GetMembers())
		sort.Strings(m)
		got[b.GetRole()] = append(got[b.GetRole()], m...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IAM policy (-want +got):\n%s", diff)
	}
}

type lb struct {
	neg     string
	backend emulatortest.Backend
}

// addLB creates a serverless NEG for hello and a global backend service using it.
func addLB(t *testing.T, e *testEnv, b emulatortest.Backend, https bool) lb {
	t.Helper()
	neg := e.AddNEG(t, "hello-neg", "hello", "")
	b.Groups = append(b.Groups, neg)
	link := e.AddBackend(t, b)
	e.AddFrontend(t, b.Name, link, https)
	return lb{neg: neg, backend: b}
}

func TestReconcileLoadBalancerIAPOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	before := f.e.GetBackend(t, l.backend)

	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated || res.Mode != outcome.LoadBalancer {
		t.Fatalf("outcome %s mode %s (%s), want remediated load-balancer", res.Outcome, res.Mode, res.Reason)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v, want none (the backend has an HTTPS frontend)", res.Warnings)
	}
	// Read round + HTTPS-frontend check for the backend that changes + three
	// writes (policy, service, backend patch) and their operation polls.
	checkCalls(t, "first reconcile", calls, plus(warmReads, map[string]int64{
		mSecret:   1,                                     // the managed marker is signed: the key is read once per reconciler
		mIdentity: 1, mProxies: 1, mRules: 1, mIAPGet: 2, // the backend's IAP policy and the project-wide one
		mSetPolicy: 1, mUpdateService: 1, mGetOperation: 1, mPatchBackend: 1, mWaitGlobal: 1,
	}))
	after := f.e.GetBackend(t, l.backend)
	if after.Iap == nil || !after.Iap.Enabled {
		t.Errorf("backend IAP = %+v, want enabled", after.Iap)
	}
	if after.EnableCDN != before.EnableCDN || len(after.Backends) != len(before.Backends) {
		t.Errorf("backend patch touched other fields: before %+v after %+v", before, after)
	}
	svc := f.e.Service(t, "hello")
	if svc.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER || svc.GetIapEnabled() {
		t.Errorf("service ingress %v iapEnabled %v, want internal-and-LB and built-in IAP off", svc.GetIngress(), svc.GetIapEnabled())
	}
	f.checkSecondRunCompliant(t, ref)
}

func TestReconcileRegionalBackendNoHTTPSFrontend(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
		Annotations: map[string]string{iapsetup.ManagedAnnotation: "true"}})
	f.e.SeedPolicy(t, "hello", &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"serviceAccount:" + emulatortest.Agent}}}})
	neg := f.e.AddNEG(t, "hello-neg", "hello", "")
	regional := emulatortest.Backend{Name: "internal", Region: emulatortest.Region, Groups: []string{neg}}
	global := emulatortest.Backend{Name: "web", Groups: []string{neg}}
	f.e.AddBackend(t, regional)
	f.e.AddFrontend(t, "web", f.e.AddBackend(t, global), false) // HTTP only

	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated {
		t.Fatalf("outcome %s (%s), want remediated", res.Outcome, res.Reason)
	}
	if len(res.Warnings) != 2 {
		t.Errorf("warnings = %q, want one no-HTTPS-frontend warning per backend", res.Warnings)
	}
	checkCalls(t, "reconcile", calls, plus(warmReads, map[string]int64{
		mSecret: 1, mUpdateService: 1, mGetOperation: 1, // the unsigned marker it had is rewritten signed (one update; the key read once)
		mIdentity: 1, mProxies: 1, mRules: 1, // proxies and forwarding rules are listed together (one round), even when no HTTPS proxy uses the map
		mIAPGet:       3, // both backends' IAP policies and the project-wide one
		mPatchBackend: 1, mWaitGlobal: 1, mPatchRegional: 1, mWaitRegional: 1,
	}))
	for _, b := range []emulatortest.Backend{regional, global} {
		if got := f.e.GetBackend(t, b); got.Iap == nil || !got.Iap.Enabled {
			t.Errorf("%s: IAP not enabled", b.Name)
		}
	}
	f.checkSecondRunCompliant(t, ref)
}

func TestReconcileCDNConflict(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	l := addLB(t, f.e, emulatortest.Backend{Name: "web", CDN: true}, true)

	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Conflict || !strings.Contains(res.Reason, "--no-enable-cdn") {
		t.Errorf("outcome %s reason %q, want conflict with a gcloud fix", res.Outcome, res.Reason)
	}
	if st := stepStatus(res)[outcome.StepBackendIAP]; st != outcome.StepConflict {
		t.Errorf("backend-iap = %s, want conflict", st)
	}
	// IAM and ingress are still fixed; the backend is not touched.
	// No IAP policy is read: IAP is on nowhere.
	checkCalls(t, "reconcile", calls, plus(baseReads, map[string]int64{mSecret: 1, mIdentity: 1, mSetPolicy: 1, mUpdateService: 1, mGetOperation: 1}))
	if got := f.e.GetBackend(t, l.backend); got.Iap != nil && got.Iap.Enabled {
		t.Error("IAP enabled on a CDN backend")
	}
	// The next run reports the conflict again without writing.
	res, err, calls = f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Conflict {
		t.Errorf("second reconcile: %s, %v; want conflict", res.Outcome, err)
	}
	checkCalls(t, "second reconcile", calls, baseReads)
}

func TestReconcileLabelStates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		svc    emulatortest.Svc
		want   outcome.Kind
		reason string
	}{
		{"label absent", emulatortest.Svc{Name: "hello", Labels: map[string]string{"team": "web"}}, outcome.Skipped, "no iap label"},
		{"label disabled", emulatortest.Svc{Name: "hello", Labels: map[string]string{"iap": "disabled"}}, outcome.Skipped, "iap=disabled"},
		{"label invalid", emulatortest.Svc{Name: "hello", Labels: map[string]string{"iap": "true"}}, outcome.Rejected, `allowed values are "enabled"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.e.SeedService(t, tc.svc)
			f.e.SeedPolicy(t, "hello", publicPolicy())
			res, err, calls := f.reconcile(t, ref)
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if res.Outcome != tc.want || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("outcome %s reason %q, want %s containing %q", res.Outcome, res.Reason, tc.want, tc.reason)
			}
			if n := emulatortest.Writes(core.Snapshot{Calls: calls}); n != 0 {
				t.Errorf("%d writes, want 0: %v", n, calls)
			}
			checkPolicy(t, f.e.Policy(t, "hello"), map[string][]string{"roles/run.invoker": {"allUsers"}})
		})
	}
}

func TestReconcileOptedOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	if res, err, _ := f.reconcile(t, ref); err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("enforcing: %v %v", res.Outcome, err)
	}
	// Someone removes the label (as gcloud would: an update of labels).
	op, err := f.e.User.UpdateService(t.Context(), &runpb.UpdateServiceRequest{
		Service:    &runpb.Service{Name: ref.String(), Labels: map[string]string{"team": "web"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
	})
	if err != nil {
		t.Fatalf("removing the label: %v", err)
	}
	if _, err := op.Wait(t.Context()); err != nil {
		t.Fatalf("removing the label: %v", err)
	}
	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.OptedOut {
		t.Errorf("outcome %s (%s), want opted-out", res.Outcome, res.Reason)
	}
	if n := emulatortest.Writes(core.Snapshot{Calls: calls}); n != 0 {
		t.Errorf("%d writes after opt-out, want 0", n)
	}
	after := f.e.Service(t, "hello")
	if !after.GetIapEnabled() || !iapsetup.IsManagedMarker(after.GetAnnotations()[iapsetup.ManagedAnnotation]) {
		t.Errorf("opt-out turned something off: iap %v annotations %v", after.GetIapEnabled(), after.GetAnnotations())
	}
	checkPolicy(t, f.e.Policy(t, "hello"), map[string][]string{"roles/run.invoker": {"serviceAccount:" + emulatortest.Agent}})
}

func TestReconcileStricterIngressKept(t *testing.T) {
	t.Parallel()
	for _, in := range []runpb.IngressTraffic{runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY, runpb.IngressTraffic_INGRESS_TRAFFIC_NONE} {
		t.Run(in.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), Ingress: in})
			addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
			res, err, _ := f.reconcile(t, ref)
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if st := stepStatus(res)[outcome.StepIngress]; st != outcome.StepWarning {
				t.Errorf("ingress step = %s, want warning", st)
			}
			if got := f.e.Service(t, "hello").GetIngress(); got != in {
				t.Errorf("ingress %v → %v, want it kept", in, got)
			}
			f.checkSecondRunCompliant(t, ref)
		})
	}
}

func TestReconcilePreservesForeignBindings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), IAP: true})
	cond := &expr.Expr{Title: "office-hours", Expression: "request.time.getHours('Europe/Berlin') >= 9"}
	f.e.SeedPolicy(t, "hello", &iampb.Policy{Version: 3, Bindings: []*iampb.Binding{
		{Role: "roles/run.admin", Members: []string{"user:owner@example.com", "group:ops@example.com"}},
		{Role: "roles/run.invoker", Members: []string{"allUsers", "user:alice@example.com", "allAuthenticatedUsers"}},
		{Role: "roles/run.invoker", Members: []string{"allUsers", "group:contractors@example.com"}, Condition: cond},
		{Role: "roles/run.viewer", Members: []string{"allUsers"}},
	}})
	res, err, _ := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Reason)
	}
	p := f.e.Policy(t, "hello")
	checkPolicy(t, p, map[string][]string{
		"roles/run.admin":   {"group:ops@example.com", "user:owner@example.com"},
		"roles/run.invoker": {"serviceAccount:" + emulatortest.Agent, "user:alice@example.com"},
		"roles/run.viewer":  {"allUsers"},
	})
	var condMembers []string
	for _, b := range p.GetBindings() {
		if b.GetCondition() != nil {
			if b.GetCondition().GetExpression() != cond.Expression {
				t.Errorf("condition changed: %v", b.GetCondition())
			}
			condMembers = b.GetMembers()
		}
	}
	if diff := cmp.Diff([]string{"group:contractors@example.com"}, condMembers); diff != "" {
		t.Errorf("conditional invoker members (-want +got):\n%s", diff)
	}
	f.checkSecondRunCompliant(t, ref)
}

func TestReconcileForcedEtagRaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	for _, m := range []string{mSetPolicy, mUpdateService, mPatchBackend} {
		if err := f.e.Core.Faults.ForceRaces(m, 2); err != nil {
			t.Fatal(err)
		}
	}
	res, err, calls := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated {
		t.Fatalf("outcome %s (%s), want remediated after retries", res.Outcome, res.Reason)
	}
	// Each write loses two races: three attempts, and two re-reads of the
	// resource before the second and third.
	checkCalls(t, "racing reconcile", calls, plus(warmReads, map[string]int64{
		mSecret:   1,                                     // the managed marker is signed: the key is read once per reconciler
		mIdentity: 1, mProxies: 1, mRules: 1, mIAPGet: 2, // the backend's IAP policy and the project-wide one
		mSetPolicy: 3, mGetPolicy: 2,
		mUpdateService: 3, mGetService: 2, mGetOperation: 1,
		mPatchBackend: 3, mGetBackend: 2, mWaitGlobal: 1,
	}))
	if got := f.e.GetBackend(t, l.backend); got.Iap == nil || !got.Iap.Enabled {
		t.Error("backend IAP not enabled")
	}
	f.checkSecondRunCompliant(t, ref)
}

func TestReconcileRacesExhaustAttempts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *iapsetup.Options) { o.MaxAttempts = 3 })
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), IAP: true, Annotations: map[string]string{iapsetup.ManagedAnnotation: "true"}})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	if err := f.e.Core.Faults.ForceRaces(mSetPolicy, 100); err != nil {
		t.Fatal(err)
	}
	res, err, calls := f.reconcile(t, ref)
	if !errors.Is(err, iapsetup.ErrTransient) || !errors.Is(err, iapsetup.ErrConflict) {
		t.Fatalf("Reconcile error = %v, want transient (conflict left after bounded retries)", err)
	}
	if res.Outcome != outcome.Failed || !strings.Contains(res.Reason, "after 3 attempts") {
		t.Errorf("outcome %s reason %q, want failed after 3 attempts", res.Outcome, res.Reason)
	}
	if calls[mSetPolicy] != 3 {
		t.Errorf("SetIamPolicy calls = %d, want 3", calls[mSetPolicy])
	}
}

func TestReconcileDryRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	svcBefore, polBefore := f.e.Service(t, "hello"), f.e.Policy(t, "hello")

	res, err, calls := f.reconcile(t, ref, iapsetup.WithDryRun(true))
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if !res.DryRun || res.Outcome != outcome.Remediated || len(res.Changes) == 0 {
		t.Errorf("dry run result: dryRun %v outcome %s changes %d; want a remediated plan", res.DryRun, res.Outcome, len(res.Changes))
	}
	for _, s := range res.Steps {
		if s.Result == outcome.StepChanged && !strings.HasPrefix(s.Message, "dry run: would ") {
			t.Errorf("step %s message %q does not say it was not applied", s.Name, s.Message)
		}
	}
	// Only the validate-only UpdateService is sent; no IAM or Compute writes.
	checkCalls(t, "dry run", calls, plus(warmReads, plus(coldIAP, map[string]int64{mSecret: 1, mIdentity: 1, mProxies: 1, mRules: 1, mUpdateService: 1})))
	if got := f.e.Service(t, "hello"); got.GetEtag() != svcBefore.GetEtag() {
		t.Error("dry run changed the service")
	}
	if got := f.e.Policy(t, "hello"); string(got.GetEtag()) != string(polBefore.GetEtag()) {
		t.Error("dry run changed the IAM policy")
	}
	if got := f.e.GetBackend(t, l.backend); got.Iap != nil && got.Iap.Enabled {
		t.Error("dry run enabled IAP")
	}
}

func TestReconcileScopeAndMissing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	before := f.e.Snapshot()
	res, err := f.r.Reconcile(t.Context(), iapsetup.ServiceRef{Project: "other-project", Region: emulatortest.Region, Name: "hello"})
	if err != nil || res.Outcome != outcome.Rejected || !strings.Contains(res.Reason, "outside") {
		t.Errorf("out-of-scope reconcile = %+v, %v; want rejected", res, err)
	}
	var se *iapsetup.ScopeError
	cs, err := f.r.ResolveRegion(t.Context(), "other-project", emulatortest.Region)
	if !errors.As(err, &se) || se.Err != nil || len(cs) != 0 || se.Result(false).Outcome != outcome.Rejected {
		t.Errorf("out-of-scope ResolveRegion = %+v, %v; want a rejecting *ScopeError", cs, err)
	}
	cs, err = f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: "other-project", Name: "web"})
	if !errors.As(err, &se) || se.Err != nil || len(cs) != 0 || se.Resource != "projects/other-project/global/backendServices/web" {
		t.Errorf("out-of-scope ResolveBackend = %+v, %v; want a rejecting *ScopeError", cs, err)
	}
	cs, err = f.r.ResolveNEG(t.Context(), iapsetup.NEGRef{Project: "other-project", Region: emulatortest.Region, Name: "neg"})
	if !errors.As(err, &se) || se.Err != nil || len(cs) != 0 {
		t.Errorf("out-of-scope ResolveNEG = %+v, %v; want a rejecting *ScopeError", cs, err)
	}
	if d := f.e.Snapshot().Sub(before); d.Total() != 0 {
		t.Errorf("out-of-scope reconciles made calls: %v", d.Calls)
	}
	if res, err := f.r.Reconcile(t.Context(), iapsetup.ServiceRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "bad/name"}); err != nil || res.Outcome != outcome.Rejected {
		t.Errorf("malformed ref = %s, %v; want rejected", res.Outcome, err)
	}

	res, err, calls := f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Skipped {
		t.Errorf("missing service = %s (%s), %v; want skipped", res.Outcome, res.Reason, err)
	}
	if n := emulatortest.Writes(core.Snapshot{Calls: calls}); n != 0 {
		t.Errorf("missing service: %d writes", n)
	}
}

func TestReconcileErrorsClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		method    string
		code      codes.Code
		transient bool
		fix       string
	}{
		{"permission denied on SetIamPolicy", mSetPolicy, codes.PermissionDenied, false, "run.services.setIamPolicy"},
		{"unavailable on GetIamPolicy", mGetPolicy, codes.Unavailable, true, ""},
		{"quota on UpdateService", mUpdateService, codes.ResourceExhausted, true, ""},
		{"permission denied on generateServiceIdentity", mIdentity, codes.PermissionDenied, false, "gcloud beta services identity create"},
		{"invalid argument on UpdateService", mUpdateService, codes.InvalidArgument, false, "gcloud run services update hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var eo envOptions
			if tc.code == codes.ResourceExhausted {
				// The adapters retry throttled calls (internal/gcp,
				// ratelimit.go); this case is about one that outlasts them.
				eo.Client = func(o *gcp.Options) { o.ThrottleRetries = -1 }
			}
			f := newFixtureWith(t, eo)
			f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
			f.e.SeedPolicy(t, "hello", publicPolicy())
			if err := f.e.Core.Faults.FailNext(tc.method, 1, tc.code); err != nil {
				t.Fatal(err)
			}
			res, err, calls := f.reconcile(t, ref)
			if err == nil {
				t.Fatalf("Reconcile = nil error, want one (outcome %s)", res.Outcome)
			}
			if tc.method == mSetPolicy {
				// IAP must not be switched on before its agent may invoke.
				if calls[mUpdateService] != 0 || f.e.Service(t, "hello").GetIapEnabled() {
					t.Errorf("after a failed IAM write the service was still updated: %v", calls)
				}
			}
			if got := errors.Is(err, iapsetup.ErrTransient); got != tc.transient {
				t.Errorf("errors.Is(%v, ErrTransient) = %v, want %v", err, got, tc.transient)
			}
			if got := errors.Is(err, iapsetup.ErrPermanent); got == tc.transient {
				t.Errorf("errors.Is(err, ErrPermanent) = %v with transient=%v", got, tc.transient)
			}
			if res.Outcome != outcome.Failed || !strings.Contains(res.Reason, tc.fix) {
				t.Errorf("outcome %s reason %q, want failed mentioning %q", res.Outcome, res.Reason, tc.fix)
			}
			// Once the fault is gone the next run converges.
			res, err, _ = f.reconcile(t, ref)
			if err != nil || (res.Outcome != outcome.Remediated && res.Outcome != outcome.Compliant) {
				t.Errorf("retry after fault: %s (%s), %v", res.Outcome, res.Reason, err)
			}
		})
	}
}

func TestReconcileRegion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedService(t, emulatortest.Svc{Name: "second", Labels: labelled()})
	for _, n := range []string{"plain-1", "plain-2", "plain-3"} {
		f.e.SeedService(t, emulatortest.Svc{Name: n})
	}
	f.e.SeedService(t, emulatortest.Svc{Name: "bad-label", Labels: map[string]string{"iap": "on"}})

	before := f.e.Snapshot()
	results, err := f.reconcileAll(f.r.ResolveRegion(t.Context(), emulatortest.Project, emulatortest.Region))
	if err != nil {
		t.Fatalf("ResolveRegion and Reconcile: %v", err)
	}
	got := map[string]outcome.Kind{}
	for _, r := range results {
		got[r.Ref.Name] = r.Outcome
	}
	want := map[string]outcome.Kind{
		"hello": outcome.Remediated, "second": outcome.Remediated, "bad-label": outcome.Rejected,
		"plain-1": outcome.Skipped, "plain-2": outcome.Skipped, "plain-3": outcome.Skipped,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	// One list; unlabelled and badly labelled services cost nothing more;
	// labelled ones skip GetService (the listed copy is used); the two
	// concurrent reconciles share one generateServiceIdentity.
	calls := f.e.Snapshot().Sub(before).Calls
	checkCalls(t, "ReconcileRegion", calls, map[string]int64{
		mSecret:       1, // the managed marker is signed: the key is read once per reconciler
		mListServices: 1, mIdentity: 1,
		mIAPGet:    3, // each service's Cloud Run IAP resource; the project-wide policy once
		mGetPolicy: 2, mListNEGs: 2, mAggBackends: 2,
		mSetPolicy: 2, mUpdateService: 2, mGetOperation: 2,
	})
}

func TestReconcileFromComputeEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedService(t, emulatortest.Svc{Name: "unlabelled"})
	f.e.SeedService(t, emulatortest.Svc{Name: "masked", Labels: labelled()})
	neg := f.e.AddNEG(t, "hello-neg", "hello", "")
	other := f.e.AddNEG(t, "unlabelled-neg", "unlabelled", "")
	mask := f.e.AddNEG(t, "mask-neg", "", "<service>.example.com")
	// Each backend fronts one service: a shared one would be a conflict
	// (TestReconcileSharedBackend).
	web := emulatortest.Backend{Name: "web", Groups: []string{neg}}
	f.e.AddBackend(t, web)
	f.e.AddBackend(t, emulatortest.Backend{Name: "other-web", Groups: []string{other}})
	masked := emulatortest.Backend{Name: "masked", Region: emulatortest.Region, Groups: []string{mask}}
	f.e.AddBackend(t, masked)

	outcomes := func(rs []*iapsetup.Result) map[string]outcome.Kind {
		out := map[string]outcome.Kind{}
		for _, r := range rs {
			out[r.Ref.Name] = r.Outcome
		}
		return out
	}
	rs, err := f.reconcileAll(f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Name: "web"}))
	if err != nil {
		t.Fatalf("ReconcileBackend: %v", err)
	}
	if diff := cmp.Diff(map[string]outcome.Kind{"hello": outcome.Remediated}, outcomes(rs)); diff != "" {
		t.Errorf("ReconcileBackend outcomes (-want +got):\n%s", diff)
	}
	rs, err = f.reconcileAll(f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Name: "other-web"}))
	if err != nil {
		t.Fatalf("ReconcileBackend(other-web): %v", err)
	}
	if diff := cmp.Diff(map[string]outcome.Kind{"unlabelled": outcome.Skipped}, outcomes(rs)); diff != "" {
		t.Errorf("ReconcileBackend(other-web) outcomes (-want +got):\n%s", diff)
	}
	if got := f.e.GetBackend(t, web); got.Iap == nil || !got.Iap.Enabled {
		t.Error("backend behind the event did not get IAP")
	}
	// Our own patch causes a backend-service event: it must be a no-op.
	before := f.e.Snapshot()
	rs, err = f.reconcileAll(f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Name: "web"}))
	if err != nil {
		t.Fatalf("ReconcileBackend again: %v", err)
	}
	if diff := cmp.Diff(map[string]outcome.Kind{"hello": outcome.Compliant}, outcomes(rs)); diff != "" {
		t.Errorf("second ReconcileBackend outcomes (-want +got):\n%s", diff)
	}
	if n := emulatortest.Writes(f.e.Snapshot().Sub(before)); n != 0 {
		t.Errorf("second ReconcileBackend made %d writes", n)
	}

	// A NEG event.
	rs, err = f.reconcileAll(f.r.ResolveNEG(t.Context(), iapsetup.NEGRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "hello-neg"}))
	if err != nil || len(rs) != 1 || rs[0].Outcome != outcome.Compliant {
		t.Errorf("ReconcileNEG = %v, %v; want hello compliant", outcomes(rs), err)
	}
	// A URL-mask NEG behind a backend makes the whole region a candidate.
	rs, err = f.reconcileAll(f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "masked"}))
	if err != nil {
		t.Fatalf("ReconcileBackend(masked): %v", err)
	}
	if diff := cmp.Diff(map[string]outcome.Kind{"hello": outcome.Compliant, "masked": outcome.Remediated, "unlabelled": outcome.Skipped}, outcomes(rs)); diff != "" {
		t.Errorf("ReconcileBackend(masked) outcomes (-want +got):\n%s", diff)
	}
	// The region sweep keeps the call's options: an access check asked for
	// covers every labelled service swept.
	rs, err = f.each(iapsetup.WithAccessCheck())(f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "masked"}))
	if err != nil {
		t.Fatalf("ReconcileBackend(masked) with the access check: %v", err)
	}
	for _, res := range rs {
		if res.Outcome != outcome.Skipped && stepOf(res, outcome.StepAccess).Name == "" {
			t.Errorf("ReconcileBackend(masked) with the access check: %s has no access step: %+v", res.Ref.Name, res.Steps)
		}
	}
	// Gone resources yield nothing.
	rs, err = f.reconcileAll(f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Name: "gone"}))
	if err != nil || len(rs) != 0 {
		t.Errorf("ReconcileBackend(gone) = %v, %v; want nothing", rs, err)
	}
	rs, err = f.reconcileAll(f.r.ResolveNEG(t.Context(), iapsetup.NEGRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "gone"}))
	if err != nil || len(rs) != 0 {
		t.Errorf("ReconcileNEG(gone) = %v, %v; want nothing", rs, err)
	}
}

func TestAgentIdentityCached(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixture(t, func(o *iapsetup.Options) { iapsetup.SetTestHooks(o, clock, nil); o.AgentTTL = time.Hour })
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), IAP: true})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := f.r.Reconcile(t.Context(), ref); err != nil {
				t.Errorf("Reconcile: %v", err)
			}
		})
	}
	wg.Wait()
	if n := f.e.Snapshot().Calls[mIdentity]; n != 1 {
		t.Errorf("generateServiceIdentity calls after 8 concurrent reconciles = %d, want 1", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if _, err := f.r.Reconcile(t.Context(), ref); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if n := f.e.Snapshot().Calls[mIdentity]; n != 2 {
		t.Errorf("generateServiceIdentity calls after the TTL = %d, want 2", n)
	}
}

// IAM still refusing the just-created IAP service agent ("Service account
// ... does not exist.", eventual consistency) after AgentWait ends the
// reconcile in a transient error — Eventarc redelivers — never a permanent
// failure; once IAM sees the agent, the redelivery converges. On the code
// before #14 the first reconcile was permanent (failed).
func TestReconcileAgentNotYetVisibleIsTransient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *iapsetup.Options) { o.AgentWait = 10 * time.Millisecond })
	f.e.Core.Accounts.SetPropagation(time.Hour)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), NoInvokerIAM: true})
	f.e.SeedPolicy(t, "hello", publicPolicy())

	res, err, calls := f.reconcile(t, ref)
	if err == nil || !errors.Is(err, iapsetup.ErrTransient) || errors.Is(err, iapsetup.ErrPermanent) {
		t.Fatalf("Reconcile = %v (outcome %s), want a transient error", err, res.Outcome)
	}
	if !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "eventually consistent") {
		t.Errorf("error %q does not say why", err)
	}
	if calls[mSetPolicy] < 2 {
		t.Errorf("SetIamPolicy calls = %d, want retries within AgentWait", calls[mSetPolicy])
	}

	f.e.Core.Accounts.Add(emulatortest.Agent) // IAM caught up
	res, err, _ = f.reconcile(t, ref)
	if err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("redelivered Reconcile = %v, %s (%s); want remediated", err, res.Outcome, res.Reason)
	}
}

// A project that does not exist answers 403 PERMISSION_DENIED, as on
// Google (which does not tell it from a project iapguard may not read): the
// failure is permanent and says both.
func TestReconcileUnknownProjectIsClear(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *iapsetup.Options) { o.Scope = scope.New(emulatortest.Project, "ghost-project") })
	res, err, _ := f.reconcile(t, iapsetup.ServiceRef{Project: "ghost-project", Region: emulatortest.Region, Name: "hello"})
	if err == nil || errors.Is(err, iapsetup.ErrTransient) {
		t.Fatalf("Reconcile = %v, want a permanent error", err)
	}
	for _, want := range []string{"Error 403", "Permission denied on resource project ghost-project.", "needs run.services.get (or the project does not exist)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if res.Outcome != outcome.Failed {
		t.Errorf("outcome = %s, want failed", res.Outcome)
	}
}
