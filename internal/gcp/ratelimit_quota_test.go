package gcp_test

import (
	"context"
	"flag"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/emulatortest"
)

// quotaTiming turns on the wall-clock figures of
// TestAdaptiveLimitingUnderAQuota (share of the quota used, calls wasted on
// throttling once learned). They depend on the machine having CPU to spare,
// so they are a measurement, not a unit-test assertion: run them with
//
//	go test ./internal/gcp -run TestAdaptiveLimitingUnderAQuota -quota.timing -v
//
// The limiter's logic is asserted on a fake clock in ratelimit_test.go; the
// figures at scale are in docs/performance.md (burst scenario).
var quotaTiming = flag.Bool("quota.timing", false, "also assert the wall-clock quota figures (needs an idle machine)")

// TestAdaptiveLimitingUnderAQuota drives many concurrent reads through an
// adapter against an emulated read quota — Cloud Run's, answered with
// RESOURCE_EXHAUSTED, and Compute's, answered with 403 rateLimitExceeded as
// Google documents: no call may fail (throttled calls are retried), the
// quota must be used well, and once the limiter has learned the quota few
// calls may be wasted on throttling. (Retries alone, without adaptation,
// also lose no call here, but keep wasting more calls than they make.)
func TestAdaptiveLimitingUnderAQuota(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, api, method string
		call              func(context.Context, *testEnv) error
	}{
		{"cloud run, RESOURCE_EXHAUSTED", "run", "google.cloud.run.v2.Services.GetIamPolicy", func(ctx context.Context, e *testEnv) error {
			_, err := e.Clients.RunAdapter.GetIAMPolicy(ctx, helloRef)
			return err
		}},
		{"compute, 403 rateLimitExceeded", "compute", "compute.regionNetworkEndpointGroups.list", func(ctx context.Context, e *testEnv) error {
			_, err := e.Clients.ComputeAdapter.ListServerlessNEGs(ctx, emulatortest.Project, emulatortest.Region)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testLimitingUnderQuota(t, tc.api, tc.method, tc.call)
		})
	}
}

func testLimitingUnderQuota(t *testing.T, api, m string, call func(context.Context, *testEnv) error) {
	e := startEnv(t, envOptions{})
	e.SeedService(t, emulatortest.Svc{Name: "hello"})
	const (
		perSecond = 50.0
		burst     = 5
		workers   = 16
		learn     = 1500 * time.Millisecond
		run       = 3 * time.Second
	)
	e.Core.Faults.SetQuotaRate(api, core.Read, perSecond, burst)
	// Calls take time, as they do against Google.
	if err := e.Core.Faults.SetLatency("*", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var (
		wg       sync.WaitGroup
		ok, fail atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < run {
				if err := call(ctx, e); err != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(learn)
	learned := e.Snapshot()
	wg.Wait()
	elapsed := time.Since(start)
	steady := e.Snapshot().Sub(learned)
	accepted, throttled := steady.Calls[m]-steady.Faults[m], steady.Faults[m]
	bound := burst + perSecond*elapsed.Seconds()
	t.Logf("accepted %d in %s (quota bound %.0f); after %s: %d accepted, %d throttled",
		ok.Load(), elapsed.Round(time.Millisecond), bound, learn, accepted, throttled)
	if accepted == 0 {
		t.Fatalf("no %s call counted after learning: wrong method key?", m)
	}
	if fail.Load() > 0 {
		t.Errorf("%d calls failed, first: %v", fail.Load(), firstErr.Load())
	}
	if !*quotaTiming {
		return
	}
	if got := float64(ok.Load()); got < 0.75*bound {
		t.Errorf("accepted %v calls, want at least 75%% of the quota bound %.0f", got, bound)
	}
	if float64(throttled) > 0.1*float64(accepted) {
		t.Errorf("once learned, %d calls throttled for %d accepted: the limiter does not adapt", throttled, accepted)
	}
}
