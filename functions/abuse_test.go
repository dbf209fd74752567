package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Issue #19 item 5: a change time later than now counts as arrival. Two
// concurrent events dated an hour ahead used to rejoin run after run until
// their deadline (3,446 reconciles in 6.5 s in the attack); now they share
// at most a couple of runs.
func TestCoalescerFutureChangeCountsAsArrival(t *testing.T) {
	c := &coalescer{now: time.Now}
	var runs atomic.Int32
	fn := func(bool) (any, error) { runs.Add(1); time.Sleep(time.Millisecond); return nil, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	future := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err, _ := c.do(ctx, "k", future, fn); err != nil {
				t.Errorf("do: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := runs.Load(); n > 3 {
		t.Errorf("%d runs for two events dated in the future, want at most 3", n)
	}
}

// Item 5: an event dated far in the future is skipped without work, as one
// older than MAX_EVENT_AGE is.
func TestHandleSkipsFarFutureEvents(t *testing.T) {
	rec := &fakeReconciler{}
	pub := &fakePublisher{}
	h := NewHandler(testConfig(0), rec, pub, nil)
	h.now = func() time.Time { return time.Now().Add(-24 * time.Hour) } // the event is a day ahead
	if err := h.Handle(context.Background(), runEvent(t, "hello", "future-1")); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if got := rec.services(); len(got) != 0 {
		t.Errorf("reconciled %v for an event dated a day ahead", got)
	}
	ms := pub.all()
	if len(ms) != 1 || ms[0].Outcome != "skipped" || !strings.Contains(ms[0].Reason, "in the future") {
		t.Fatalf("outcomes %+v, want one skipped (dated in the future)", ms)
	}
}

// countingRegions counts whole-project replays (ResolveRegion).
type countingRegions struct {
	fakeReconciler
	regions atomic.Int32
}

func (c *countingRegions) ResolveRegion(ctx context.Context, project, region string) ([]iapsetup.Candidate, error) {
	c.regions.Add(1)
	time.Sleep(20 * time.Millisecond)
	return []iapsetup.Candidate{{Ref: iapsetup.ServiceRef{Project: project, Region: region, Name: "hello"}}}, nil
}

func replayEventID(t *testing.T, m event.ReplayMessage, id string) cloudevents.Event {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.NewMessagePublishedEvent("p1", "iapguard-replay", "projects/p1/subscriptions/s",
		event.PubSubMessage{Data: data, MessageID: "m-" + id, PublishTime: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Item 6: concurrent whole-project replays share runs (50 made 50 sweeps
// of the project before).
func TestHandleCoalescesProjectReplays(t *testing.T) {
	rec := &countingRegions{}
	pub := &fakePublisher{}
	h := NewHandler(testConfig(0), rec, pub, nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := replayEventID(t, event.ReplayMessage{Version: event.ReplayVersion, Project: "p1", Region: "us-central1"}, fmt.Sprint(i))
			if err := h.Handle(context.Background(), e); err != nil {
				t.Errorf("Handle: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := rec.regions.Load(); n > 5 {
		t.Errorf("%d project reconciles for 50 concurrent replays, want a few", n)
	}
	if n := len(pub.all()); n != 50 {
		t.Errorf("%d outcomes, want one per replay (50)", n)
	}
}

// Item 7: skipped and rejected outcomes carry resource fields the sender
// chose. A project outside the scope, or fields that are not valid names,
// are reported as "unknown"; every attribute and the ordering key stay
// within Pub/Sub's limits.
func TestSkipMessageScopedAndBounded(t *testing.T) {
	h := NewHandler(testConfig(0), &fakeReconciler{}, &fakePublisher{}, nil)
	start := time.Now()
	for _, tc := range []struct{ name, resource, project, service string }{
		{"in scope", "projects/p1/locations/us-central1/services/hello", "p1", "hello"},
		{"another project", "projects/other-project/locations/us-central1/services/hello", "unknown", ""},
		{"8 KB name", "projects/" + strings.Repeat("a", 8000) + "/locations/r/services/s", "unknown", ""},
		{"bad service name", "projects/p1/locations/us-central1/services/a..b", "p1", ""},
	} {
		m := h.skipMessage(outcome.Trigger{ResourceName: tc.resource}, "why", start)
		if m.Resource.Project != tc.project || m.Resource.Service != tc.service {
			t.Errorf("%s: resource %+v, want project %q service %q", tc.name, m.Resource, tc.project, tc.service)
		}
		for k, v := range m.Attributes() {
			if len(v) > outcome.MaxAttributeValue {
				t.Errorf("%s: attribute %s has %d bytes", tc.name, k, len(v))
			}
		}
		if len(m.OrderingKey()) > outcome.MaxOrderingKey {
			t.Errorf("%s: ordering key has %d bytes", tc.name, len(m.OrderingKey()))
		}
	}
}

// Item 8: an event that keeps failing transiently is redelivered in
// silence only for a while; after StillRetryingAfter each attempt also
// publishes a failed "still retrying" outcome.
func TestHandleStillRetryingOutcome(t *testing.T) {
	rec := &fakeReconciler{err: fmt.Errorf("%w: injected UNAVAILABLE", iapsetup.ErrTransient)}
	pub := &fakePublisher{}
	h := NewHandler(testConfig(0), rec, pub, nil)
	if err := h.Handle(context.Background(), runEvent(t, "hello", "retry-1")); err == nil {
		t.Fatal("Handle = nil, want the transient error (redelivery)")
	}
	if n := len(pub.all()); n != 0 {
		t.Fatalf("%d outcomes for a fresh transient failure, want none", n)
	}
	h.now = func() time.Time { return time.Now().Add(StillRetryingAfter + time.Minute) }
	if err := h.Handle(context.Background(), runEvent(t, "hello", "retry-2")); err == nil {
		t.Fatal("Handle = nil, want the transient error (redelivery goes on)")
	}
	ms := pub.all()
	if len(ms) != 1 || ms[0].Outcome != "failed" || !strings.HasPrefix(ms[0].Reason, "still retrying") {
		t.Fatalf("outcomes %+v, want one failed \"still retrying\"", ms)
	}
}

// remediatingOnce remediates on the first reconcile, then finds the
// service compliant.
type remediatingOnce struct {
	fakeReconciler
	n atomic.Int32
}

func (r *remediatingOnce) Reconcile(ctx context.Context, ref iapsetup.ServiceRef, _ ...iapsetup.CallOption) (*iapsetup.Result, error) {
	if r.n.Add(1) == 1 {
		return &iapsetup.Result{Ref: ref, Outcome: outcome.Remediated, Changes: []outcome.Change{{Resource: ref.String(), Field: "iapEnabled", Before: "false", After: "true"}}}, nil
	}
	return &iapsetup.Result{Ref: ref, Outcome: outcome.Compliant}, nil
}

// Item 8: when publishing fails, the redelivery finds the service
// compliant; the remediation is kept and published first, not lost.
func TestHandleKeepsChangesUntilReported(t *testing.T) {
	rec := &remediatingOnce{}
	pub := &fakePublisher{err: fmt.Errorf("injected: publish failed")}
	h := NewHandler(testConfig(0), rec, pub, nil)
	e := runEvent(t, "hello", "lost-1")
	if err := h.Handle(context.Background(), e); err == nil {
		t.Fatal("Handle = nil with a failing publisher, want an error (redelivery)")
	}
	pub.mu.Lock()
	pub.err = nil
	pub.mu.Unlock()
	if err := h.Handle(context.Background(), e); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	var kinds []string
	for _, m := range pub.all() {
		kinds = append(kinds, string(m.Outcome))
	}
	if strings.Join(kinds, ",") != "remediated,compliant" {
		t.Errorf("outcomes %v, want the kept remediated one, then compliant", kinds)
	}
}

// A resolve the scope refuses becomes the named resource's outcome, as the
// reconciler's fan-out methods reported it before the mapper (#17):
// rejected and acknowledged outside the scope; failed, with the error, when
// the check could not decide.
func TestReconcileEachScopeRefusal(t *testing.T) {
	h := NewHandler(testConfig(0), &fakeReconciler{}, &fakePublisher{}, nil)
	const bs = "projects/other/global/backendServices/web"
	rs, err := h.reconcileEach(t.Context(), bs, time.Now(), nil, &iapsetup.ScopeError{Resource: bs, Reason: "project other is outside iapguard's scope"})
	if err != nil || len(rs) != 1 || rs[0].Outcome != outcome.Rejected || rs[0].Resource != bs {
		t.Errorf("out of scope: %+v, %v; want one rejected result for %s and no error", rs, err, bs)
	}
	cause := fmt.Errorf("reading the project's ancestry: %w", iapsetup.ErrTransient)
	rs, err = h.reconcileEach(t.Context(), bs, time.Now(), []iapsetup.Candidate{{Ref: iapsetup.ServiceRef{Project: "p1", Region: "r", Name: "s"}}},
		errors.Join(&iapsetup.ScopeError{Resource: bs, Reason: cause.Error(), Err: cause}))
	if !errors.Is(err, iapsetup.ErrTransient) || len(rs) != 2 || rs[0].Outcome != outcome.Failed || rs[1].Outcome != outcome.Compliant {
		t.Errorf("check failed: %+v, %v; want a failed result, the candidate reconciled, a transient error", rs, err)
	}
}

// Every permanent resolve failure becomes an outcome (the review finding:
// a backend service whose read was refused was acknowledged with none): a
// failure other than a scope refusal is the named resource's failed
// outcome, a transient one has none and is returned, and a refusal joined
// with other errors (as ResolveBackend joins its NEGs') is reported on its
// own.
func TestReconcileEachResolveFailure(t *testing.T) {
	const bs = "projects/p1/global/backendServices/web"
	svc := []iapsetup.Candidate{{Ref: iapsetup.ServiceRef{Project: "p1", Region: "r", Name: "s"}}}
	denied := fmt.Errorf("reading backend service: 403: %w", iapsetup.ErrPermanent)
	negDenied := fmt.Errorf("reading network endpoint group n: 403: %w", iapsetup.ErrPermanent)
	refused := &iapsetup.ScopeError{Resource: "projects/other/locations/r", Reason: "project other is outside iapguard's scope"}
	type res struct {
		Resource string
		Outcome  outcome.Kind
	}
	for _, tc := range []struct {
		name      string
		cs        []iapsetup.Candidate
		err       error
		want      []res
		wantClass error // nil: no error
		// wantReason is in the failed outcome of bs; notReason is not.
		wantReason, notReason string
	}{
		{
			name: "permanent", err: denied,
			want: []res{{bs, outcome.Failed}}, wantClass: iapsetup.ErrPermanent, wantReason: denied.Error(),
		},
		{
			name: "transient", err: fmt.Errorf("reading backend service: 503: %w", iapsetup.ErrTransient),
			wantClass: iapsetup.ErrTransient,
		},
		{
			name: "one NEG refused, another service found", cs: svc, err: errors.Join(negDenied),
			want: []res{{bs, outcome.Failed}, {"", outcome.Compliant}}, wantClass: iapsetup.ErrPermanent, wantReason: negDenied.Error(),
		},
		{
			name: "a scope refusal joined, alone", cs: svc, err: errors.Join(errors.Join(nil, refused)),
			want: []res{{refused.Resource, outcome.Rejected}, {"", outcome.Compliant}},
		},
		{
			name: "a scope refusal joined with a NEG refused", err: errors.Join(negDenied, errors.Join(refused)),
			want:      []res{{refused.Resource, outcome.Rejected}, {bs, outcome.Failed}},
			wantClass: iapsetup.ErrPermanent, wantReason: negDenied.Error(), notReason: refused.Reason,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(testConfig(0), &fakeReconciler{}, &fakePublisher{}, nil)
			rs, err := h.reconcileEach(t.Context(), bs, time.Now(), tc.cs, tc.err)
			var got []res
			for _, r := range rs {
				got = append(got, res{r.Resource, r.Outcome})
				if r.Resource == bs && (!strings.Contains(r.Reason, tc.wantReason) || tc.notReason != "" && strings.Contains(r.Reason, tc.notReason)) {
					t.Errorf("reason %q: want %q in it, and not %q", r.Reason, tc.wantReason, tc.notReason)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("results %v, want %v", got, tc.want)
			}
			if tc.wantClass == nil && err != nil || tc.wantClass != nil && !errors.Is(err, tc.wantClass) {
				t.Errorf("error %v, want one of class %v", err, tc.wantClass)
			}
			if tc.wantClass == iapsetup.ErrPermanent && errors.Is(err, iapsetup.ErrTransient) {
				t.Errorf("error %v is transient, want permanent", err)
			}
		})
	}
}
