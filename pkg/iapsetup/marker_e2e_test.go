package iapsetup_test

import (
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// markerChange is the one change of a reconcile that only adds the managed
// marker.
// With an access-record key (every test environment has one) it is signed.
var markerChange = []string{"annotations[" + iapsetup.ManagedAnnotation + "]:  → (signed)"}

// removeLabel drops the iap label as gcloud would (an update of labels).
func removeLabel(t *testing.T, e *testEnv) {
	t.Helper()
	op, err := e.User.UpdateService(t.Context(), &runpb.UpdateServiceRequest{
		Service:    &runpb.Service{Name: ref.String(), Labels: map[string]string{"team": "web"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
	})
	if err != nil {
		t.Fatalf("removing the label: %v", err)
	}
	if _, err := op.Wait(t.Context()); err != nil {
		t.Fatalf("removing the label: %v", err)
	}
}

// TestReconcileMarkerAfterFailedServiceUpdate reproduces, over the real
// clients, the sequence the soak found (docs/security.md G-2): the service
// needs nothing but the managed marker (ingress is already
// internal-and-LB), the IAM policy and backend writes succeed, and the
// service update carrying the marker alone fails transiently. The
// redelivered event must write the marker, the event of that write must
// end compliant with zero writes, and removing the label must then be
// reported opted-out.
func TestReconcileMarkerAfterFailedServiceUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	l := addLB(t, f.e, emulatortest.Backend{Name: "web"}, true)
	if err := f.e.Core.Faults.FailNext(mUpdateService, 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}

	// First delivery: IAM and backend written, the service update fails.
	res, err, calls := f.reconcile(t, ref)
	if err == nil || !errors.Is(err, iapsetup.ErrTransient) {
		t.Fatalf("first Reconcile = %v (outcome %s), want a transient error", err, res.Outcome)
	}
	checkCalls(t, "first delivery", calls, plus(warmReads, plus(coldIAP, map[string]int64{
		mIdentity: 1, mProxies: 1, mRules: 1,
		mSetPolicy: 1, mPatchBackend: 1, mWaitGlobal: 1, mUpdateService: 1, // the update failed: no operation to poll
		mSecret: 1, // the key that signs the marker
	})))
	checkPolicy(t, f.e.Policy(t, "hello"), map[string][]string{"roles/run.invoker": {"serviceAccount:" + emulatortest.Agent}})
	if b := f.e.GetBackend(t, l.backend); b.Iap == nil || !b.Iap.Enabled {
		t.Fatalf("backend IAP = %+v after the first delivery, want enabled", b.Iap)
	}
	if a := f.e.Service(t, "hello").GetAnnotations(); a[iapsetup.ManagedAnnotation] != "" {
		t.Fatalf("marker %q present after the failed update", a[iapsetup.ManagedAnnotation])
	}

	// Redelivery: everything else complies; the marker alone is written.
	res, err, calls = f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if res.Outcome != outcome.Remediated {
		t.Errorf("redelivery outcome %s (%s), want remediated (the marker is written)", res.Outcome, res.Reason)
	}
	if diff := cmp.Diff(markerChange, changeLines(res)); diff != "" {
		t.Errorf("redelivery changes (-want +got):\n%s", diff)
	}
	for _, s := range res.Steps {
		if s.Result != outcome.StepOK {
			t.Errorf("redelivery step %s = %s (%s), want ok", s.Name, s.Result, s.Message)
		}
	}
	checkCalls(t, "redelivery", calls, plus(warmReads, map[string]int64{mUpdateService: 1, mGetOperation: 1}))
	svc := f.e.Service(t, "hello")
	if !iapsetup.IsManagedMarker(svc.GetAnnotations()[iapsetup.ManagedAnnotation]) {
		t.Fatalf("marker missing after the redelivery: %v", svc.GetAnnotations())
	}
	if svc.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER {
		t.Errorf("ingress %v, want kept", svc.GetIngress())
	}

	// The event of the marker write: compliant, zero writes, warm reads.
	f.checkSecondRunCompliant(t, ref)

	// The label is removed: reported opted-out, nothing written.
	removeLabel(t, f.e)
	res, err, calls = f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("after the label was removed: %v", err)
	}
	if res.Outcome != outcome.OptedOut {
		t.Errorf("after the label was removed: outcome %s (%s), want opted-out", res.Outcome, res.Reason)
	}
	if n := emulatortest.Writes(core.Snapshot{Calls: calls}); n != 0 {
		t.Errorf("%d writes after the opt-out, want 0: %v", n, calls)
	}
}

// TestReconcileMarkerOnCompliantService: a labelled service that already
// complies but lacks the marker gets it in one service update (a dry run
// only plans it); a service that is not labelled, or labelled with an
// invalid value, gets nothing.
func TestReconcileMarkerOnCompliantService(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		labels map[string]string
		dryRun bool
		want   outcome.Kind
		// marked: the marker is present afterwards; update: one
		// UpdateService (validate-only in a dry run) is sent.
		marked, update bool
	}{
		{name: "labelled", labels: labelled(), want: outcome.Remediated, marked: true, update: true},
		{name: "labelled dry run", labels: labelled(), dryRun: true, want: outcome.Remediated, update: true},
		{name: "label absent", labels: map[string]string{"team": "web"}, want: outcome.Skipped},
		{name: "label disabled", labels: map[string]string{"iap": "disabled"}, want: outcome.Skipped},
		{name: "label invalid", labels: map[string]string{"iap": "yes"}, want: outcome.Rejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: tc.labels, IAP: true})
			f.e.SeedPolicy(t, "hello", &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"serviceAccount:" + emulatortest.Agent}}}})
			etag := f.e.Service(t, "hello").GetEtag()

			res, err, calls := f.reconcile(t, ref, iapsetup.WithDryRun(tc.dryRun))
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if res.Outcome != tc.want {
				t.Errorf("outcome %s (%s), want %s", res.Outcome, res.Reason, tc.want)
			}
			var wantChanges []string
			if tc.update {
				wantChanges = markerChange
			}
			if diff := cmp.Diff(wantChanges, changeLines(res)); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if got, want := calls[mUpdateService], map[bool]int64{true: 1}[tc.update]; got != want {
				t.Errorf("%d UpdateService calls, want %d: %v", got, want, calls)
			}
			if n := emulatortest.Writes(core.Snapshot{Calls: calls}) - calls[mUpdateService]; n != 0 {
				t.Errorf("%d writes besides UpdateService, want 0: %v", n, calls)
			}
			svc := f.e.Service(t, "hello")
			if got := iapsetup.IsManagedMarker(svc.GetAnnotations()[iapsetup.ManagedAnnotation]); got != tc.marked {
				t.Errorf("marked = %v, want %v (annotations %v)", got, tc.marked, svc.GetAnnotations())
			}
			if !tc.marked && svc.GetEtag() != etag {
				t.Error("the service changed")
			}
			if tc.marked {
				f.checkSecondRunCompliant(t, ref)
			}
		})
	}
}

