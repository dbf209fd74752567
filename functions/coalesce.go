package functions

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// coalescer shares one reconcile among concurrent events for the same
// resource — but only when sharing is correct. Plain singleflight would let
// an event join a reconcile that read live state *before* the change the
// event reports, and that change would then go unreconciled. So an event
// joins an in-flight reconcile only if it started after the event's change
// was recorded; otherwise it waits for it and then runs (or joins) a fresh
// one. Duplicate deliveries of one event, which arrive after the change,
// therefore share a single reconcile. A service has one key however an
// event reaches it — named, or behind a backend service, a NEG or a
// replayed region (reconcileEach) — so no two reconciles of a service run
// at once in an instance.
type coalescer struct {
	g   singleflight.Group
	now func() time.Time
}

type flight struct {
	started time.Time
	v       any
	err     error
}

// do runs fn for key, or shares a run of it that started after changedAt
// (zero: unknown, so only a run starting now qualifies). shared reports
// whether the result came from a run started by another caller. If ctx ends
// first, the error wraps ctx.Err() and iapsetup.ErrTransient: the event
// was not reconciled and must be redelivered, not acknowledged.
//
// fn is told whether its caller first waited for a run that started before
// the change (waited): that run may have written since the caller read
// anything, so what it read before calling do (a listed copy) is stale.
//
// A change time later than now (a sender's clock, or a forged timestamp)
// counts as now, the event's arrival: otherwise no run could ever start
// after it. An event waits for at most one run that started before its
// change: singleflight starts a run for key only once the previous one has
// ended, so the run it shares or starts next began after the event arrived
// (whatever the wall clock says), and its result is final.
func (c *coalescer) do(ctx context.Context, key string, changedAt time.Time, fn func(waited bool) (any, error)) (v any, err error, shared bool) {
	if now := c.now(); changedAt.IsZero() || changedAt.After(now) {
		changedAt = now
	}
	for stale := false; ; stale = true {
		ch := c.g.DoChan(key, func() (any, error) {
			f := &flight{started: c.now()}
			f.v, f.err = fn(stale)
			return f, nil
		})
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for the reconcile of %s: %w", iapsetup.ErrTransient, key, ctx.Err()), false
		case r := <-ch:
			f := r.Val.(*flight)
			if !r.Shared || stale || !f.started.Before(changedAt) {
				return f.v, f.err, r.Shared
			}
			// The run we joined read state from before our change: go again.
		}
	}
}
