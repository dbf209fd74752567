package gcp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/googleapis/gax-go/v2"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcperr"
)

// Client-side rate limiting.
//
// Google meters each API's reads and writes against separate quotas
// (Cloud Run: "Read requests" and "Write requests per minute per region";
// Compute: reads and writes per project and region) and answers over-quota
// calls with RESOURCE_EXHAUSTED / HTTP 429 (Compute: 403
// rateLimitExceeded). NewClients therefore gives every API one adaptive
// limiter for reads and one for writes. The quotas are not readable by the
// function (and are shared with everything else in the project), so the
// limiters learn them from how calls end. A throttled call is retried a
// bounded number of times (gax backoff, then the limiter) before the error
// is returned; the reconcile then fails transiently and Eventarc
// redelivers the event.

// Observer is implemented by limiters that adapt to how calls end: Observe
// is told the error (nil: success) of every call the limiter let through.
type Observer interface {
	Observe(err error)
}

// Throttled reports whether err is a quota or rate-limit rejection:
// RESOURCE_EXHAUSTED, HTTP 429, or Compute's 403 rateLimitExceeded /
// userRateLimitExceeded.
func Throttled(err error) bool {
	return err != nil && gcperr.Code(err) == codes.ResourceExhausted
}

// AdaptiveConfig tunes an AdaptiveLimiter. Zero fields take the defaults.
type AdaptiveConfig struct {
	// Initial is the starting rate (calls per second); 0: unlimited until
	// the API is seen saturated.
	Initial rate.Limit
	// Min and Max bound the learned rate (defaults 0.2/s — a fifth of
	// Cloud Run's default 60 writes per minute — and rate.Inf).
	Min, Max rate.Limit
}

func (c *AdaptiveConfig) defaults() {
	if c.Initial <= 0 {
		c.Initial = rate.Inf
	}
	if c.Max <= 0 {
		c.Max = rate.Inf
	}
	if c.Min <= 0 {
		c.Min = 0.2
	}
}

// How an AdaptiveLimiter judges the answers it counts.
const (
	// adaptWindow is how long the limiter counts answers before it judges
	// them (a quarter of it for a saturated unlimited limiter).
	adaptWindow = time.Second
	// saturatedFrac is the throttled fraction of a window, of at least
	// minAnswers answers, that makes an unlimited limiter start limiting.
	// Random throttling of a few percent of calls practically never
	// reaches it; an API whose quota we exceed does.
	saturatedFrac = 0.5
	minAnswers    = 20 // the least answers a window needs for saturatedFrac to be judged
	// overFrac is the throttled fraction of a window (of at least two
	// throttled answers) that makes a limiting limiter lower its rate.
	overFrac = 0.05
	// backoffFactor multiplies the rate the API accepted in a window that
	// made the limiter lower its rate.
	backoffFactor = 0.95
	// recovery is the relative increase after a window in which the
	// limiter held calls back and none was throttled.
	recovery = 0.03
	// limitedBurst is the token bucket's depth while limiting: calls are
	// spread evenly, which a token-bucket quota accepts best.
	limitedBurst = 1
)

// AdaptiveLimiter is a token bucket (golang.org/x/time/rate) whose rate
// follows the quota it runs into. It counts the calls the API accepted and
// throttled in windows of adaptWindow (1 s) and judges each window when it
// ends:
//
//   - Unlimited, it opens a window only at a throttled answer, and starts
//     limiting as soon as (from a quarter of the window on) at least half
//     of the window's answers, and at least 20, were throttled. Calls are
//     then arriving faster than the quota refills, so the rate at which
//     the calls the API accepted were sent is the quota's: the rate
//     becomes 95 % of that.
//   - Limiting, a window in which at least 5 % of the answers (and at
//     least two) were throttled lowers the rate the same way; a window in
//     which none was throttled while the limiter held calls back raises it
//     by 3 %; any other window leaves it alone.
//
// Sparse throttling that does not depend on our rate (a random
// RESOURCE_EXHAUSTED now and then) thus never starts limiting, and once
// limiting only a throttled fraction of 5 % or more lowers the rate. (The
// limiter cannot tell such a fraction, sustained, from a quota shared
// with a growing consumer: it keeps lowering the rate, down to Min.)
// Calls sent before the current window opened are not counted in it. It
// is safe for concurrent use.
type AdaptiveLimiter struct {
	cfg AdaptiveConfig
	lim *rate.Limiter
	now func() time.Time

	mu        sync.Mutex
	start     time.Time // the window's start (zero: no window open)
	last      time.Time // when the last call answered in the window was sent
	ok, thr   int       // accepted and throttled answers in the window
	held      bool      // Wait held a call back in the window
	decreases int64
}

