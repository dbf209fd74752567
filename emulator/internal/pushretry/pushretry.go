// Package pushretry is the retry policy shared by the emulator's two push
// stand-ins — the Eventarc audit-log stand-in (emulator/delivery) and the
// messagePublished push stand-in (emulator/logsink) — as Eventarc applies
// it to a push subscription: attempts bounded by a per-attempt timeout,
// exponential backoff between them bounded by a base and a maximum and
// jittered down by up to half, an optional attempt cap, and a retention
// period after which a delivery is given up. It also counts attempts,
// deliveries, retries and give-ups for the stand-ins' stats, and makes the
// one HTTP POST both stand-ins send.
//
// The Eventarc stand-in schedules retries on its own queue (so its
// Concurrency bounds attempts, not deliveries) and drives a delivery one
// step at a time with Attempt and After; the push stand-in blocks in Do,
// which is the same two steps in a loop.
//
// gax.Backoff (github.com/googleapis/gax-go/v2) is not used: it draws "full
// jitter" (1 ns up to the current period) from the global random source,
// while the stand-ins document a wait jittered down by at most half and
// the Eventarc stand-in must stay reproducible under Options.Seed.
package pushretry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is a push subscription's retry policy. Zero fields get the
// defaults named in their comments.
type Policy struct {
	// BackoffBase and BackoffMax bound the exponential backoff (100 ms,
	// 5 s; a BackoffMax below BackoffBase is raised to it): the wait after
	// the n-th failed attempt is w = min(BackoffMax, BackoffBase·2^(n-1))
	// less a uniformly random part in [0, w/2], so within [w-w/2, w].
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxAttempts caps the attempts of one delivery (0: no cap).
	MaxAttempts int
	// Retention gives a delivery up when its next attempt would start
	// later than this after the delivery started (24 h).
	Retention time.Duration
	// Timeout bounds one attempt (30 s).
	Timeout time.Duration
}

func (p *Policy) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&p.BackoffBase, 100*time.Millisecond)
	def(&p.BackoffMax, 5*time.Second)
	def(&p.Retention, 24*time.Hour)
	def(&p.Timeout, 30*time.Second)
	p.BackoffMax = max(p.BackoffMax, p.BackoffBase)
	p.MaxAttempts = max(p.MaxAttempts, 0)
}

// Verdict is what follows an attempt.
type Verdict int

const (
	// Delivered: the attempt succeeded.
	Delivered Verdict = iota
	// Retry: attempt again after Decision.Wait.
	Retry
	// GaveUpAttempts: the attempt failed and was the MaxAttempts-th.
	GaveUpAttempts
	// GaveUpRetention: the attempt failed and the next one would start
	// after Retention.
	GaveUpRetention
	// Canceled: the attempt failed (or the backoff was cut short) because
	// the context ended. Not counted as a give-up: the caller decides
	// what a cancelled delivery is.
	Canceled
)

func (v Verdict) String() string {
	switch v {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case GaveUpAttempts:
		return "max attempts"
	case GaveUpRetention:
		return "retention"
	case Canceled:
		return "canceled"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// GaveUp reports whether v gives the delivery up under the policy.
func (v Verdict) GaveUp() bool { return v == GaveUpAttempts || v == GaveUpRetention }

// Decision is the verdict on an attempt and, for Retry, the wait before the
// next one.
type Decision struct {
	Verdict Verdict
	Wait    time.Duration
}

// Counts are the loop's accounting.
type Counts struct {
	Attempts  int64 // attempts started
	Delivered int64 // attempts that succeeded
	Retried   int64 // failed attempts followed by a retry
	Dropped   int64 // deliveries given up by MaxAttempts or Retention
}

// Retrier applies a Policy. It is safe for concurrent use; one Retrier
// serves every delivery of a stand-in.
type Retrier struct {
	policy Policy

	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu  sync.Mutex // guards rnd
	rnd *rand.Rand

	attempts, delivered, retried, dropped atomic.Int64
}

// New returns a Retrier for p (zero fields defaulted). seed makes the
// backoff jitter reproducible (0: random seed).
func New(p Policy, seed uint64) *Retrier {
	p.defaults()
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Retrier{
		policy: p,
		now:    time.Now,
		sleep:  sleepCtx,
		rnd:    rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d)),
	}
}

