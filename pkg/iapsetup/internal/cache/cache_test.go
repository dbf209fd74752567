package cache

import (
	"fmt"
	"sync"
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
		wantStats Stats
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
			wantStats: Stats{Len: 2, Max: 2, Hits: 2, Misses: 1, Evictions: 1},
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
			wantStats: Stats{Len: 2, Max: 2, Hits: 1, Misses: 1, Evictions: 1},
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
			wantStats: Stats{Len: 2, Max: 2, Hits: 1},
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
			wantStats: Stats{Len: 0, Max: 4, Hits: 1, Misses: 1, Expired: 1},
		},
		{
			name: "a bound below 1 keeps one entry",
			max:  0,
			ops: []op{
				{do: "add", key: "a", val: 1, ttl: time.Hour},
				{do: "add", key: "b", val: 2, ttl: time.Hour},
			},
			wantKeys:  []string{"b"},
			wantStats: Stats{Len: 1, Max: 1, Evictions: 1},
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
