package core_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/core"
)

// outcome is what one Begin call produced: its gRPC code (OK when served).
func outcome(t *testing.T, c *core.Core, method string) codes.Code {
	t.Helper()
	err := c.Begin(context.Background(), method)
	if err == nil {
		return codes.OK
	}
	var e *core.Error
	if !errors.As(err, &e) {
		t.Fatalf("Begin(%s) = %T %v, want *core.Error", method, err, err)
	}
	if !e.Injected {
		t.Errorf("Begin(%s) error %v not marked Injected", method, err)
	}
	return status.Code(err)
}

type latencyRule struct {
	pattern string
	d       time.Duration
}

func TestLatency(t *testing.T) {
	const d = 100 * time.Millisecond
	tests := []struct {
		name   string
		rules  []latencyRule
		method string
		slow   bool
	}{
		{name: "matching glob delays", rules: []latencyRule{{"compute.*", d}}, method: "compute.backendServices.get", slow: true},
		{name: "other API not delayed", rules: []latencyRule{{"compute.*", d}}, method: "google.cloud.run.v2.Services.GetService"},
		{name: "exact key delays", rules: []latencyRule{{"google.cloud.run.v2.Services.GetService", d}}, method: "google.cloud.run.v2.Services.GetService", slow: true},
		{name: "later zero rule wins", rules: []latencyRule{{"*", d}, {"compute.*", 0}}, method: "compute.urlMaps.get"},
		{name: "later rule for other methods leaves earlier one", rules: []latencyRule{{"*", d}, {"compute.*", 0}}, method: "iap.getIamPolicy", slow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := core.New("")
			for _, r := range tt.rules {
				if err := c.Faults.SetLatency(r.pattern, r.d); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if err := c.Begin(context.Background(), tt.method); err != nil {
				t.Fatalf("Begin: %v", err)
			}
			took := time.Since(start)
			if tt.slow && took < d {
				t.Errorf("Begin took %s, want at least %s", took, d)
			}
			if !tt.slow && took >= d {
				t.Errorf("Begin took %s, want no injected delay", took)
			}
			if f := c.Stats.Snapshot().Faults[tt.method]; f != 0 {
				t.Errorf("latency alone counted %d faults", f)
			}
		})
	}
}

func TestLatencyEndsWithContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want codes.Code
	}{
		{name: "cancelled", want: codes.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}},
		{name: "deadline", want: codes.DeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := core.New("")
			if err := c.Faults.SetLatency("*", time.Minute); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			err := c.Begin(ctx, "compute.backendServices.get")
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("Begin returned after %s, want soon after the context ended", took)
			}
			if got := status.Code(err); got != tt.want {
				t.Errorf("Begin = %v (code %v), want %v", err, got, tt.want)
			}
			snap := c.Stats.Snapshot()
			if snap.Calls["compute.backendServices.get"] != 1 || snap.Faults["compute.backendServices.get"] != 1 {
				t.Errorf("stats = %+v, want one call answered by a fault", snap)
			}
		})
	}
}

// draws runs n calls and returns which failed.
func draws(t *testing.T, seed uint64, rate float64, n int) []bool {
	t.Helper()
	c := core.New("")
	c.Faults.Seed(seed)
	if err := c.Faults.SetErrorRate("google.cloud.run.v2.*", rate, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	out := make([]bool, n)
	for i := range out {
		switch code := outcome(t, c, "google.cloud.run.v2.Services.GetService"); code {
		case codes.OK:
		case codes.Unavailable:
			out[i] = true
		default:
			t.Fatalf("call %d: code %v, want OK or UNAVAILABLE", i, code)
		}
		// Unmatched methods neither fail nor consume draws.
		if code := outcome(t, c, "compute.backendServices.get"); code != codes.OK {
			t.Fatalf("unmatched method failed with %v", code)
		}
	}
	return out
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestErrorRate(t *testing.T) {
	const n = 2000
	tests := []struct {
		name     string
		rate     float64
		min, max int
	}{
		{name: "never", rate: 0, min: 0, max: 0},
		{name: "always", rate: 1, min: n, max: n},
		{name: "thirty percent", rate: 0.3, min: n * 25 / 100, max: n * 35 / 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := count(draws(t, 42, tt.rate, n))
			if got < tt.min || got > tt.max {
				t.Errorf("%d of %d calls failed, want %d..%d", got, n, tt.min, tt.max)
			}
		})
	}
}

func TestErrorRateSeedIsReproducible(t *testing.T) {
	a, b := draws(t, 7, 0.5, 300), draws(t, 7, 0.5, 300)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different failures (-first +second):\n%s", diff)
	}
	if c := draws(t, 8, 0.5, 300); cmp.Equal(a, c) {
		t.Error("seeds 7 and 8 produced the same 300 draws")
	}
}

