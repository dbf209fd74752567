package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/event"
)

var project = core.Project{ID: "demo-project", Number: 123456789012}

// received is one request a receiver saw.
type received struct {
	id, subject, method string
	decoded             event.Decision
}

// receiver is an httptest server that answers with statuses[i] for the
// i-th request (200 after the list ends) and records what it got.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []received
	errs     []error
	srv      *httptest.Server
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	rc := &receiver{statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Parse with the CloudEvents SDK, then with the function's decoder.
		ev, err := cehttp.NewEventFromHTTPRequest(r)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		n := len(rc.got) + len(rc.errs)
		if err != nil {
			rc.errs = append(rc.errs, err)
		} else {
			d, derr := event.Decode(*ev)
			if derr != nil {
				rc.errs = append(rc.errs, derr)
			}
			rc.got = append(rc.got, received{id: ev.ID(), subject: ev.Subject(), method: fmt.Sprint(ev.Extensions()["methodname"]), decoded: d})
		}
		code := http.StatusOK
		if n < len(rc.statuses) {
			code = rc.statuses[n]
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests(t *testing.T) []received {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, err := range rc.errs {
		t.Errorf("receiver: %v", err)
	}
	return append([]received(nil), rc.got...)
}

func subjects(rs []received) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.subject)
	}
	return out
}

func triggers(t *testing.T) []eventarc.Trigger {
	t.Helper()
	ts, err := eventarc.Load()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// start builds a Deliverer over a fresh core and starts it.
func start(t *testing.T, opts delivery.Options) (*core.Core, *delivery.Deliverer) {
	t.Helper()
	return startWith(t, triggers(t), opts)
}

// startWith is start with the given trigger definitions.
func startWith(t *testing.T, ts []eventarc.Trigger, opts delivery.Options) (*core.Core, *delivery.Deliverer) {
	t.Helper()
	c := core.New("", project)
	if opts.BackoffBase == 0 {
		opts.BackoffBase, opts.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	d := delivery.New(c, ts, opts)
	d.Start(context.Background())
	t.Cleanup(d.Close)
	return c, d
}

func wait(t *testing.T, d *delivery.Deliverer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func runUpdate(c *core.Core, name string) *core.LogEntry {
	return c.Audit.Record(core.Record{
		Project: project, ServiceName: "run.googleapis.com",
		MethodName:   "google.cloud.run.v2.Services.UpdateService",
		ResourceName: "projects/demo-project/locations/us-central1/services/" + name,
		Location:     "us-central1", Permission: "run.services.update", ResourceType: "cloud_run_revision",
		Request: map[string]any{"@type": "type.googleapis.com/google.cloud.run.v2.UpdateServiceRequest"},
	})
}

func subject(name string) string {
	return "run.googleapis.com/projects/demo-project/locations/us-central1/services/" + name
}

func TestRetriesUntilAcknowledged(t *testing.T) {
	rc := newReceiver(t, http.StatusInternalServerError, http.StatusTooManyRequests)
	c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}, Concurrency: 1})
	e := runUpdate(c, "hello")
	wait(t, d)

	got := rc.requests(t)
	if len(got) != 3 {
		t.Fatalf("requests = %d, want 3 (two failures, one success)", len(got))
	}
	wantID := e.LogName + e.InsertID + fmt.Sprint(e.Timestamp.UnixMicro())
	for i, r := range got {
		if r.id != wantID {
			t.Errorf("request %d ce-id = %q, want %q", i, r.id, wantID)
		}
	}
	wantTargets := []event.Target{{Kind: event.TargetService, Project: "demo-project", Region: "us-central1", Service: "hello"}}
	if diff := cmp.Diff(wantTargets, got[2].decoded.Targets); diff != "" {
		t.Errorf("decoded targets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(delivery.Stats{Delivered: 1, Attempts: 3, Retried: 2}, d.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestTriggersFilter(t *testing.T) {
	tests := []struct {
		name                          string
		service, method, resourceName string
		want                          bool
	}{
		{"run v2 update", "run.googleapis.com", "google.cloud.run.v2.Services.UpdateService", "projects/demo-project/locations/us-central1/services/a", true},
		{"run v2 set iam policy", "run.googleapis.com", "google.cloud.run.v2.Services.SetIamPolicy", "projects/demo-project/locations/us-central1/services/a", true},
		{"run v1 replace", "run.googleapis.com", "google.cloud.run.v1.Services.ReplaceService", "namespaces/demo-project/services/a", true},
		{"compute patch", "compute.googleapis.com", "v1.compute.backendServices.patch", "projects/demo-project/global/backendServices/b", true},
		{"compute beta regional neg", "compute.googleapis.com", "beta.compute.regionNetworkEndpointGroups.insert", "projects/demo-project/regions/us-central1/networkEndpointGroups/n", true},
		{"run v2 delete", "run.googleapis.com", "google.cloud.run.v2.Services.DeleteService", "projects/demo-project/locations/us-central1/services/a", false},
		{"compute delete", "compute.googleapis.com", "v1.compute.backendServices.delete", "projects/demo-project/global/backendServices/b", false},
		{"iap set iam policy", "iap.googleapis.com", "google.cloud.iap.v1.IdentityAwareProxyAdminService.SetIamPolicy", "projects/123456789012/iap_web", false},
		{"service usage", "serviceusage.googleapis.com", "google.api.serviceusage.v1beta1.ServiceUsage.GenerateServiceIdentity", "projects/123456789012/services/iap.googleapis.com", false},
		{"right method, wrong service", "compute.googleapis.com", "google.cloud.run.v2.Services.UpdateService", "projects/demo-project/locations/us-central1/services/a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}})
			c.Audit.Record(core.Record{Project: project, ServiceName: tt.service, MethodName: tt.method, ResourceName: tt.resourceName,
				ResourceLabels: map[string]string{"location": "us-central1"}})
			wait(t, d)
			got := rc.requests(t)
			if (len(got) == 1) != tt.want || len(got) > 1 {
				t.Fatalf("deliveries = %d, want delivered=%v", len(got), tt.want)
			}
			if tt.want && got[0].method != tt.method {
				t.Errorf("ce-methodname = %q, want %q", got[0].method, tt.method)
			}
		})
	}
}

func TestDuplicates(t *testing.T) {
	rc := newReceiver(t)
	c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}, Duplicate: 1, Concurrency: 1})
	for _, n := range []string{"a", "b"} {
		runUpdate(c, n)
	}
	wait(t, d)
	got := subjects(rc.requests(t))
	want := []string{subject("a"), subject("a"), subject("b"), subject("b")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	if s := d.Stats(); s.Duplicated != 2 || s.Delivered != 4 {
		t.Errorf("stats = %+v, want 2 duplicated and 4 delivered", s)
	}
}