// TestReconcileForgedMarkerNotOptedOut: anyone who may update a service can
// add the managed annotation to a service iapguard never touched. Only a
// marker iapguard signed for that service makes a missing label opted-out;
// a hand-written "true" (what iapguard wrote before markers were signed)
// or a signed marker copied from another service is skipped, with a reason
// saying the marker cannot be verified, and nothing is written. Before the
// signature, the "true" case was reported opted-out.
func TestReconcileForgedMarkerNotOptedOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// iapguard enforces "hello", which gets a signed marker.
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	if res, err, _ := f.reconcile(t, ref); err != nil || res.Outcome != outcome.Remediated {
		t.Fatalf("enforcing hello: %v %v", res.Outcome, err)
	}
	signed := f.e.Service(t, "hello").GetAnnotations()[iapsetup.ManagedAnnotation]
	if signed == iapsetup.ManagedValue || !iapsetup.IsManagedMarker(signed) {
		t.Fatalf("marker of hello = %q, want a signed marker", signed)
	}
	for _, tc := range []struct{ name, marker string }{
		{"hand-written true", iapsetup.ManagedValue},
		{"copied from another service", signed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "never-touched-" + map[bool]string{true: "a", false: "b"}[tc.marker == iapsetup.ManagedValue]
			f.e.SeedService(t, emulatortest.Svc{Name: name, Labels: map[string]string{"team": "web"},
				Annotations: map[string]string{iapsetup.ManagedAnnotation: tc.marker}})
			r := iapsetup.ServiceRef{Project: ref.Project, Region: ref.Region, Name: name}
			res, err, calls := f.reconcile(t, r)
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if res.Outcome != outcome.Skipped || !strings.Contains(res.Reason, "cannot verify") {
				t.Errorf("outcome %s (%s), want skipped saying the marker cannot be verified", res.Outcome, res.Reason)
			}
			if n := emulatortest.Writes(core.Snapshot{Calls: calls}); n != 0 {
				t.Errorf("%d writes, want 0", n)
			}
		})
	}
	// iapguard's own marker still makes the opt-out of hello opted-out.
	removeLabel(t, f.e)
	if res, err, _ := f.reconcile(t, ref); err != nil || res.Outcome != outcome.OptedOut {
		t.Errorf("hello after its label was removed: %s (%v), want opted-out", res.Outcome, err)
	}
	// A region sweep plans from the listed copies and must judge the
	// markers the same way.
	results, err := f.reconcileAll(f.r.ResolveRegion(t.Context(), ref.Project, ref.Region))
	if err != nil {
		t.Fatalf("ResolveRegion and Reconcile: %v", err)
	}
	for _, res := range results {
		want := outcome.Skipped
		if res.Ref.Name == "hello" {
			want = outcome.OptedOut
		}
		if res.Outcome != want {
			t.Errorf("region sweep: %s is %s (%s), want %s", res.Ref.Name, res.Outcome, res.Reason, want)
		}
	}
}