func TestFailNext(t *testing.T) {
	type rule struct {
		pattern string
		n       int
		code    codes.Code
	}
	const get, patch = "compute.backendServices.get", "compute.backendServices.patch"
	tests := []struct {
		name  string
		rules []rule
		calls []string
		want  []codes.Code
	}{
		{
			name:  "counts down only on matching calls",
			rules: []rule{{get, 2, codes.Unavailable}},
			calls: []string{get, patch, get, get},
			want:  []codes.Code{codes.Unavailable, codes.OK, codes.Unavailable, codes.OK},
		},
		{
			name:  "earlier rule first, then the next",
			rules: []rule{{"compute.*", 1, codes.Internal}, {"*", 1, codes.PermissionDenied}},
			calls: []string{get, get, get},
			want:  []codes.Code{codes.Internal, codes.PermissionDenied, codes.OK},
		},
		{
			name:  "rules add up for the same pattern",
			rules: []rule{{patch, 1, codes.Aborted}, {patch, 1, codes.ResourceExhausted}},
			calls: []string{patch, patch, patch},
			want:  []codes.Code{codes.Aborted, codes.ResourceExhausted, codes.OK},
		},
		{
			name:  "zero count injects nothing",
			rules: []rule{{"*", 0, codes.Unavailable}},
			calls: []string{get},
			want:  []codes.Code{codes.OK},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := core.New("")
			for _, r := range tt.rules {
				if err := c.Faults.FailNext(r.pattern, r.n, r.code); err != nil {
					t.Fatal(err)
				}
			}
			var got []codes.Code
			for _, m := range tt.calls {
				got = append(got, outcome(t, c, m))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("codes (-want +got):\n%s", diff)
			}
			var faults int64
			for _, code := range tt.want {
				if code != codes.OK {
					faults++
				}
			}
			snap := c.Stats.Snapshot()
			if snap.Total() != int64(len(tt.calls)) {
				t.Errorf("counted %d calls, want %d", snap.Total(), len(tt.calls))
			}
			var gotFaults int64
			for _, v := range snap.Faults {
				gotFaults += v
			}
			if gotFaults != faults {
				t.Errorf("counted %d faults, want %d", gotFaults, faults)
			}
		})
	}
}

func TestInjectedErrorMessages(t *testing.T) {
	tests := []struct {
		code codes.Code
		want string
	}{
		{codes.Unavailable, "The service is currently unavailable."},
		{codes.Internal, "Internal error encountered."},
		{codes.Aborted, "There were concurrent policy changes"},
		{codes.PermissionDenied, "compute.urlMaps.get"},
		{codes.DeadlineExceeded, "Deadline exceeded."},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			c := core.New("")
			if err := c.Faults.FailNext("*", 1, tt.code); err != nil {
				t.Fatal(err)
			}
			err := c.Begin(context.Background(), "compute.urlMaps.get")
			var e *core.Error
			if !errors.As(err, &e) {
				t.Fatalf("Begin = %v, want *core.Error", err)
			}
			if e.Code != tt.code || !e.Injected || !strings.Contains(e.Message, tt.want) {
				t.Errorf("error = %+v, want code %v, Injected, message containing %q", e, tt.code, tt.want)
			}
		})
	}
}

