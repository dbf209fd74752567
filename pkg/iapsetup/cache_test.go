package iapsetup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// countingIdentity answers generateServiceIdentity and counts the calls.
type countingIdentity struct {
	calls atomic.Int64
	delay time.Duration
}

func (c *countingIdentity) IAPServiceAgent(ctx context.Context, project string) (string, error) {
	c.calls.Add(1)
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return "service-" + project + "@gcp-sa-iap.iam.gserviceaccount.com", nil
}

// The agent cache at 1,000 projects: warm projects cost no call, the bound
// holds, and the least recently used projects are the ones that cost a call
// again.
func TestAgentCacheBounded(t *testing.T) {
	t.Parallel()
	id := &countingIdentity{}
	now := t0
	c := newAgentCache(id, time.Hour, 100, func() time.Time { return now })
	get := func(p int) {
		t.Helper()
		email, err := c.Get(t.Context(), fmt.Sprintf("proj-%04d", p))
		if want := fmt.Sprintf("service-proj-%04d@gcp-sa-iap.iam.gserviceaccount.com", p); err != nil || email != want {
			t.Fatalf("get(%d) = %q, %v; want %q", p, email, err, want)
		}
	}
	for p := range 1000 {
		get(p)
	}
	if n := id.calls.Load(); n != 1000 {
		t.Errorf("first pass over 1,000 projects: %d calls, want 1000", n)
	}
	s := c.Stats()
	if s.Len != 100 || s.Evictions != 900 {
		t.Errorf("after 1,000 projects: Len %d, Evictions %d; want 100 and 900", s.Len, s.Evictions)
	}
	for p := 900; p < 1000; p++ { // the 100 most recent are warm
		get(p)
	}
	if n := id.calls.Load(); n != 1000 {
		t.Errorf("warm projects cost %d calls, want 0", n-1000)
	}
	get(0) // evicted long ago
	if n := id.calls.Load(); n != 1001 {
		t.Errorf("an evicted project cost %d calls, want 1", n-1000)
	}
	now = now.Add(time.Hour) // every entry expires
	get(999)
	if n := id.calls.Load(); n != 1002 {
		t.Errorf("an expired project cost %d calls, want 1", n-1001)
	}
}

// Concurrent lookups of one cold project make one call.
func TestAgentCacheCollapsesConcurrentLookups(t *testing.T) {
	t.Parallel()
	id := &countingIdentity{delay: 20 * time.Millisecond}
	c := newAgentCache(id, time.Hour, 10, time.Now)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := c.Get(t.Context(), "p1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := id.calls.Load(); n != 1 {
		t.Errorf("16 concurrent lookups made %d calls, want 1", n)
	}
}

// The reconciler reports its caches, bounded by Options.ProjectCacheSize.
func TestReconcilerCaches(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r, err := New(Deps{rec, rec, rec, rec, nil}, Options{Scope: scope.AllProjects(), ProjectCacheSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	for p := range 5 {
		if _, err := r.agents.Get(t.Context(), fmt.Sprintf("p%d", p)); err != nil {
			t.Fatal(err)
		}
	}
	got := CachesOf(r)
	if got.Agents.Len != 3 || got.Agents.Max != 3 || got.Agents.Evictions != 2 || got.ProjectIAP.Max != 3 {
		t.Errorf("caches = %+v; want agents 3 of 3 after 2 evictions, project IAP bounded by 3", got)
	}
	d, err := New(Deps{rec, rec, rec, rec, nil}, Options{Scope: scope.AllProjects()})
	if err != nil {
		t.Fatal(err)
	}
	if m := CachesOf(d).Agents.Max; m != cache.DefaultSize {
		t.Errorf("default bound = %d, want %d", m, cache.DefaultSize)
	}
}

// BenchmarkAgentCache reports, at 1,000 projects, the generateServiceIdentity
// calls per event when every project is cold ("first"), when all are
// cached ("warm"), and when the cache holds only a tenth of them and events
// cycle through all ("bounded-100", the worst case for an LRU), with the
// cache size after each.
func BenchmarkAgentCache(b *testing.B) {
	const projects = 1000
	names := make([]string, projects)
	for i := range names {
		names[i] = fmt.Sprintf("proj-%04d", i)
	}
	for _, bc := range []struct {
		name    string
		size    int
		prewarm bool
	}{
		{"first", cache.DefaultSize, false},
		{"warm", cache.DefaultSize, true},
		{"bounded-100", 100, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			id := &countingIdentity{}
			var c *agentCache
			reset := func() {
				c = newAgentCache(id, time.Hour, bc.size, time.Now)
				if bc.prewarm {
					for _, p := range names {
						_, _ = c.Get(context.Background(), p)
					}
				}
			}
			reset()
			id.calls.Store(0)
			events := 0
			b.ResetTimer()
			for i := range b.N {
				if !bc.prewarm && i%projects == 0 && i > 0 {
					b.StopTimer()
					calls := id.calls.Load()
					reset() // every project cold again
					id.calls.Store(calls)
					b.StartTimer()
				}
				if _, err := c.Get(context.Background(), names[i%projects]); err != nil {
					b.Fatal(err)
				}
				events++
			}
			b.StopTimer()
			s := c.Stats()
			b.ReportMetric(float64(id.calls.Load())/float64(events), "calls/event")
			b.ReportMetric(float64(s.Len), "cached-projects")
			if s.Len > bc.size {
				b.Fatalf("cache holds %d projects, bound %d", s.Len, bc.size)
			}
		})
	}
}
