package iapsetup

import (
	"context"
	"time"

	"github.com/googleapis/gax-go/v2"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
)

// SetTestHooks replaces the reconciler's clock and its pause between
// retries (nil: keep the default). For this package's tests only.
func SetTestHooks(o *Options, now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) {
	o.now, o.sleep = now, sleep
}

// FastRetries returns o with retries paced at 1 ms, at most 4 ms.
func FastRetries(o Options) Options {
	o.backoff = gax.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Multiplier: 2}
	return o
}

// CacheStats are the per-project caches' counters.
type CacheStats struct{ Agents, ProjectIAP cache.Stats }

// CachesOf returns r's per-project cache counters.
func CachesOf(r *Reconciler) CacheStats {
	c := r.caches()
	return CacheStats{Agents: c.agents, ProjectIAP: c.projectIAP}
}
