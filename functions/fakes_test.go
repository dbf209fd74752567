package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// fakeReconciler answers Reconcile with a compliant result (or err), after
// waiting for gate (when set) or delay, and counts how many reconciles run
// at once. Only Reconcile is expected: the events under test name services.
type fakeReconciler struct {
	delay   time.Duration
	gate    chan struct{} // when non-nil, each reconcile takes one value (or waits for close)
	err     error
	started chan iapsetup.ServiceRef // when non-nil, told of each reconcile as it starts

	cur, peak atomic.Int32
	mu        sync.Mutex
	refs      []iapsetup.ServiceRef
}

func (f *fakeReconciler) Reconcile(ctx context.Context, ref iapsetup.ServiceRef, _ ...iapsetup.CallOption) (*iapsetup.Result, error) {
	n := f.cur.Add(1)
	defer f.cur.Add(-1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	f.mu.Lock()
	f.refs = append(f.refs, ref)
	f.mu.Unlock()
	if f.started != nil {
		f.started <- ref
	}
	failed := func(err error) (*iapsetup.Result, error) {
		return &iapsetup.Result{Ref: ref, Outcome: outcome.Failed, Reason: err.Error()}, err
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return failed(fmt.Errorf("%w: %w", iapsetup.ErrTransient, ctx.Err()))
		}
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return failed(fmt.Errorf("%w: %w", iapsetup.ErrTransient, ctx.Err()))
		}
	}
	if f.err != nil {
		return failed(f.err)
	}
	return &iapsetup.Result{Ref: ref, Outcome: outcome.Compliant}, nil
}

func (f *fakeReconciler) ResolveRegion(context.Context, string, string) ([]iapsetup.Candidate, error) {
	return nil, fmt.Errorf("fake: ResolveRegion not expected: %w", iapsetup.ErrPermanent)
}

func (f *fakeReconciler) ResolveBackend(context.Context, iapsetup.BackendRef) ([]iapsetup.Candidate, error) {
	return nil, fmt.Errorf("fake: ResolveBackend not expected: %w", iapsetup.ErrPermanent)
}

func (f *fakeReconciler) ResolveNEG(context.Context, iapsetup.NEGRef) ([]iapsetup.Candidate, error) {
	return nil, fmt.Errorf("fake: ResolveNEG not expected: %w", iapsetup.ErrPermanent)
}

func (f *fakeReconciler) services() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.refs {
		out = append(out, r.String())
	}
	return out
}

// fakePublisher keeps every outcome, after checking it encodes as the real
// publisher would (outcome.Message.Marshal validates it); err fails every
// publish.
type fakePublisher struct {
	err  error
	mu   sync.Mutex
	msgs []*outcome.Message
}

func (p *fakePublisher) Publish(_ context.Context, m *outcome.Message) (string, error) {
	if p.err != nil {
		return "", p.err
	}
	if _, err := m.Marshal(); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return fmt.Sprint(len(p.msgs)), nil
}

func (p *fakePublisher) all() []*outcome.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*outcome.Message(nil), p.msgs...)
}

// forEvent returns the outcomes published for event id.
func (p *fakePublisher) forEvent(id string) []*outcome.Message {
	var out []*outcome.Message
	for _, m := range p.all() {
		if m.Trigger.EventID == id {
			out = append(out, m)
		}
	}
	return out
}

func testConfig(maxConcurrent int) Config {
	return Config{Project: "p1", Projects: []string{"p1"}, OutcomesTopic: "t", Timeout: 30 * time.Second, MaxConcurrent: maxConcurrent}
}

// synthetic-: a LogEntry shaped like the real Cloud Run samples (an Admin
// Activity UpdateService entry), for service svc in p1/us-central1; insert
// makes the entry (and so the event id) unique.
func syntheticRunEntry(t testing.TB, svc, insert string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"insertId": insert,
		"logName":  "projects/p1/logs/cloudaudit.googleapis.com%2Factivity",
		"protoPayload": map[string]any{
			"@type":              "type.googleapis.com/google.cloud.audit.AuditLog",
			"authenticationInfo": map[string]any{"principalEmail": "alice@example.com"},
			"serviceName":        event.RunServiceName,
			"methodName":         event.RunV2UpdateService,
			"resourceName":       "projects/p1/locations/us-central1/services/" + svc,
		},
		"resource":         map[string]any{"type": "cloud_run_revision", "labels": map[string]any{"project_id": "p1"}},
		"severity":         "NOTICE",
		"timestamp":        time.Now().UTC().Format(time.RFC3339Nano),
		"receiveTimestamp": time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runEvent is the Eventarc CloudEvent for syntheticRunEntry(svc, insert).
func runEvent(t testing.TB, svc, insert string) cloudevents.Event {
	t.Helper()
	e, err := event.NewAuditLogEvent(syntheticRunEntry(t, svc, insert))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// binaryRequest is e POSTed in binary content mode (what Eventarc sends),
// written by the CloudEvents SDK's own encoder.
func binaryRequest(t testing.TB, e cloudevents.Event) *http.Request {
	t.Helper()
	return encodeRequest(t, binding.WithForceBinary(context.Background()), e)
}

// structuredRequest is e POSTed in structured content mode.
func structuredRequest(t testing.TB, e cloudevents.Event) *http.Request {
	t.Helper()
	return encodeRequest(t, binding.WithForceStructured(context.Background()), e)
}

func encodeRequest(t testing.TB, ctx context.Context, e cloudevents.Event) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), r); err != nil {
		t.Fatalf("encoding the CloudEvent: %v", err)
	}
	// WriteRequest leaves a body only io.ReadCloser-shaped; make it re-readable.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

// rawRequest POSTs body with the given headers.
func rawRequest(body []byte, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}
