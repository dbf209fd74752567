package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/internal/auditsamples"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

func TestHTTPHandlerAnswers(t *testing.T) {
	t.Parallel()
	const svc = "projects/p1/locations/us-central1/services/web"
	good := runEvent(t, "web", "synthetic-good")
	// Binary mode, valid attributes, but data that is not a LogEntry:
	// decoded by FromHTTP, judged malformed by Handle.
	badData := func() *http.Request {
		return rawRequest([]byte(`{"protoPayload": 7`), map[string]string{
			"ce-specversion": "1.0", "ce-id": "synthetic-bad-data", "ce-source": "//cloudaudit.googleapis.com/projects/p1/logs/activity",
			"ce-type": event.AuditLogWritten, "Content-Type": "application/json",
		})
	}
	tests := []struct {
		name     string
		req      *http.Request
		rec      *fakeReconciler
		pubErr   error
		getErr   error
		wantCode int
		// wantOutcomes are the outcome kinds published, in order.
		wantOutcomes []outcome.Kind
		wantEventID  string // of every outcome
		wantRecon    []string
	}{
		{
			name: "binary mode, compliant", req: binaryRequest(t, good), rec: &fakeReconciler{},
			wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Compliant}, wantEventID: good.ID(), wantRecon: []string{svc},
		},
		{
			name: "structured mode, compliant", req: structuredRequest(t, good), rec: &fakeReconciler{},
			wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Compliant}, wantEventID: good.ID(), wantRecon: []string{svc},
		},
		{
			name: "transient failure: 500, nothing published", req: binaryRequest(t, good),
			rec:      &fakeReconciler{err: fmt.Errorf("%w: quota", iapsetup.ErrTransient)},
			wantCode: http.StatusInternalServerError, wantRecon: []string{svc},
		},
		{
			name: "permanent failure: failed outcome, acknowledged", req: binaryRequest(t, good),
			rec:      &fakeReconciler{err: fmt.Errorf("%w: permission denied", iapsetup.ErrPermanent)},
			wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Failed}, wantEventID: good.ID(), wantRecon: []string{svc},
		},
		{
			name: "outcome cannot be published: 500", req: binaryRequest(t, good), rec: &fakeReconciler{}, pubErr: errors.New("pubsub down"),
			wantCode: http.StatusInternalServerError, wantRecon: []string{svc},
		},
		{
			name: "malformed data: rejected, acknowledged", req: badData(), rec: &fakeReconciler{},
			wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Rejected}, wantEventID: "synthetic-bad-data",
		},
		{
			name: "undecodable structured event: rejected, acknowledged",
			req: rawRequest([]byte(`{"specversion":"1.0","id":"synthetic-bad-time","source":"s","type":"t","time":"yesterday"}`),
				map[string]string{"Content-Type": "application/cloudevents+json"}),
			rec: &fakeReconciler{}, wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Rejected}, wantEventID: "synthetic-bad-time",
		},
		{
			name: "structured event that is not JSON: rejected, acknowledged",
			req:  rawRequest([]byte(`{"specversion":`), map[string]string{"Content-Type": "application/cloudevents+json; charset=utf-8"}),
			rec:  &fakeReconciler{}, wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Rejected}, wantEventID: "",
		},
		{
			name: "body over the limit: rejected, acknowledged",
			req: rawRequest(bytes.Repeat([]byte(" "), MaxRequestBytes+1), map[string]string{
				"ce-specversion": "1.0", "ce-id": "synthetic-huge", "ce-source": "s", "ce-type": event.AuditLogWritten, "Content-Type": "application/json",
			}),
			rec: &fakeReconciler{}, wantCode: http.StatusNoContent, wantOutcomes: []outcome.Kind{outcome.Rejected}, wantEventID: "synthetic-huge",
		},
		{
			name: "rejected outcome cannot be published: 500", req: badData(), rec: &fakeReconciler{}, pubErr: errors.New("pubsub down"),
			wantCode: http.StatusInternalServerError,
		},
		{
			name: "not a CloudEvent: 400, nothing published",
			req:  rawRequest([]byte(`{"hello":"world"}`), map[string]string{"Content-Type": "application/json"}),
			rec:  &fakeReconciler{}, wantCode: http.StatusBadRequest,
		},
		{
			name: "GET: 405", req: httptest.NewRequest(http.MethodGet, "/", nil), rec: &fakeReconciler{},
			wantCode: http.StatusMethodNotAllowed,
		},
		{
			name: "misconfigured function: 500", req: binaryRequest(t, good), rec: &fakeReconciler{}, getErr: errors.New("IAPGUARD_OUTCOMES_TOPIC is not set"),
			wantCode: http.StatusInternalServerError,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub := &fakePublisher{err: tc.pubErr}
			h := NewHandler(testConfig(DefaultMaxConcurrent), tc.rec, pub, nil)
			srv := LazyHTTPHandler(func() (*Handler, error) {
				if tc.getErr != nil {
					return nil, tc.getErr
				}
				return h, nil
			})
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, tc.req)
			if w.Code != tc.wantCode {
				t.Errorf("status = %d (%q), want %d", w.Code, w.Body.String(), tc.wantCode)
			}
			var kinds []outcome.Kind
			for _, m := range pub.all() {
				kinds = append(kinds, m.Outcome)
				if m.Trigger.EventID != tc.wantEventID {
					t.Errorf("outcome for event %q, want %q", m.Trigger.EventID, tc.wantEventID)
				}
			}
			if d := cmp.Diff(tc.wantOutcomes, kinds); d != "" {
				t.Errorf("outcomes (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantRecon, tc.rec.services()); d != "" {
				t.Errorf("reconciled (-want +got):\n%s", d)
			}
		})
	}
}