var (
	_ Limiter  = (*AdaptiveLimiter)(nil)
	_ Observer = (*AdaptiveLimiter)(nil)
)

// NewAdaptiveLimiter returns a limiter configured by cfg.
func NewAdaptiveLimiter(cfg AdaptiveConfig) *AdaptiveLimiter {
	return newAdaptiveLimiter(cfg, time.Now)
}

func newAdaptiveLimiter(cfg AdaptiveConfig, now func() time.Time) *AdaptiveLimiter {
	cfg.defaults()
	l := &AdaptiveLimiter{cfg: cfg, lim: rate.NewLimiter(cfg.Initial, limitedBurst), now: now}
	if cfg.Initial != rate.Inf {
		l.openLocked(now())
	}
	return l
}

// Limit is the current rate (rate.Inf: not limiting).
func (l *AdaptiveLimiter) Limit() rate.Limit { return l.lim.Limit() }

// Decreases counts the rate decreases so far.
func (l *AdaptiveLimiter) Decreases() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decreases
}

// Wait blocks until a call may be made. It reserves at most waitSlice
// ahead, so a rate that rises while callers wait takes effect for them
// too. When ctx's deadline comes before the call could be made it returns
// at once with an error that wraps context.DeadlineExceeded (so it
// classifies as transient).
func (l *AdaptiveLimiter) Wait(ctx context.Context) error {
	for {
		now := l.now()
		r := l.lim.ReserveN(now, 1)
		d := r.DelayFrom(now)
		if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
			r.CancelAt(now)
			return fmt.Errorf("the client-side rate limiter would make the call wait %s, past the deadline: %w", d.Round(time.Millisecond), context.DeadlineExceeded)
		}
		if d <= 0 {
			return nil
		}
		l.mu.Lock()
		l.held = true
		l.mu.Unlock()
		kept := d <= waitSlice
		if !kept {
			r.CancelAt(now)
			d = waitSlice
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if kept {
				r.CancelAt(l.now())
			}
			return ctx.Err()
		case <-t.C:
		}
		if kept {
			return nil // the reservation made is now due
		}
	}
}

// waitSlice bounds how far ahead Wait reserves.
const waitSlice = 50 * time.Millisecond

// Observe adapts the rate to how a call ended.
func (l *AdaptiveLimiter) Observe(err error) { l.observeCall(time.Time{}, err) }