// Counts returns a copy of the counters.
func (r *Retrier) Counts() Counts {
	return Counts{
		Attempts:  r.attempts.Load(),
		Delivered: r.delivered.Load(),
		Retried:   r.retried.Load(),
		Dropped:   r.dropped.Load(),
	}
}

// Backoff is the wait after the n-th failed attempt (n >= 1), within the
// bounds documented on Policy.
func (r *Retrier) Backoff(n int) time.Duration {
	w := r.policy.BackoffBase
	for i := 1; i < n && w < r.policy.BackoffMax; i++ {
		w *= 2
	}
	w = min(w, r.policy.BackoffMax)
	half := w / 2
	r.mu.Lock()
	cut := time.Duration(r.rnd.Int64N(int64(half) + 1))
	r.mu.Unlock()
	return w - cut
}

// Attempt counts one attempt and runs fn under a context bounded by the
// policy's Timeout.
func (r *Retrier) Attempt(ctx context.Context, fn func(context.Context) error) error {
	r.attempts.Add(1)
	actx, cancel := context.WithTimeout(ctx, r.policy.Timeout)
	defer cancel()
	return fn(actx)
}

// After decides, and counts, what follows the n-th attempt (n >= 1) of a
// delivery that started at since, given the attempt's error. The checks run
// in this order: success; ctx ended (Canceled); attempt cap; retention.
func (r *Retrier) After(ctx context.Context, n int, since time.Time, err error) Decision {
	switch {
	case err == nil:
		r.delivered.Add(1)
		return Decision{Verdict: Delivered}
	case ctx.Err() != nil:
		return Decision{Verdict: Canceled}
	case r.policy.MaxAttempts > 0 && n >= r.policy.MaxAttempts:
		r.dropped.Add(1)
		return Decision{Verdict: GaveUpAttempts}
	}
	wait := r.Backoff(n)
	if r.now().Sub(since)+wait > r.policy.Retention {
		r.dropped.Add(1)
		return Decision{Verdict: GaveUpRetention}
	}
	r.retried.Add(1)
	return Decision{Verdict: Retry, Wait: wait}
}

// Result is how a delivery made by Do ended.
type Result struct {
	Verdict  Verdict // never Retry
	Attempts int
	Err      error // the last attempt's error; nil when Delivered
}

// Do attempts fn until it succeeds, is given up or ctx ends, waiting the
// backoff between attempts; since is when the delivery started (retention
// counts from it). onRetry, if not nil, is told of every retry before its
// wait.
func (r *Retrier) Do(ctx context.Context, since time.Time, fn func(context.Context) error, onRetry func(attempt int, wait time.Duration, err error)) Result {
	for n := 1; ; n++ {
		err := r.Attempt(ctx, fn)
		d := r.After(ctx, n, since, err)
		if d.Verdict != Retry {
			return Result{Verdict: d.Verdict, Attempts: n, Err: err}
		}
		if onRetry != nil {
			onRetry(n, d.Wait, err)
		}
		if r.sleep(ctx, d.Wait) != nil {
			return Result{Verdict: Canceled, Attempts: n, Err: err}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Post POSTs body with header to target once; nil means a 2xx answer. The
// answer's body is read (up to 1 MiB) and discarded.
func Post(ctx context.Context, client *http.Client, target string, header http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request for %s: %w", target, err)
	}
	for k, v := range header {
		req.Header[k] = append([]string(nil), v...)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("posting to %s: %w", target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("posting to %s: status %s", target, resp.Status)
	}
	return nil
}