// TestHTTPHandlerRealSamples: the real Eventarc delivery
// (cloudevent-structured-audit-storage-objects-create.json) goes through the
// HTTP path in both content modes, and the real Cloud Run LogEntry, wrapped
// as Eventarc wraps it, reaches the reconciler.
func TestHTTPHandlerRealSamples(t *testing.T) {
	t.Parallel()
	structured := auditsamples.Read(t, "cloudevent-structured-audit-storage-objects-create.json")
	var real cloudevents.Event
	if err := json.Unmarshal(structured, &real); err != nil {
		t.Fatalf("reading the real CloudEvent: %v", err)
	}
	runEv, err := event.NewAuditLogEvent(auditsamples.Read(t, "run-v1-create-service.json"))
	if err != nil {
		t.Fatal(err)
	}
	const storageSkip = `not a Cloud Run or Compute event (serviceName "storage.googleapis.com")`
	tests := []struct {
		name       string
		req        *http.Request
		wantID     string
		wantKind   outcome.Kind
		wantReason string
		wantRecon  []string
	}{
		{
			name:   "Eventarc structured delivery as recorded",
			req:    rawRequest(structured, map[string]string{"Content-Type": "application/cloudevents+json; charset=utf-8"}),
			wantID: real.ID(), wantKind: outcome.Skipped, wantReason: storageSkip,
		},
		{
			name:   "the same event in binary mode",
			req:    binaryRequest(t, real),
			wantID: real.ID(), wantKind: outcome.Skipped, wantReason: storageSkip,
		},
		{
			name:   "Cloud Run v1 CreateService entry in binary mode",
			req:    binaryRequest(t, runEv),
			wantID: runEv.ID(), wantKind: outcome.Compliant,
			wantRecon: []string{"projects/some-project/locations/us-west1/services/cloudrun-exfil"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, pub := &fakeReconciler{}, &fakePublisher{}
			cfg := testConfig(DefaultMaxConcurrent)
			cfg.Projects = []string{"*"}
			w := httptest.NewRecorder()
			HTTPHandler(NewHandler(cfg, rec, pub, nil)).ServeHTTP(w, tc.req)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status = %d (%q), want 204", w.Code, w.Body.String())
			}
			ms := pub.forEvent(tc.wantID)
			if len(ms) != 1 || ms[0].Outcome != tc.wantKind || (tc.wantReason != "" && ms[0].Reason != tc.wantReason) {
				t.Errorf("outcomes for %s = %+v, want one %s (reason %q)", tc.wantID, ms, tc.wantKind, tc.wantReason)
			}
			if d := cmp.Diff(tc.wantRecon, rec.services()); d != "" {
				t.Errorf("reconciled (-want +got):\n%s", d)
			}
		})
	}
}