func TestReorder(t *testing.T) {
	rc := newReceiver(t)
	c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}, Reorder: 1, Concurrency: 1, ReorderWindow: 20 * time.Millisecond})
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		runUpdate(c, n)
	}
	wait(t, d)
	// Every delivery that finds none held back is held; the next one goes
	// first. The last has no successor and goes when its window ends.
	want := []string{subject("b"), subject("a"), subject("d"), subject("c"), subject("e")}
	if diff := cmp.Diff(want, subjects(rc.requests(t))); diff != "" {
		t.Errorf("delivery order (-want +got):\n%s", diff)
	}
	if s := d.Stats(); s.Reordered != 3 {
		t.Errorf("reordered = %d, want 3", s.Reordered)
	}
}

func TestMultipleTargets(t *testing.T) {
	r1, r2 := newReceiver(t), newReceiver(t, http.StatusServiceUnavailable)
	c, d := start(t, delivery.Options{Targets: []string{r1.srv.URL, r2.srv.URL}})
	runUpdate(c, "a")
	wait(t, d)
	if n1, n2 := len(r1.requests(t)), len(r2.requests(t)); n1 != 1 || n2 != 2 {
		t.Errorf("requests = %d and %d, want 1 and 2 (one retry for the failing target)", n1, n2)
	}
}

