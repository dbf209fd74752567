package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/iapguard/iapguard/internal/auditsamples"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// waitStarted receives n reconcile starts, failing the test if ctx ends first.
func waitStarted(t *testing.T, ctx context.Context, started <-chan iapsetup.ServiceRef, n int) {
	t.Helper()
	for range n {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatalf("a reconcile did not start: %v", ctx.Err())
		}
	}
}

func TestHandleAdmissionCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cap      int
		events   int
		wantPeak int32
	}{
		{name: "cap 3 of 12", cap: 3, events: 12, wantPeak: 3},
		{name: "cap 1 of 5", cap: 1, events: 5, wantPeak: 1},
		{name: "no cap", cap: 0, events: 20, wantPeak: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			rec := &fakeReconciler{gate: make(chan struct{}), started: make(chan iapsetup.ServiceRef, tc.events)}
			pub := &fakePublisher{}
			h := NewHandler(testConfig(tc.cap), rec, pub, nil)
			errs := make([]error, tc.events)
			var wg sync.WaitGroup
			for i := range tc.events {
				e := runEvent(t, fmt.Sprintf("svc-%d", i), fmt.Sprintf("synthetic-%d", i))
				wg.Go(func() { errs[i] = h.Handle(ctx, e) })
			}
			// The first wantPeak events reconcile at once; the rest wait.
			waitStarted(t, ctx, rec.started, int(tc.wantPeak))
			if tc.cap > 0 {
				select {
				case <-rec.started:
					t.Fatalf("an event reconciled while all %d slots were taken", tc.cap)
				case <-time.After(50 * time.Millisecond):
				}
				// Each freed slot lets exactly one waiting event in.
				for range tc.events - tc.cap {
					rec.gate <- struct{}{}
					waitStarted(t, ctx, rec.started, 1)
					if got := rec.cur.Load(); got > int32(tc.cap) {
						t.Fatalf("%d reconciles running after a slot freed, cap %d", got, tc.cap)
					}
				}
			}
			close(rec.gate)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if got := rec.peak.Load(); got != tc.wantPeak {
				t.Errorf("peak concurrent reconciles = %d, want %d", got, tc.wantPeak)
			}
			if got := len(pub.all()); got != tc.events {
				t.Errorf("%d outcomes, want %d", got, tc.events)
			}
		})
	}
}

// TestHandleAdmissionWaitEndsWithContext: an event whose context ends while
// it waits for a slot returns an error wrapping the context's (so Eventarc
// redelivers it), never reconciles and publishes nothing.
func TestHandleAdmissionWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     func(parent context.Context) (context.Context, context.CancelFunc)
		wantErr error
	}{
		{
			name: "cancelled",
			ctx: func(p context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(p)
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantErr: context.Canceled,
		},
		{
			name: "deadline",
			ctx: func(p context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(p, 20*time.Millisecond)
			},
			wantErr: context.DeadlineExceeded,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			rec := &fakeReconciler{gate: make(chan struct{}), started: make(chan iapsetup.ServiceRef, 2)}
			pub := &fakePublisher{}
			h := NewHandler(testConfig(1), rec, pub, nil)
			holder := runEvent(t, "holder", "synthetic-holder")
			holderErr := make(chan error, 1)
			go func() { holderErr <- h.Handle(ctx, holder) }()
			waitStarted(t, ctx, rec.started, 1)

			waiter := runEvent(t, "waiter", "synthetic-waiter")
			wctx, wcancel := tc.ctx(ctx)
			defer wcancel()
			err := h.Handle(wctx, waiter)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Handle(waiting event) = %v, want an error wrapping %v", err, tc.wantErr)
			}
			if ms := pub.forEvent(waiter.ID()); len(ms) != 0 {
				t.Errorf("outcomes published for the waiting event: %+v", ms)
			}
			close(rec.gate)
			if err := <-holderErr; err != nil {
				t.Fatalf("Handle(holder): %v", err)
			}
			if got, want := rec.services(), []string{"projects/p1/locations/us-central1/services/holder"}; len(got) != 1 || got[0] != want[0] {
				t.Errorf("reconciled %v, want only %v", got, want)
			}
		})
	}
}

// TestHandleAdmissionSkipsNeverWait: with every slot taken, malformed,
// foreign and stale events are still answered at once with their outcome.
func TestHandleAdmissionSkipsNeverWait(t *testing.T) {
	t.Parallel()
	var storage cloudevents.Event
	if err := json.Unmarshal(auditsamples.Read(t, "cloudevent-structured-audit-storage-objects-create.json"), &storage); err != nil {
		t.Fatal(err)
	}
	malformed := cloudevents.New()
	malformed.SetID("synthetic-malformed")
	malformed.SetSource("//cloudaudit.googleapis.com/projects/p1/logs/activity")
	malformed.SetType(event.AuditLogWritten)
	if err := malformed.SetData("application/json", []byte(`{"protoPayload": "nope"}`)); err != nil {
		t.Fatal(err)
	}
	var entry map[string]any
	if err := json.Unmarshal(syntheticRunEntry(t, "stale", "synthetic-stale"), &entry); err != nil {
		t.Fatal(err)
	}
	entry["timestamp"] = time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339Nano)
	staleEntry, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := event.NewAuditLogEvent(staleEntry)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	rec := &fakeReconciler{gate: make(chan struct{}), started: make(chan iapsetup.ServiceRef, 1)}
	defer close(rec.gate)
	pub := &fakePublisher{}
	cfg := testConfig(1)
	cfg.MaxEventAge = time.Hour
	h := NewHandler(cfg, rec, pub, nil)
	go func() { _ = h.Handle(ctx, runEvent(t, "holder", "synthetic-holder")) }()
	waitStarted(t, ctx, rec.started, 1)

	for _, tc := range []struct {
		name string
		e    cloudevents.Event
		want outcome.Kind
	}{
		{"foreign (real sample)", storage, outcome.Skipped},
		{"malformed", malformed, outcome.Rejected},
		{"older than IAPGUARD_MAX_EVENT_AGE", stale, outcome.Skipped},
	} {
		// A wait would last until ctx's deadline and end in an error.
		if err := h.Handle(ctx, tc.e); err != nil {
			t.Errorf("%s: Handle = %v, want nil without waiting for a slot", tc.name, err)
		}
		if ms := pub.forEvent(tc.e.ID()); len(ms) != 1 || ms[0].Outcome != tc.want {
			t.Errorf("%s: outcomes %+v, want one %s", tc.name, ms, tc.want)
		}
	}
}