// TestHTTPHandlerAnswersConcurrentDeliveries is the regression test for the
// CloudEvents SDK receive-handler stall (docs/security.md G-3). Live
// deliveries race with deliveries whose clients give up almost at once (as
// Eventarc's attempts time out). The SDK's handler pairs requests with
// consumer goroutines over one shared channel, so there a live event is
// handled under an abandoned request's context (answered 500) or waits for a
// consumer that never comes (no answer), and abandoned requests' handlers
// never return. Every live delivery must be acknowledged, and every handler
// return, well before the generous deadline.
func TestHTTPHandlerAnswersConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	const live, abandoned = 200, 200
	rec, pub := &fakeReconciler{delay: 10 * time.Millisecond}, &fakePublisher{}
	srv := HTTPHandler(NewHandler(testConfig(0), rec, pub, nil))

	reqs := make([]*http.Request, live+abandoned)
	for i := range reqs {
		reqs[i] = binaryRequest(t, runEvent(t, fmt.Sprintf("svc-%d", i), fmt.Sprintf("synthetic-%d", i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	codes := make([]atomic.Int32, live)
	var answered, returned atomic.Int32
	var liveWG, abandonedWG sync.WaitGroup
	for i, r := range reqs {
		if i >= live {
			abandonedWG.Go(func() {
				actx, acancel := context.WithTimeout(ctx, time.Duration(i%4)*time.Millisecond)
				defer acancel()
				srv.ServeHTTP(httptest.NewRecorder(), r.WithContext(actx))
				returned.Add(1)
			})
			continue
		}
		liveWG.Go(func() {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r.WithContext(ctx))
			codes[i].Store(int32(w.Code))
			answered.Add(1)
		})
	}
	wait := func(what string, wg *sync.WaitGroup, n int, count *atomic.Int32) {
		t.Helper()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatalf("%d of %d %s deliveries still unanswered after 30s: a delivery stalled", n-int(count.Load()), n, what)
		}
	}
	wait("live", &liveWG, live, &answered)
	var bad []string
	for i := range live {
		if c := codes[i].Load(); c < 200 || c > 299 {
			bad = append(bad, fmt.Sprintf("svc-%d: %d", i, c))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d live deliveries not answered 204: %s", len(bad), strings.Join(bad, ", "))
	}
	for i := range live {
		if ms := pub.forEvent(reqs[i].Header.Get("ce-id")); len(ms) != 1 || ms[0].Outcome != outcome.Compliant {
			t.Errorf("svc-%d: outcomes %+v, want one compliant", i, ms)
		}
	}
	// Abandoned requests end too (their handling sees the cancelled context).
	wait("abandoned", &abandonedWG, abandoned, &returned)
}

// TestHTTPHandlerOverTCP fires 200 deliveries in parallel at the handler
// behind a real HTTP server, as Eventarc would, and wants every one
// acknowledged.
func TestHTTPHandlerOverTCP(t *testing.T) {
	t.Parallel()
	const n = 200
	rec, pub := &fakeReconciler{delay: 5 * time.Millisecond}, &fakePublisher{}
	ts := httptest.NewServer(HTTPHandler(NewHandler(testConfig(DefaultMaxConcurrent), rec, pub, nil)))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	reqs := make([]*http.Request, n)
	for i := range reqs {
		r := binaryRequest(t, runEvent(t, fmt.Sprintf("svc-%d", i), fmt.Sprintf("synthetic-tcp-%d", i)))
		out, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL, r.Body)
		if err != nil {
			t.Fatal(err)
		}
		out.Header = r.Header
		reqs[i] = out
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			resp, err := hc.Do(r)
			if err != nil {
				errs[i] = err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				errs[i] = fmt.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("deliveries not acknowledged: %v", err)
	}
	if got := len(pub.all()); got != n {
		t.Errorf("%d outcomes, want %d", got, n)
	}
}

// TestMisconfiguredEventLogsJSON: while the configuration is invalid every
// event is answered 500 (Eventarc keeps it) and logged as one JSON ERROR
// entry naming every problem, not a plain-text line.
func TestMisconfiguredEventLogsJSON(t *testing.T) {
	var buf bytes.Buffer
	old := misconfigLog
	misconfigLog = logx.New(&buf, slog.LevelDebug)
	defer func() { misconfigLog = old }()
	_, cfgErr := ConfigFromEnv(func(string) string { return "" })
	srv := LazyHTTPHandler(func() (*Handler, error) { return nil, cfgErr })
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, binaryRequest(t, runEvent(t, "web", "synthetic-good")))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", w.Code)
	}
	var entry struct {
		Severity string   `json:"severity"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
		t.Fatalf("log is not one JSON entry: %v: %q", err, buf.String())
	}
	if entry.Severity != "ERROR" || len(entry.Problems) != 2 {
		t.Errorf("entry = %+v, want ERROR with 2 problems: %s", entry, buf.String())
	}
}

// TestMalformedReasonSaysItOnce: a malformed event's rejected outcome says
// "malformed event:" once, not "malformed event: malformed event: …".
func TestMalformedReasonSaysItOnce(t *testing.T) {
	e := cloudevents.New()
	e.SetID("bad-1")
	e.SetSource("//cloudaudit.googleapis.com/projects/p1/logs/activity")
	e.SetType(event.AuditLogWritten)
	if err := e.SetData("application/json", []byte(`{"protoPayload": 7}`)); err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{}
	h := NewHandler(testConfig(DefaultMaxConcurrent), &fakeReconciler{}, pub, nil)
	if err := h.Handle(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	ms := pub.all()
	if len(ms) != 1 || ms[0].Outcome != outcome.Rejected {
		t.Fatalf("outcomes = %v, want one rejected", ms)
	}
	if r := ms[0].Reason; !strings.HasPrefix(r, "malformed event: ") || strings.Count(r, "malformed event") != 1 {
		t.Errorf("reason = %q, want \"malformed event: …\" once", r)
	}
}