func TestForceRaces(t *testing.T) {
	const patch, update = "compute.backendServices.patch", "compute.backendServices.update"
	c := core.New("")
	if err := c.Faults.ForceRaces(patch, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Faults.ForceRaces("google.cloud.run.v2.Services.*", 1); err != nil {
		t.Fatal(err)
	}
	// Races are only taken through TakeRace, never by Begin.
	if err := c.Begin(context.Background(), patch); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	calls := []string{patch, update, patch, patch, "google.cloud.run.v2.Services.UpdateService", "google.cloud.run.v2.Services.SetIamPolicy"}
	want := []bool{true, false, true, false, true, false}
	var got []bool
	for _, m := range calls {
		got = append(got, c.Faults.TakeRace(m))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TakeRace over %v (-want +got):\n%s", calls, diff)
	}
}

func TestQuota(t *testing.T) {
	const read, write = "compute.backendServices.get", "compute.backendServices.patch"
	c := core.New("")
	c.Faults.SetQuota("compute", core.Read, 3)
	for i := range 3 {
		if code := outcome(t, c, read); code != codes.OK {
			t.Fatalf("read %d within quota: %v", i, code)
		}
	}
	err := c.Begin(context.Background(), read)
	var e *core.Error
	if !errors.As(err, &e) {
		t.Fatalf("4th read = %v, want quota error", err)
	}
	// Compute answers a rate quota with 403 rateLimitExceeded, as Google
	// documents; 429 RESOURCE_EXHAUSTED on request.
	if e.Code != codes.PermissionDenied || e.Status() != 403 || e.Reason != "rateLimitExceeded" || !e.Injected ||
		!strings.Contains(e.Message, "'Read requests per minute'") || !strings.Contains(e.Message, "compute.googleapis.com") {
		t.Errorf("quota error = %+v", e)
	}
	if err := c.Faults.SetComputeQuotaStatus(429); err != nil {
		t.Fatal(err)
	}
	if err := c.Begin(context.Background(), read); !errors.As(err, &e) || e.Code != codes.ResourceExhausted || e.Status() != 429 || e.Reason != "rateLimitExceeded" {
		t.Errorf("quota error with status 429 = %v", err)
	}
	if err := c.Faults.SetComputeQuotaStatus(500); err == nil {
		t.Error("SetComputeQuotaStatus(500) accepted")
	}
	// Other classes and APIs have their own (absent) quotas.
	for _, m := range []string{write, "google.cloud.run.v2.Services.GetService", "iap.getIamPolicy"} {
		if code := outcome(t, c, m); code != codes.OK {
			t.Errorf("%s: %v, want OK (not under the compute read quota)", m, code)
		}
	}
	// Zero removes the quota.
	c.Faults.SetQuota("compute", core.Read, 0)
	if code := outcome(t, c, read); code != codes.OK {
		t.Errorf("read after removing the quota: %v", code)
	}

	c.Faults.SetQuota("run", core.Write, 1)
	if code := outcome(t, c, "google.cloud.run.v2.Services.UpdateService"); code != codes.OK {
		t.Errorf("first run write: %v", code)
	}
	err = c.Begin(context.Background(), "google.cloud.run.v2.Services.DeleteService")
	if !errors.As(err, &e) || e.Code != codes.ResourceExhausted || !strings.Contains(e.Message, "'Write requests per minute'") || !strings.Contains(e.Message, "run.googleapis.com") {
		t.Errorf("second run write = %v, want the run write quota exhausted", err)
	}
	if code := outcome(t, c, "google.longrunning.Operations.GetOperation"); code != codes.OK {
		t.Errorf("run read under a write quota: %v", code)
	}
}

func TestQuotaRateRefills(t *testing.T) {
	const m = "iap.setIamPolicy"
	c := core.New("")
	c.Faults.SetQuotaRate("iap", core.Write, 5, 2) // one token every 200 ms
	got := []codes.Code{outcome(t, c, m), outcome(t, c, m), outcome(t, c, m)}
	if diff := cmp.Diff([]codes.Code{codes.OK, codes.OK, codes.ResourceExhausted}, got); diff != "" {
		t.Fatalf("burst of 2 (-want +got):\n%s", diff)
	}
	time.Sleep(500 * time.Millisecond) // refills the whole burst, no more
	got = []codes.Code{outcome(t, c, m), outcome(t, c, m)}
	if diff := cmp.Diff([]codes.Code{codes.OK, codes.OK}, got); diff != "" {
		t.Errorf("after refill (-want +got):\n%s", diff)
	}
	if snap := c.Stats.Snapshot(); snap.Calls[m] != 5 || snap.Faults[m] < 1 {
		t.Errorf("stats = %+v, want 5 calls and at least one fault", snap)
	}
}

func TestInvalidFaultsRejected(t *testing.T) {
	tests := []struct {
		name  string
		apply func(f *core.Faults) error
	}{
		{"latency bad glob", func(f *core.Faults) error { return f.SetLatency("compute.[", time.Second) }},
		{"error rate bad glob", func(f *core.Faults) error { return f.SetErrorRate("[", 0.5, codes.Unavailable) }},
		{"error rate negative", func(f *core.Faults) error { return f.SetErrorRate("*", -0.1, codes.Unavailable) }},
		{"error rate above one", func(f *core.Faults) error { return f.SetErrorRate("*", 1.5, codes.Unavailable) }},
		{"error rate code OK", func(f *core.Faults) error { return f.SetErrorRate("*", 1, codes.OK) }},
		{"fail next bad glob", func(f *core.Faults) error { return f.FailNext("a\\", 1, codes.Internal) }},
		{"fail next code OK", func(f *core.Faults) error { return f.FailNext("*", 1, codes.OK) }},
		{"races bad glob", func(f *core.Faults) error { return f.ForceRaces("[]", 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := core.New("")
			if err := tt.apply(c.Faults); err == nil {
				t.Fatal("accepted")
			}
			// Nothing was installed.
			const m = "compute.backendServices.get"
			start := time.Now()
			if code := outcome(t, c, m); code != codes.OK {
				t.Errorf("call after a rejected rule: %v", code)
			}
			if time.Since(start) > 500*time.Millisecond || c.Faults.TakeRace(m) {
				t.Error("a rejected rule took effect")
			}
		})
	}
}

func TestReset(t *testing.T) {
	const m = "compute.backendServices.patch"
	c := core.New("")
	for _, err := range []error{
		c.Faults.SetLatency("*", time.Minute),
		c.Faults.SetErrorRate("*", 1, codes.Internal),
		c.Faults.FailNext("*", 5, codes.Unavailable),
		c.Faults.ForceRaces("*", 5),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.Faults.SetQuota("compute", core.Write, 1)
	c.Faults.SetQuotaRate("run", core.Read, 0.001, 0)
	c.Faults.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		for _, m := range []string{m, "google.cloud.run.v2.Services.GetService"} {
			if err := c.Begin(ctx, m); err != nil {
				t.Fatalf("call %d of %s after Reset: %v", i, m, err)
			}
		}
	}
	if c.Faults.TakeRace(m) {
		t.Error("race still forced after Reset")
	}
}

func TestClassOf(t *testing.T) {
	tests := []struct {
		method string
		want   core.Class
	}{
		{"google.cloud.run.v2.Services.GetService", core.Read},
		{"google.cloud.run.v2.Services.ListServices", core.Read},
		{"google.cloud.run.v2.Services.GetIamPolicy", core.Read},
		{"google.cloud.run.v2.Services.TestIamPermissions", core.Read},
		{"google.cloud.run.v2.Services.CreateService", core.Write},
		{"google.cloud.run.v2.Services.UpdateService", core.Write},
		{"google.cloud.run.v2.Services.DeleteService", core.Write},
		{"google.cloud.run.v2.Services.SetIamPolicy", core.Write},
		{"google.longrunning.Operations.GetOperation", core.Read},
		{"google.longrunning.Operations.WaitOperation", core.Read},
		{"google.longrunning.Operations.ListOperations", core.Read},
		{"google.longrunning.Operations.DeleteOperation", core.Write},
		{"compute.backendServices.get", core.Read},
		{"compute.backendServices.list", core.Read},
		{"compute.backendServices.aggregatedList", core.Read},
		{"compute.backendServices.insert", core.Write},
		{"compute.backendServices.patch", core.Write},
		{"compute.backendServices.update", core.Write},
		{"compute.backendServices.delete", core.Write},
		{"compute.regionNetworkEndpointGroups.list", core.Read},
		{"compute.globalOperations.wait", core.Read},
		{"compute.regionOperations.get", core.Read},
		{"serviceusage.services.generateServiceIdentity", core.Write},
		{"serviceusage.operations.get", core.Read},
		{"iap.getIamPolicy", core.Read},
		{"iap.setIamPolicy", core.Write},
		{"google.cloud.resourcemanager.v3.Projects.SearchProjects", core.Read},
		{"google.cloud.resourcemanager.v3.Folders.ListFolders", core.Read},
		{"iap.testIamPermissions", core.Read},
		{"google.pubsub.v1.Publisher.Publish", core.Write},
		{"google.pubsub.v1.Publisher.CreateTopic", core.Write},
		{"google.pubsub.v1.Subscriber.Pull", core.Read},
		{"google.pubsub.v1.Subscriber.StreamingPull", core.Read},
		{"google.pubsub.v1.Subscriber.Acknowledge", core.Read},
		{"google.pubsub.v1.Subscriber.ModifyAckDeadline", core.Read},
		{"google.logging.v2.LoggingServiceV2.ListLogEntries", core.Read},
		{"google.logging.v2.LoggingServiceV2.WriteLogEntries", core.Write},
		{"nodots", core.Write},
		{"", core.Write},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			if got := core.ClassOf(tt.method); got != tt.want {
				t.Errorf("ClassOf(%q) = %v, want %v", tt.method, got, tt.want)
			}
		})
	}
}