func TestGivingUp(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close()
	tests := []struct {
		name      string
		opts      delivery.Options
		statuses  []int
		dead      bool
		wantStats delivery.Stats
	}{
		{"max attempts", delivery.Options{MaxAttempts: 3}, []int{500, 500, 500, 500}, false,
			delivery.Stats{Attempts: 3, Retried: 2, Dropped: 1}},
		{"retention", delivery.Options{Retention: time.Millisecond, BackoffBase: 50 * time.Millisecond}, []int{500}, false,
			delivery.Stats{Attempts: 1, Dropped: 1}},
		{"transport errors", delivery.Options{MaxAttempts: 2}, nil, true,
			delivery.Stats{Attempts: 2, Retried: 1, Dropped: 1}},
		{"4xx is retried too", delivery.Options{MaxAttempts: 5}, []int{400, 404}, false,
			delivery.Stats{Attempts: 3, Retried: 2, Delivered: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.statuses...)
			tt.opts.Targets = []string{rc.srv.URL}
			if tt.dead {
				tt.opts.Targets = []string{deadURL}
			}
			c, d := start(t, tt.opts)
			runUpdate(c, "a")
			wait(t, d)
			if diff := cmp.Diff(tt.wantStats, d.Stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDelayAndPending(t *testing.T) {
	rc := newReceiver(t)
	c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond})
	begin := time.Now()
	runUpdate(c, "a")
	if d.Pending() != 1 || d.Idle() {
		t.Fatalf("pending = %d right after the write, want 1", d.Pending())
	}
	wait(t, d)
	if took := time.Since(begin); took < 50*time.Millisecond {
		t.Errorf("delivered after %v, want at least the 50ms delay", took)
	}
	if len(rc.requests(t)) != 1 || !d.Idle() {
		t.Errorf("requests = %d idle = %v, want 1 and idle", len(rc.requests(t)), d.Idle())
	}
}

func TestCloseDropsQueued(t *testing.T) {
	rc := newReceiver(t)
	c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}, Delay: time.Hour})
	runUpdate(c, "a")
	runUpdate(c, "b")
	d.Close()
	if d.Pending() != 0 {
		t.Errorf("pending after Close = %d, want 0", d.Pending())
	}
	if s := d.Stats(); s.Dropped != 2 {
		t.Errorf("dropped = %d, want 2", s.Dropped)
	}
	runUpdate(c, "c") // after Close: ignored
	if d.Pending() != 0 || len(rc.requests(t)) != 0 {
		t.Errorf("pending = %d, requests = %d after Close, want 0 and 0", d.Pending(), len(rc.requests(t)))
	}
}

