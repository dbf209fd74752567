// Package cache holds the bounded, expiring caches of pkg/iapsetup and
// pkg/iapsetup/scope: an LRU map whose every entry also expires, and a
// loading cache over it that collapses concurrent misses of one key.
package cache

import (
	"container/list"
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultSize bounds each per-project cache when the caller does not say
// (iapsetup.Options.ProjectCacheSize, scope.AncestryOptions.Size).
const DefaultSize = 10_000

// lru is a map bounded to max entries that evicts the least recently used
// one when full; every entry also expires. It is safe for concurrent use.
// The per-project caches use it so that memory stays bounded however many
// projects one deployment guards (docs/orgwide.md).
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; elements hold *lruItem
	items map[K]*list.Element
	stats Stats
}

type lruItem[K comparable, V any] struct {
	key     K
	val     V
	expires time.Time
}

// newLRU returns an empty cache of at most max entries (at least 1).
func newLRU[K comparable, V any](max int) *lru[K, V] {
	if max < 1 {
		max = 1
	}
	return &lru[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

// get returns the value of k if present and not expired at now, and marks
// it most recently used. An expired entry is removed.
func (c *lru[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[k]
	if !ok {
		c.stats.Misses++
		return zero, false
	}
	it := el.Value.(*lruItem[K, V])
	if !now.Before(it.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		c.stats.Misses++
		c.stats.Expired++
		return zero, false
	}
	c.order.MoveToFront(el)
	c.stats.Hits++
	return it.val, true
}

// add stores v under k until expires, evicting the least recently used
// entry when the cache is full.
func (c *lru[K, V]) add(k K, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		it := el.Value.(*lruItem[K, V])
		it.val, it.expires = v, expires
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruItem[K, V]).key)
		c.stats.Evictions++
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{key: k, val: v, expires: expires})
}

// peek is get without counting a lookup or reordering: the check a
// singleflight leader makes in case the entry was added since its caller
// missed.
func (c *lru[K, V]) peek(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		if it := el.Value.(*lruItem[K, V]); now.Before(it.expires) {
			return it.val, true
		}
	}
	var zero V
	return zero, false
}

// snapshot returns the counters with the current size.
func (c *lru[K, V]) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Len, s.Max = c.order.Len(), c.max
	return s
}

// Loading is an lru filled on a miss by load, which also says how
// long to keep what it read (ttl <= 0: not kept); errors are not kept.
// Concurrent misses of one key share one load (singleflight). The shared
// load must not die with the first caller's context: it runs without its
// cancellation but with its deadline, and each caller waits for it at most
// until its own ctx ends. The per-project caches (IAP service agents,
// project-wide IAP policies) and the scope's ancestry caches use it.
type Loading[V any] struct {
	entries *lru[string, V]
	load    func(ctx context.Context, key string) (v V, ttl time.Duration, err error)
	now     func() time.Time
	flight  singleflight.Group
}

// NewLoading returns an empty loading cache of at most size entries, with
// clock now.
func NewLoading[V any](size int, now func() time.Time, load func(context.Context, string) (V, time.Duration, error)) *Loading[V] {
	return &Loading[V]{entries: newLRU[string, V](size), load: load, now: now}
}

// Get returns the value of key from the cache, or loads it.
func (c *Loading[V]) Get(ctx context.Context, key string) (V, error) {
	if v, ok := c.entries.get(key, c.now()); ok {
		return v, nil
	}
	ch := c.flight.DoChan(key, func() (any, error) {
		if v, ok := c.entries.peek(key, c.now()); ok { // filled since this caller missed
			return v, nil
		}
		callCtx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			callCtx, cancel = context.WithDeadline(callCtx, dl)
			defer cancel()
		}
		v, ttl, err := c.load(callCtx, key)
		if err != nil {
			return nil, err
		}
		if ttl > 0 {
			c.entries.add(key, v, c.now().Add(ttl))
		}
		return v, nil
	})
	var zero V
	select {
	case res := <-ch:
		if res.Err != nil {
			return zero, res.Err
		}
		return res.Val.(V), nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Stats returns the cache's size and counters.
func (c *Loading[V]) Stats() Stats { return c.entries.snapshot() }

// Stats describes one bounded cache.
type Stats struct {
	Len       int   // entries now
	Max       int   // bound
	Hits      int64 // lookups answered from the cache
	Misses    int64 // lookups that had to call (including expired entries)
	Expired   int64 // entries dropped because they had expired
	Evictions int64 // entries dropped to stay within Max
}