func TestAPIOf(t *testing.T) {
	tests := []struct {
		method, want string
	}{
		{"google.cloud.run.v2.Services.GetService", "run"},
		{"google.cloud.run.v2.Services.SetIamPolicy", "run"},
		{"google.longrunning.Operations.WaitOperation", "run"},
		{"compute.backendServices.patch", "compute"},
		{"compute.globalOperations.get", "compute"},
		{"serviceusage.services.generateServiceIdentity", "serviceusage"},
		{"serviceusage.operations.get", "serviceusage"},
		{"iap.setIamPolicy", "iap"},
		{"google.pubsub.v1.Publisher.Publish", "pubsub"},
		{"google.pubsub.v1.SchemaService.GetSchema", "pubsub"},
		{"google.logging.v2.LoggingServiceV2.ListLogEntries", "logging"},
		{"google.cloud.resourcemanager.v3.Projects.SearchProjects", "cloudresourcemanager"},
		{"google.cloud.resourcemanager.v3.Folders.GetFolder", "cloudresourcemanager"},
		{"nodots", "nodots"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			if got := core.APIOf(tt.method); got != tt.want {
				t.Errorf("APIOf(%q) = %q, want %q", tt.method, got, tt.want)
			}
		})
	}
}

func TestClassString(t *testing.T) {
	if core.Read.String() != "read" || core.Write.String() != "write" {
		t.Errorf("Class strings = %q, %q", core.Read, core.Write)
	}
}

// TestBeginConcurrent exercises the shared fault state from many goroutines
// (meaningful under -race) and checks that FailNext hands out exactly n
// failures.
func TestBeginConcurrent(t *testing.T) {
	c := core.New("")
	if err := c.Faults.FailNext("*", 50, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	c.Faults.SetQuotaRate("iap", core.Read, 1e9, 1e6)
	errs := make(chan error, 8*100)
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				errs <- c.Begin(context.Background(), "iap.getIamPolicy")
				c.Faults.TakeRace("iap.setIamPolicy")
			}
		}()
	}
	for range 8 {
		<-done
	}
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed != 50 {
		t.Errorf("%d calls failed, want exactly 50", failed)
	}
	if n := c.Stats.Snapshot().Calls["iap.getIamPolicy"]; n != 800 {
		t.Errorf("counted %d calls, want 800", n)
	}
}
