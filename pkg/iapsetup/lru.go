package iapsetup

import (
	"container/list"
	"sync"
	"time"
)

// DefaultProjectCacheSize bounds each per-project cache when
// Options.ProjectCacheSize is not set.
const DefaultProjectCacheSize = 10_000

// lru is a map bounded to max entries that evicts the least recently used
// one when full; every entry also expires. It is safe for concurrent use.
// The per-project caches use it so that memory stays bounded however many
// projects one deployment guards (docs/orgwide.md).
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; elements hold *lruItem
	items map[K]*list.Element
	stats CacheStats
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

// snapshot returns the counters with the current size.
func (c *lru[K, V]) snapshot() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Len, s.Max = c.order.Len(), c.max
	return s
}

// CacheStats describes one bounded cache.
type CacheStats struct {
	Len       int   // entries now
	Max       int   // bound
	Hits      int64 // lookups answered from the cache
	Misses    int64 // lookups that had to call (including expired entries)
	Expired   int64 // entries dropped because they had expired
	Evictions int64 // entries dropped to stay within Max
}

// Caches reports the reconciler's per-project caches.
type Caches struct {
	// Agents caches each project's IAP service agent email, which also
	// carries the project number.
	Agents CacheStats
	// ProjectIAP caches each project's project-wide IAP policy (the
	// who-can-pass check); zero when Deps.IAP is nil.
	ProjectIAP CacheStats
}

// Caches returns the sizes and counters of the per-project caches.
func (r *Reconciler) Caches() Caches {
	c := Caches{Agents: r.agents.entries.snapshot()}
	if r.projectIAP != nil {
		c.ProjectIAP = r.projectIAP.entries.snapshot()
	}
	return c
}
