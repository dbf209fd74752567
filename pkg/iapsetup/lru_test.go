package iapsetup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestLRU(t *testing.T) {
	t.Parallel()
	type op struct {
		do   string // "add", "get"
		key  string
		val  int
		at   time.Duration // since t0
		ttl  time.Duration // add: expiry after at
		want int           // get: -1 = miss
	}
	tests := []struct {
		name      string
		max       int
		ops       []op
		wantKeys  []string // most recently used first
		wantStats CacheStats
	}{
		{
			name: "evicts the least recently added when full",
			max:  2,
			ops: []op{
				{do: "add", key: "a", val: 1, ttl: time.Hour},
				{do: "add", key: "b", val: 2, ttl: time.Hour},
				{do: "add", key: "c", val: 3, ttl: time.Hour},
				{do: "get", key: "a", want: -1},
				{do: "get", key: "b", want: 2},
				{do: "get", key: "c", want: 3},
			},
			wantKeys:  []string{"c", "b"},
			wantStats: CacheStats{Len: 2, Max: 2, Hits: 2, Misses: 1, Evictions: 1},
		},
		{
			name: "a get makes an entry recent",
			max:  2,
			ops: []op{
				{do: "add", key: "a", val: 1, ttl: time.Hour},
				{do: "add", key: "b", val: 2, ttl: time.Hour},
				{do: "get", key: "a", want: 1},
				{do: "add", key: "c", val: 3, ttl: time.Hour},
				{do: "get", key: "b", want: -1},
			},
			wantKeys:  []string{"c", "a"},
			wantStats: CacheStats{Len: 2, Max: 2, Hits: 1, Misses: 1, Evictions: 1},
		},
		{
			name: "re-adding replaces the value and expiry without evicting",
			max:  2,
			ops: []op{
				{do: "add", key: "a", val: 1, ttl: time.Minute},
				{do: "add", key: "b", val: 2, ttl: time.Hour},
				{do: "add", key: "a", val: 10, at: 30 * time.Second, ttl: time.Hour},
				{do: "get", key: "a", at: 5 * time.Minute, want: 10},
			},
			wantKeys:  []string{"a", "b"},
			wantStats: CacheStats{Len: 2, Max: 2, Hits: 1},
		},
		{
			name: "an expired entry is a miss and is dropped",
			max:  4,
			ops: []op{
				{do: "add", key: "a", val: 1, ttl: time.Minute},
				{do: "get", key: "a", at: 59 * time.Second, want: 1},
				{do: "get", key: "a", at: time.Minute, want: -1},
			},
			wantKeys:  []string{},
			wantStats: CacheStats{Len: 0, Max: 4, Hits: 1, Misses: 1, Expired: 1},
		},
		{
			name: "a bound below 1 keeps one entry",
			max:  0,
			ops: []op{
				{do: "add", key: "a", val: 1, ttl: time.Hour},
				{do: "add", key: "b", val: 2, ttl: time.Hour},
			},
			wantKeys:  []string{"b"},
			wantStats: CacheStats{Len: 1, Max: 1, Evictions: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newLRU[string, int](tc.max)
			for i, o := range tc.ops {
				now := t0.Add(o.at)
				switch o.do {
				case "add":
					c.add(o.key, o.val, now.Add(o.ttl))
				case "get":
					v, ok := c.get(o.key, now)
					if !ok {
						v = -1
					}
					if v != o.want {
						t.Errorf("op %d: get(%s) = %d, want %d", i, o.key, v, o.want)
					}
				}
			}
			keys := []string{}
			for el := c.order.Front(); el != nil; el = el.Next() {
				keys = append(keys, el.Value.(*lruItem[string, int]).key)
			}
			if diff := cmp.Diff(tc.wantKeys, keys); diff != "" {
				t.Errorf("keys, most recent first (-want +got):\n%s", diff)
			}
			if len(c.items) != c.order.Len() {
				t.Errorf("index has %d keys, order list %d", len(c.items), c.order.Len())
			}
			if diff := cmp.Diff(tc.wantStats, c.snapshot()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

// Concurrent use stays consistent and within bounds (run with -race).
func TestLRUConcurrent(t *testing.T) {
	t.Parallel()
	c := newLRU[int, int](64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := (i*7 + g) % 300
				if v, ok := c.get(k, t0); ok && v != k*k {
					t.Errorf("get(%d) = %d, want %d", k, v, k*k)
				}
				c.add(k, k*k, t0.Add(time.Hour))
			}
		})
	}
	wg.Wait()
	s := c.snapshot()
	if s.Len > 64 || s.Len != len(c.items) {
		t.Errorf("after concurrent use: Len %d, index %d, want equal and at most 64", s.Len, len(c.items))
	}
	if s.Hits+s.Misses != 8*2000 {
		t.Errorf("hits+misses = %d, want %d", s.Hits+s.Misses, 8*2000)
	}
}

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
		email, err := c.get(t.Context(), fmt.Sprintf("proj-%04d", p))
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
	s := c.entries.snapshot()
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
			if _, err := c.get(t.Context(), "p1"); err != nil {
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
	r, err := New(Deps{rec, rec, rec, rec, rec, rec, rec, nil}, Options{Scope: AllProjects(), ProjectCacheSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	for p := range 5 {
		if _, err := r.agents.get(t.Context(), fmt.Sprintf("p%d", p)); err != nil {
			t.Fatal(err)
		}
	}
	got := r.Caches()
	if got.Agents.Len != 3 || got.Agents.Max != 3 || got.Agents.Evictions != 2 || got.ProjectIAP.Max != 3 {
		t.Errorf("Caches() = %+v; want agents 3 of 3 after 2 evictions, project IAP bounded by 3", got)
	}
	d, err := New(Deps{rec, rec, rec, rec, rec, rec, rec, nil}, Options{Scope: AllProjects()})
	if err != nil {
		t.Fatal(err)
	}
	if m := d.Caches().Agents.Max; m != DefaultProjectCacheSize {
		t.Errorf("default bound = %d, want %d", m, DefaultProjectCacheSize)
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
		{"first", DefaultProjectCacheSize, false},
		{"warm", DefaultProjectCacheSize, true},
		{"bounded-100", 100, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			id := &countingIdentity{}
			var c *agentCache
			reset := func() {
				c = newAgentCache(id, time.Hour, bc.size, time.Now)
				if bc.prewarm {
					for _, p := range names {
						_, _ = c.get(context.Background(), p)
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
				if _, err := c.get(context.Background(), names[i%projects]); err != nil {
					b.Fatal(err)
				}
				events++
			}
			b.StopTimer()
			s := c.entries.snapshot()
			b.ReportMetric(float64(id.calls.Load())/float64(events), "calls/event")
			b.ReportMetric(float64(s.Len), "cached-projects")
			if s.Len > bc.size {
				b.Fatalf("cache holds %d projects, bound %d", s.Len, bc.size)
			}
		})
	}
}

// BenchmarkProjectCacheEntry reports the memory one cached project costs
// (B/op: the entry, its list element and its share of the index), from
// which the full default cache's footprint follows (×10,000).
func BenchmarkProjectCacheEntry(b *testing.B) {
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("proj-%06d", i)
	}
	email := "service-100000000000@gcp-sa-iap.iam.gserviceaccount.com"
	c := newLRU[string, string](b.N)
	exp := t0.Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.add(keys[i], email, exp)
	}
}