// observeCall is Observe for a call sent at sent (zero: unknown).
func (l *AdaptiveLimiter) observeCall(sent time.Time, err error) {
	throttled := Throttled(err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.start.IsZero() && !throttled && l.lim.Limit() == rate.Inf {
		return // nothing to learn until the API throttles
	}
	t := l.now()
	if l.start.IsZero() {
		l.openLocked(t)
	}
	if !sent.IsZero() && sent.Before(l.start) {
		return // sent before the window (and maybe the rate) began
	}
	if sent.IsZero() {
		sent = t
	}
	if sent.After(l.last) {
		l.last = sent
	}
	if throttled {
		l.thr++
	} else {
		l.ok++
	}
	if d := t.Sub(l.start); d >= adaptWindow || l.lim.Limit() == rate.Inf && d >= adaptWindow/4 {
		l.judgeLocked(t, d)
	}
}

func (l *AdaptiveLimiter) openLocked(t time.Time) {
	l.start, l.last, l.ok, l.thr, l.held = t, t, 0, 0, false
}

// judgeLocked ends the window, d long, at t.
func (l *AdaptiveLimiter) judgeLocked(t time.Time, d time.Duration) {
	cur := l.lim.Limit()
	n := l.ok + l.thr
	frac := float64(l.thr) / float64(n)
	// The rate at which the calls it accepted were sent (answers of calls
	// sent late in the window are still on their way).
	accepted := rate.Limit(float64(l.ok) / max(l.last.Sub(l.start), adaptWindow/8).Seconds())
	saturated := n >= minAnswers && frac >= saturatedFrac
	switch {
	case cur == rate.Inf && saturated:
		l.setLocked(t, accepted*backoffFactor)
	case cur == rate.Inf && (d < adaptWindow || n < minAnswers && d < 8*adaptWindow):
		return // keep counting
	case cur == rate.Inf:
		l.start = time.Time{} // not saturated: the next window opens at a throttled answer
		return
	case l.thr >= 2 && frac >= overFrac:
		l.setLocked(t, min(cur, accepted)*backoffFactor)
	case l.thr == 0 && l.held:
		l.lim.SetLimitAt(t, min(cur*(1+recovery), l.cfg.Max))
	}
	l.openLocked(t)
}

func (l *AdaptiveLimiter) setLocked(t time.Time, r rate.Limit) {
	l.lim.SetLimitAt(t, max(l.cfg.Min, min(r, l.cfg.Max)))
	l.decreases++
}

// callClass separates the quotas an API meters: reads and writes.
type callClass int

const (
	readCall callClass = iota
	writeCall
)

// pacer paces one API's calls through its read and write limiters, tells
// adaptive limiters how each call ended, and retries throttled calls.
type pacer struct {
	read, write Limiter
	retries     int
	backoff     gax.Backoff
	sleep       func(ctx context.Context, d time.Duration) error
}

// newPacer uses explicit for both classes when it is given, and otherwise
// a new AdaptiveLimiter per class. retries < 0 disables retrying.
func newPacer(explicit Limiter, cfg AdaptiveConfig, retries int) *pacer {
	p := &pacer{read: explicit, write: explicit, retries: max(retries, 0),
		backoff: gax.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}, sleep: gax.Sleep}
	if explicit == nil {
		p.read, p.write = NewAdaptiveLimiter(cfg), NewAdaptiveLimiter(cfg)
	}
	return p
}

// limiter returns the limiter of class.
func (p *pacer) limiter(class callClass) Limiter {
	if class == writeCall {
		return p.write
	}
	return p.read
}

// now is the time on class's limiter's clock.
func (p *pacer) now(class callClass) time.Time {
	if l, ok := p.limiter(class).(*AdaptiveLimiter); ok {
		return l.now()
	}
	return time.Now()
}

// observe tells class's limiter, if it adapts, how a call sent at sent
// (zero: unknown) ended.
func (p *pacer) observe(class callClass, sent time.Time, err error) {
	switch l := p.limiter(class).(type) {
	case *AdaptiveLimiter:
		l.observeCall(sent, err)
	case Observer:
		l.Observe(err)
	}
}

// paced runs f, which makes exactly one API call of class, after p's
// limiter lets it, and returns what f returned. A throttled call is
// retried up to p.retries times, each after a backoff pause and the
// limiter again; the last answer is returned. Throttled calls never
// reached the API's logic (they are rejected before it), so retrying
// writes is safe; preconditions (etags, fingerprints) are sent unchanged.
func paced[T any](ctx context.Context, p *pacer, class callClass, f func() (T, error)) (T, error) {
	bo := p.backoff
	for attempt := 0; ; attempt++ {
		if err := wait(ctx, p.limiter(class)); err != nil {
			var zero T
			return zero, err
		}
		sent := p.now(class)
		v, err := f()
		p.observe(class, sent, err)
		if !Throttled(err) || attempt >= p.retries {
			return v, err
		}
		if serr := p.sleep(ctx, bo.Pause()); serr != nil {
			return v, errors.Join(err, serr)
		}
	}
}
