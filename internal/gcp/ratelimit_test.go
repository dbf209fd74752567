package gcp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/internal/gcperr"
)

func TestThrottled(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"gRPC RESOURCE_EXHAUSTED", status.Error(codes.ResourceExhausted, "Quota exceeded"), true},
		{"wrapped gRPC RESOURCE_EXHAUSTED", fmt.Errorf("updating: %w", status.Error(codes.ResourceExhausted, "q")), true},
		{"HTTP 429", &googleapi.Error{Code: http.StatusTooManyRequests}, true},
		{"Compute 403 rateLimitExceeded", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "rateLimitExceeded"}}}, true},
		{"403 forbidden", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "forbidden"}}}, false},
		{"ABORTED", status.Error(codes.Aborted, "etag"), false},
		{"UNAVAILABLE", status.Error(codes.Unavailable, "down"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Throttled(tt.err); got != tt.want {
				t.Errorf("Throttled(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

var errQuota = status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Write requests'")

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func near(got rate.Limit, want float64) bool { return math.Abs(float64(got)-want) <= 0.02*want }

// play plays an API that, for d, answers one accepted call every accept
// and one throttled call every throttle (0: none); held says whether the
// limiter holds callers back meanwhile.
func play(l *AdaptiveLimiter, c *fakeClock, d, accept, throttle time.Duration, held bool) {
	const step = time.Millisecond
	for el := step; el <= d; el += step {
		c.advance(step)
		if held {
			l.mu.Lock()
			l.held = true
			l.mu.Unlock()
		}
		if accept > 0 && el%accept == 0 {
			l.Observe(nil)
		}
		if throttle > 0 && el%throttle == 0 {
			l.Observe(errQuota)
		}
	}
}

func TestAdaptiveLimiterStartsLimitingOnlyWhenSaturated(t *testing.T) {
	tests := []struct {
		name             string
		d                time.Duration
		accept, throttle time.Duration
		want             rate.Limit
	}{
		{"never throttled", 10 * time.Second, 10 * time.Millisecond, 0, rate.Inf},
		{"one call in ten throttled", 60 * time.Second, 5 * time.Millisecond, 50 * time.Millisecond, rate.Inf},
		{"a third of the calls throttled", 60 * time.Second, 10 * time.Millisecond, 20 * time.Millisecond, rate.Inf},
		{"too few answers to judge", 60 * time.Second, 0, 500 * time.Millisecond, rate.Inf},
		{"saturated: 20/s accepted, 100/s throttled", 1100 * time.Millisecond, 50 * time.Millisecond, 10 * time.Millisecond, 20 * 0.95},
		{"saturated, nothing accepted: the floor", 1100 * time.Millisecond, 0, 10 * time.Millisecond, 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Unix(1000, 0)}
			l := newAdaptiveLimiter(AdaptiveConfig{}, c.now)
			play(l, c, tt.d, tt.accept, tt.throttle, false)
			if got := l.Limit(); got != tt.want && !near(got, float64(tt.want)) {
				t.Errorf("limit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAdaptiveLimiterWhileLimiting(t *testing.T) {
	tests := []struct {
		name             string
		cfg              AdaptiveConfig
		accept, throttle time.Duration
		held             bool
		want             float64
	}{
		{"two thirds throttled: 95% of the rate accepted", AdaptiveConfig{}, 200 * time.Millisecond, 100 * time.Millisecond, true, 5 * 0.95},
		{"throttled while the limiter does not hold calls back (shared quota)", AdaptiveConfig{}, 200 * time.Millisecond, 100 * time.Millisecond, false, 5 * 0.95},
		{"one throttled answer is no evidence", AdaptiveConfig{}, 100 * time.Millisecond, 600 * time.Millisecond, true, 10},
		{"a few throttled (under a twentieth): held", AdaptiveConfig{}, 20 * time.Millisecond, 400 * time.Millisecond, true, 10},
		{"none throttled, calls held back: raised by recovery", AdaptiveConfig{}, 100 * time.Millisecond, 0, true, 10 * 1.03},
		{"none throttled, calls not held back: held", AdaptiveConfig{}, 100 * time.Millisecond, 0, false, 10},
		{"raised at most to Max", AdaptiveConfig{Max: 10.1}, 100 * time.Millisecond, 0, true, 10.1},
		{"lowered at least to Min", AdaptiveConfig{Min: 8}, 200 * time.Millisecond, 100 * time.Millisecond, true, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Unix(1000, 0)}
			tt.cfg.Initial = 10
			l := newAdaptiveLimiter(tt.cfg, c.now)
			play(l, c, 1000*time.Millisecond, tt.accept, tt.throttle, tt.held)
			if !near(l.Limit(), tt.want) {
				t.Errorf("limit after one window = %v, want %v", l.Limit(), tt.want)
			}
		})
	}
}

// quotaSim plays callers that want demand calls per second against an API
// whose token-bucket quota accepts perSecond (burst burst) and that
// throttles a further fraction random of the calls it would accept, for
// d of fake time through l.
type quotaSim struct {
	demand, perSecond float64
	burst             int
	random            float64
	trace             func(el time.Duration, accepted, throttled int) // called every second, if set
}

func (s quotaSim) run(l *AdaptiveLimiter, c *fakeClock, d time.Duration) (accepted, throttled int) {
	const step = time.Millisecond
	quota := rate.NewLimiter(rate.Limit(s.perSecond), s.burst)
	if s.perSecond <= 0 {
		quota.SetLimit(rate.Inf)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	due := 0.0
	for el := step; el <= d; el += step {
		c.advance(step)
		for due += s.demand * step.Seconds(); due >= 1; due-- {
			if !l.lim.AllowN(c.t, 1) {
				l.mu.Lock()
				l.held = true
				l.mu.Unlock()
				continue // the caller waits: its call is made later
			}
			if quota.AllowN(c.t, 1) && rnd.Float64() >= s.random {
				accepted++
				l.Observe(nil)
			} else {
				throttled++
				l.Observe(errQuota)
			}
		}
		if s.trace != nil && el%time.Second == 0 {
			s.trace(el, accepted, throttled)
		}
	}
	return accepted, throttled
}

// TestAdaptiveLimiterUnderAQuota plays callers against a token-bucket
// quota for a minute: the limiter must use the quota well, learn it within
// its first windows and then waste few calls on throttling; random
// throttling without a quota must never make it limit.
func TestAdaptiveLimiterUnderAQuota(t *testing.T) {
	tests := []struct {
		name        string
		sim         quotaSim
		wantLimited bool
	}{
		{"quota 20/s (burst 20), demand 100/s", quotaSim{demand: 100, perSecond: 20, burst: 20}, true},
		{"quota 5/s (burst 60), demand 50/s", quotaSim{demand: 50, perSecond: 5, burst: 60}, true},
		{"quota 20/s, demand 100/s, one call in a hundred throttled at random besides", quotaSim{demand: 100, perSecond: 20, burst: 20, random: 0.01}, true},
		{"no quota, a tenth of the calls throttled at random", quotaSim{demand: 100, random: 0.1}, false},
		{"no quota, a fifth throttled at random, demand 20/s", quotaSim{demand: 20, random: 0.2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Unix(1000, 0)}
			l := newAdaptiveLimiter(AdaptiveConfig{}, c.now)
			const (
				learn = 3 * time.Second
				d     = 60 * time.Second
			)
			var learnAcc, learnThr int
			tt.sim.trace = func(el time.Duration, accepted, throttled int) {
				if el == learn {
					learnAcc, learnThr = accepted, throttled
				}
			}
			accepted, throttled := tt.sim.run(l, c, d)
			if !tt.wantLimited {
				if l.Limit() != rate.Inf || l.Decreases() != 0 {
					t.Errorf("limit = %v after %d decreases, want never limited", l.Limit(), l.Decreases())
				}
				return
			}
			bound := (float64(tt.sim.burst) + tt.sim.perSecond*d.Seconds()) * (1 - tt.sim.random)
			steadyAcc, steadyThr := accepted-learnAcc, throttled-learnThr
			t.Logf("accepted %d of the quota bound %.0f, throttled %d (%d after %s), limit %.2f", accepted, bound, throttled, steadyThr, learn, l.Limit())
			if float64(accepted) < 0.9*bound {
				t.Errorf("accepted %d calls, want at least 90%% of the quota bound %.0f", accepted, bound)
			}
			// Random throttling is not the limiter's to avoid.
			if waste := float64(steadyThr) - tt.sim.random*float64(steadyAcc+steadyThr); waste > 0.05*float64(steadyAcc) {
				t.Errorf("after %s: %d throttled for %d accepted, want at most 5%% beyond the random ones", learn, steadyThr, steadyAcc)
			}
		})
	}
}

func TestAdaptiveLimiterWaitPastDeadlineIsTransient(t *testing.T) {
	l := NewAdaptiveLimiter(AdaptiveConfig{Initial: 0.5})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err != nil { // the one token of the burst
		t.Fatal(err)
	}
	err := l.Wait(ctx) // the next token is 2 s away
	if !errors.Is(err, context.DeadlineExceeded) || !gcperr.IsTransient(err) {
		t.Errorf("Wait past the deadline = %v, want a transient error wrapping context.DeadlineExceeded", err)
	}
}

func TestPacerRetriesThrottledCalls(t *testing.T) {
	errDenied := status.Error(codes.PermissionDenied, "no")
	tests := []struct {
		name      string
		results   []error // the call's answers in order (last repeats)
		retries   int
		wantCalls int
		wantErr   error
	}{
		{"success", []error{nil}, 4, 1, nil},
		{"throttled twice then accepted", []error{errQuota, errQuota, nil}, 4, 3, nil},
		{"throttled beyond the retries", []error{errQuota}, 2, 3, errQuota},
		{"no retries", []error{errQuota}, -1, 1, errQuota},
		{"other errors are not retried", []error{errDenied}, 4, 1, errDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPacer(&countingLimiter{}, AdaptiveConfig{}, tt.retries)
			var sleeps int
			p.sleep = func(context.Context, time.Duration) error { sleeps++; return nil }
			calls := 0
			got, err := paced(t.Context(), p, writeCall, func() (int, error) {
				r := tt.results[min(calls, len(tt.results)-1)]
				calls++
				return calls, r
			})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.wantCalls {
				t.Errorf("returned the answer of call %d, want the last (%d)", got, tt.wantCalls)
			}
			if calls != tt.wantCalls || sleeps != tt.wantCalls-1 {
				t.Errorf("calls, sleeps = %d, %d, want %d, %d", calls, sleeps, tt.wantCalls, tt.wantCalls-1)
			}
		})
	}
	// The write limiter learned from the throttling; the read one did not.
	c := &fakeClock{t: time.Unix(1000, 0)}
	p := newPacer(nil, AdaptiveConfig{}, -1)
	p.read, p.write = newAdaptiveLimiter(AdaptiveConfig{}, c.now), newAdaptiveLimiter(AdaptiveConfig{}, c.now)
	for i := 0; i < 200 && p.write.(*AdaptiveLimiter).Limit() == rate.Inf; i++ {
		c.advance(10 * time.Millisecond)
		err := errQuota
		if i%5 == 0 {
			err = nil
		}
		_, _ = paced(t.Context(), p, writeCall, func() (struct{}, error) { return struct{}{}, err })
	}
	if w, r := p.write.(*AdaptiveLimiter).Limit(), p.read.(*AdaptiveLimiter).Limit(); w == rate.Inf || r != rate.Inf {
		t.Errorf("limits after a throttled write: write %v, read %v; want write limited, read not", w, r)
	}
}

// countingLimiter is an explicit Limiter that observes.
type countingLimiter struct{ waits, observed int }

func (c *countingLimiter) Wait(context.Context) error { c.waits++; return nil }
func (c *countingLimiter) Observe(error)              { c.observed++ }

func TestPacerUsesAnExplicitLimiterForBothClasses(t *testing.T) {
	l := &countingLimiter{}
	p := newPacer(l, AdaptiveConfig{}, 0)
	ok := func() (struct{}, error) { return struct{}{}, nil }
	_, _ = paced(t.Context(), p, readCall, ok)
	_, _ = paced(t.Context(), p, writeCall, ok)
	if l.waits != 2 || l.observed != 2 {
		t.Errorf("waits, observed = %d, %d, want 2, 2", l.waits, l.observed)
	}
}

// TestAdaptiveLimiterRaiseReachesWaiters checks that callers already
// waiting benefit from a rate that rises (Wait reserves at most a slice
// ahead), so a low provisional rate cannot strand a queue of callers.
func TestAdaptiveLimiterRaiseReachesWaiters(t *testing.T) {
	l := NewAdaptiveLimiter(AdaptiveConfig{Initial: 1})
	if err := l.Wait(t.Context()); err != nil { // the burst token
		t.Fatal(err)
	}
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		_ = l.Wait(t.Context()) // 1 s away at the initial rate
		done <- time.Since(start)
	}()
	time.Sleep(20 * time.Millisecond)
	l.lim.SetLimit(1000)
	select {
	case d := <-done:
		if d > 300*time.Millisecond {
			t.Errorf("waiter took %v after the rate rose, want well under the old 1 s", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waiter never returned")
	}
}