func TestContextCancelStops(t *testing.T) {
	rc := newReceiver(t)
	c := core.New("", project)
	d := delivery.New(c, triggers(t), delivery.Options{Targets: []string{rc.srv.URL}, Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	d.Start(ctx)
	runUpdate(c, "a")
	cancel()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := d.Wait(wctx); err != nil {
		t.Fatalf("Wait after cancel: %v", err)
	}
	d.Close() // idempotent
}

func TestNotStartedDeliversNothing(t *testing.T) {
	rc := newReceiver(t)
	c := core.New("", project)
	d := delivery.New(c, triggers(t), delivery.Options{Targets: []string{rc.srv.URL}})
	runUpdate(c, "a")
	if d.Pending() != 0 {
		t.Errorf("pending = %d before Start, want 0", d.Pending())
	}
	d.Start(context.Background())
	defer d.Close()
	runUpdate(c, "b")
	wait(t, d)
	if diff := cmp.Diff([]string{subject("b")}, subjects(rc.requests(t))); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestRegion(t *testing.T) {
	// Regional triggers: the definitions with every audit-log trigger in
	// the function's region, except the global Compute collections in
	// "global". Each receives only the entries of its own location.
	regional := triggers(t)
	for i, tr := range regional {
		if tr.EventType == eventarc.AuditLogWritten {
			regional[i].Location = "region"
			if strings.Contains(tr.MethodName, "compute.backendServices.") {
				regional[i].Location = "global"
			}
		}
	}
	tests := []struct {
		name string
		rec  core.Record
		want bool
	}{
		{"run in region", core.Record{ServiceName: "run.googleapis.com", MethodName: "google.cloud.run.v2.Services.UpdateService",
			ResourceName: "projects/demo-project/locations/us-central1/services/a", Location: "us-central1"}, true},
		{"run in other region", core.Record{ServiceName: "run.googleapis.com", MethodName: "google.cloud.run.v2.Services.UpdateService",
			ResourceName: "projects/demo-project/locations/europe-west1/services/a", Location: "europe-west1"}, false},
		{"run v1 by resource label", core.Record{ServiceName: "run.googleapis.com", MethodName: "google.cloud.run.v1.Services.ReplaceService",
			ResourceName: "namespaces/demo-project/services/a", ResourceLabels: map[string]string{"location": "europe-west1"}}, false},
		{"global backend via global trigger", core.Record{ServiceName: "compute.googleapis.com", MethodName: "v1.compute.backendServices.patch",
			ResourceName: "projects/demo-project/global/backendServices/b"}, true},
		{"regional backend in region", core.Record{ServiceName: "compute.googleapis.com", MethodName: "v1.compute.regionBackendServices.patch",
			ResourceName: "projects/demo-project/regions/us-central1/backendServices/b"}, true},
		{"regional backend elsewhere", core.Record{ServiceName: "compute.googleapis.com", MethodName: "v1.compute.regionBackendServices.patch",
			ResourceName: "projects/demo-project/regions/asia-east1/backendServices/b", Location: "asia-east1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			c, d := startWith(t, regional, delivery.Options{Targets: []string{rc.srv.URL}, Region: "us-central1"})
			tt.rec.Project = project
			c.Audit.Record(tt.rec)
			wait(t, d)
			if got := len(rc.requests(t)) == 1; got != tt.want {
				t.Errorf("regional triggers: delivered = %v, want %v", got, tt.want)
			}
			// The deployed definitions: every audit-log trigger is
			// "global", which receives the entries of every location.
			rc2 := newReceiver(t)
			c2, d2 := start(t, delivery.Options{Targets: []string{rc2.srv.URL}, Region: "us-central1"})
			c2.Audit.Record(tt.rec)
			wait(t, d2)
			if got := len(rc2.requests(t)); got != 1 {
				t.Errorf("deployed (global) triggers: %d deliveries, want 1", got)
			}
		})
	}
}

// An entry whose location the stand-in cannot tell is no entry of the
// function's region: a "region" trigger does not receive it, a "global"
// one does (Eventarc: global triggers receive every location).
func TestRegionUnknownLocation(t *testing.T) {
	rec := core.Record{Project: project, ServiceName: "iap.googleapis.com", MethodName: "SetIamPolicy",
		ResourceName: "projects/123456789012/iap_web/compute/services/b"}
	for _, tc := range []struct {
		location string
		want     int
	}{{"region", 0}, {"global", 1}} {
		t.Run(tc.location, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				mu.Unlock()
			}))
			t.Cleanup(srv.Close)
			ts := []eventarc.Trigger{{Name: "iap", Location: tc.location, EventType: eventarc.AuditLogWritten,
				ServiceName: rec.ServiceName, MethodName: rec.MethodName}}
			c, d := startWith(t, ts, delivery.Options{Targets: []string{srv.URL}, Region: "us-central1"})
			c.Audit.Record(rec)
			wait(t, d)
			mu.Lock()
			defer mu.Unlock()
			if n != tc.want {
				t.Errorf("%s trigger: %d deliveries of an entry with no location, want %d", tc.location, n, tc.want)
			}
		})
	}
}

func TestConcurrentWritersRace(t *testing.T) {
	rc := newReceiver(t)
	c, d := start(t, delivery.Options{Targets: []string{rc.srv.URL}, Duplicate: 0.3, Reorder: 0.3, ReorderWindow: 10 * time.Millisecond, Concurrency: 4})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				runUpdate(c, fmt.Sprintf("s-%d-%d", i, j))
			}
		}()
	}
	wg.Wait()
	wait(t, d)
	s := d.Stats()
	if got := int64(len(rc.requests(t))); got != 80+s.Duplicated || s.Delivered != got {
		t.Errorf("requests = %d, stats = %+v; want 80 + duplicated, all delivered", got, s)
	}
}
