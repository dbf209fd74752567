package functions

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// backendRec resolves every backend service to the service hello (with a
// listed copy, as URL-mask NEGs do) and records how many options each
// reconcile was given (Listed is the only one the handler passes).
type backendRec struct {
	fakeReconciler
	optsMu sync.Mutex
	opts   []int
}

func (b *backendRec) ResolveBackend(_ context.Context, ref iapsetup.BackendRef) ([]iapsetup.Candidate, error) {
	svc := iapsetup.ServiceRef{Project: ref.Project, Region: "us-central1", Name: "hello"}
	return []iapsetup.Candidate{{Ref: svc, Listed: &iapsetup.Service{Ref: svc}}}, nil
}

func (b *backendRec) Reconcile(ctx context.Context, ref iapsetup.ServiceRef, opts ...iapsetup.CallOption) (*iapsetup.Result, error) {
	b.optsMu.Lock()
	b.opts = append(b.opts, len(opts))
	b.optsMu.Unlock()
	return b.fakeReconciler.Reconcile(ctx, ref, opts...)
}

// entryAt is an Admin Activity audit entry of p1 stamped at, for the
// audit-log event of a Cloud Run or a Compute change.
func entryAt(t *testing.T, at time.Time, insert, service, method, resource string, op map[string]any) cloudevents.Event {
	t.Helper()
	entry := map[string]any{
		"insertId": insert,
		"logName":  "projects/p1/logs/cloudaudit.googleapis.com%2Factivity",
		"protoPayload": map[string]any{
			"@type":              "type.googleapis.com/google.cloud.audit.AuditLog",
			"authenticationInfo": map[string]any{"principalEmail": "iapguard@p1.iam.gserviceaccount.com"},
			"serviceName":        service, "methodName": method, "resourceName": resource,
		},
		"severity":  "NOTICE",
		"timestamp": at.UTC().Format(time.RFC3339Nano), "receiveTimestamp": at.UTC().Format(time.RFC3339Nano),
	}
	if op != nil {
		entry["operation"] = op
	}
	b, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.NewAuditLogEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A Compute event names a service through its backend: its reconcile goes
// through the coalescer as a service event's does. The event of the
// backend patch a reconcile made arrives while that reconcile still runs
// (it has the IAM policy and the service left to write, say): it must wait
// for it and then run on its own, reading the service afresh — not
// reconcile concurrently from the state before those writes. That race
// made the end-to-end TestOrgWideBothPaths flaky under load: the patch's
// event wrote the service update first, the label's reconcile got ABORTED
// on the etag, and an event of iapguard's own write reported remediated.
//
// The bubble tells deterministically when every goroutine is blocked;
// the handler's clock is set by hand so the patch happens after the first
// run started.
func TestHandleComputeEventWaitsForTheServiceReconcileInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &backendRec{fakeReconciler: fakeReconciler{gate: make(chan struct{}), started: make(chan iapsetup.ServiceRef, 4)}}
		pub := &fakePublisher{}
		h := NewHandler(testConfig(0), rec, pub, nil)
		var clockMu sync.Mutex
		clock := time.Now()
		h.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
		setClock := func(t time.Time) { clockMu.Lock(); clock = t; clockMu.Unlock() }
		t0 := clock

		// The user's label: its reconcile starts at t0 and holds.
		label := entryAt(t, t0.Add(-time.Second), "label", event.RunServiceName, event.RunV2UpdateService,
			"projects/p1/locations/us-central1/services/hello", nil)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { errs[0] = h.Handle(t.Context(), label) })
		<-rec.started

		// That reconcile patches the backend at t0+1s; the patch's event
		// (the operation's last entry) arrives while it still runs.
		setClock(t0.Add(2 * time.Second))
		patch := entryAt(t, t0.Add(time.Second), "patch", event.ComputeServiceName, "v1.compute.backendServices.patch",
			"projects/p1/global/backendServices/web-backend", map[string]any{"id": "op-1", "producer": "compute.googleapis.com", "last": true})
		wg.Go(func() { errs[1] = h.Handle(t.Context(), patch) })
		synctest.Wait() // both events are as far as they can get

		if got := rec.services(); len(got) != 1 {
			t.Fatalf("reconciles while the label's reconcile runs: %v; want that one alone (the patch's event waits)", got)
		}
		close(rec.gate)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Handle #%d: %v", i, err)
			}
		}
		if p := rec.peak.Load(); p != 1 {
			t.Errorf("%d reconciles of hello at once, want 1", p)
		}
		// The patch's event ran its own reconcile after the first ended
		// (that one started before the patch, so it is not shared), and
		// without the listed copy resolved before it waited.
		rec.optsMu.Lock()
		opts := rec.opts
		rec.optsMu.Unlock()
		if len(opts) != 2 || opts[1] != 0 {
			t.Errorf("reconciles with %v options, want two, the second without the stale listed copy", opts)
		}
		for _, id := range []string{label.ID(), patch.ID()} {
			if ms := pub.forEvent(id); len(ms) != 1 || ms[0].Resource.Service != "hello" {
				t.Errorf("event %s: outcomes %+v, want one for hello", id, ms)
			}
		}
	})
}
