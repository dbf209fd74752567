package pushretry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var errFail = errors.New("status 500")

// fakeClock is a clock that only moves when told to: by a sleep, or by an
// attempt that takes time.
type fakeClock struct {
	t      time.Time
	sleeps []time.Duration
}

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return ctx.Err()
}

func newFake(p Policy, seed uint64) (*Retrier, *fakeClock) {
	r := New(p, seed)
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r.now, r.sleep = c.now, c.sleep
	return r, c
}

// bounds is the documented range of the wait after the n-th failure.
func bounds(p Policy, n int) (lo, hi time.Duration) {
	w := p.BackoffBase
	for i := 1; i < n; i++ {
		w = min(2*w, p.BackoffMax)
	}
	w = min(w, p.BackoffMax)
	return w - w/2, w
}

func TestDo(t *testing.T) {
	fast := Policy{BackoffBase: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond}
	tests := []struct {
		name   string
		policy Policy
		// fail is how many attempts fail before one succeeds (-1: all fail).
		fail int
		// took is how long each attempt takes on the fake clock.
		took time.Duration
		// cancelOn cancels the context during that attempt (0: never);
		// cancelSleep cancels it during that wait.
		cancelOn, cancelSleep int
		want                  Result
		wantCounts            Counts
	}{
		{
			name: "first attempt succeeds", policy: fast, fail: 0,
			want:       Result{Verdict: Delivered, Attempts: 1},
			wantCounts: Counts{Attempts: 1, Delivered: 1},
		},
		{
			name: "succeeds after 4 failures", policy: fast, fail: 4,
			want:       Result{Verdict: Delivered, Attempts: 5},
			wantCounts: Counts{Attempts: 5, Delivered: 1, Retried: 4},
		},
		{
			name: "gives up at max attempts", policy: Policy{BackoffBase: time.Millisecond, MaxAttempts: 3}, fail: -1,
			want:       Result{Verdict: GaveUpAttempts, Attempts: 3, Err: errFail},
			wantCounts: Counts{Attempts: 3, Retried: 2, Dropped: 1},
		},
		{
			name: "max attempts 1 never retries", policy: Policy{MaxAttempts: 1}, fail: -1,
			want:       Result{Verdict: GaveUpAttempts, Attempts: 1, Err: errFail},
			wantCounts: Counts{Attempts: 1, Dropped: 1},
		},
		{
			// Each attempt takes 1 s and waits are at most 10 ms: the third
			// failure ends past 3 s, beyond the 2.5 s retention.
			name: "gives up by retention", took: time.Second, fail: -1,
			policy:     Policy{BackoffBase: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond, Retention: 2500 * time.Millisecond},
			want:       Result{Verdict: GaveUpRetention, Attempts: 3, Err: errFail},
			wantCounts: Counts{Attempts: 3, Retried: 2, Dropped: 1},
		},
		{
			// The first wait (at least 50 ms) already starts past retention.
			name: "retention shorter than the first wait", fail: -1,
			policy:     Policy{BackoffBase: 100 * time.Millisecond, Retention: time.Millisecond},
			want:       Result{Verdict: GaveUpRetention, Attempts: 1, Err: errFail},
			wantCounts: Counts{Attempts: 1, Dropped: 1},
		},
		{
			name: "retention is checked after the attempt cap", fail: -1,
			policy:     Policy{BackoffBase: 100 * time.Millisecond, Retention: time.Millisecond, MaxAttempts: 1},
			want:       Result{Verdict: GaveUpAttempts, Attempts: 1, Err: errFail},
			wantCounts: Counts{Attempts: 1, Dropped: 1},
		},
		{
			name: "context ends during an attempt", policy: fast, fail: -1, cancelOn: 2,
			want:       Result{Verdict: Canceled, Attempts: 2, Err: errFail},
			wantCounts: Counts{Attempts: 2, Retried: 1},
		},
		{
			name: "context ends during a wait", policy: fast, fail: -1, cancelSleep: 1,
			want:       Result{Verdict: Canceled, Attempts: 1, Err: errFail},
			wantCounts: Counts{Attempts: 1, Retried: 1},
		},
		{
			name: "success counts even when the context ended", policy: fast, fail: 1, cancelOn: 2,
			want:       Result{Verdict: Delivered, Attempts: 2},
			wantCounts: Counts{Attempts: 2, Delivered: 1, Retried: 1},
		},
		{
			name: "context ending beats the attempt cap", policy: Policy{MaxAttempts: 1}, fail: -1, cancelOn: 1,
			want:       Result{Verdict: Canceled, Attempts: 1, Err: errFail},
			wantCounts: Counts{Attempts: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, clock := newFake(tt.policy, 7)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelSleep > 0 {
				sleep := r.sleep
				r.sleep = func(sctx context.Context, d time.Duration) error {
					if len(clock.sleeps)+1 == tt.cancelSleep {
						cancel()
					}
					return sleep(sctx, d)
				}
			}
			since := clock.now()
			calls := 0
			var retries []int
			got := r.Do(ctx, since, func(actx context.Context) error {
				calls++
				if calls > 50 { // the loop did not stop: end it so the test fails rather than hangs
					cancel()
				}
				clock.t = clock.t.Add(tt.took)
				if calls == tt.cancelOn {
					cancel()
				}
				if tt.fail >= 0 && calls > tt.fail {
					return nil
				}
				return errFail
			}, func(attempt int, wait time.Duration, err error) {
				retries = append(retries, attempt)
				if lo, hi := bounds(r.policy, attempt); wait < lo || wait > hi || !errors.Is(err, errFail) {
					t.Errorf("retry after attempt %d: wait %v err %v, want wait in [%v, %v] and the attempt's error", attempt, wait, err, lo, hi)
				}
			})
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
				t.Errorf("Do result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCounts, r.Counts()); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if calls != got.Attempts {
				t.Errorf("fn called %d times, result says %d attempts", calls, got.Attempts)
			}
			if int64(len(retries)) != tt.wantCounts.Retried || len(clock.sleeps) != len(retries) {
				t.Errorf("onRetry called %d times, slept %d times; want %d each", len(retries), len(clock.sleeps), tt.wantCounts.Retried)
			}
			for i, d := range clock.sleeps {
				if lo, hi := bounds(r.policy, i+1); d < lo || d > hi {
					t.Errorf("wait %d = %v, want in [%v, %v]", i+1, d, lo, hi)
				}
			}
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	r := New(Policy{Timeout: 3 * time.Second}, 1)
	before := time.Now()
	err := r.Attempt(context.Background(), func(ctx context.Context) error {
		dl, ok := ctx.Deadline()
		if !ok || dl.Before(before) || dl.After(before.Add(3*time.Second).Add(time.Minute)) {
			return errors.New("attempt context has no deadline around Timeout")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The attempt's context derives from the caller's.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Attempt(ctx, func(actx context.Context) error { return actx.Err() }); !errors.Is(err, context.Canceled) {
		t.Errorf("attempt under a cancelled context: %v, want context.Canceled", err)
	}
	if got := r.Counts().Attempts; got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
}

func TestBackoffBoundedAndJittered(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
	}{
		{"defaults", Policy{}},
		{"small", Policy{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}},
		{"max below base is raised", Policy{BackoffBase: 200 * time.Millisecond, BackoffMax: 10 * time.Millisecond}},
		{"max not a power-of-two multiple", Policy{BackoffBase: 30 * time.Millisecond, BackoffMax: 100 * time.Millisecond}},
		{"one nanosecond", Policy{BackoffBase: 1, BackoffMax: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.policy, 99)
			p := r.policy
			if p.BackoffMax < p.BackoffBase {
				t.Fatalf("policy %+v: max below base", p)
			}
			for n := 1; n <= 40; n++ {
				lo, hi := bounds(p, n)
				seen := map[time.Duration]bool{}
				for range 200 {
					w := r.Backoff(n)
					if w < lo || w > hi {
						t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", n, w, lo, hi)
					}
					seen[w] = true
				}
				if hi-lo >= 100 && len(seen) < 2 {
					t.Errorf("Backoff(%d) always %v: not jittered", n, hi)
				}
			}
		})
	}
}

func TestBackoffGrowsToMax(t *testing.T) {
	// The ranges of successive attempts, as documented: 100 ms doubling to 5 s.
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	p := New(Policy{}, 1).policy
	for i, ms := range want {
		if _, hi := bounds(p, i+1); hi != ms*time.Millisecond {
			t.Errorf("upper bound after attempt %d = %v, want %v", i+1, hi, ms*time.Millisecond)
		}
	}
}

func TestBackoffSeeded(t *testing.T) {
	a, b := New(Policy{}, 5), New(Policy{}, 5)
	for n := 1; n <= 20; n++ {
		if wa, wb := a.Backoff(n), b.Backoff(n); wa != wb {
			t.Fatalf("same seed, Backoff(%d) = %v and %v", n, wa, wb)
		}
	}
}

func TestDefaults(t *testing.T) {
	got := New(Policy{MaxAttempts: -3}, 1).policy
	want := Policy{BackoffBase: 100 * time.Millisecond, BackoffMax: 5 * time.Second, Retention: 24 * time.Hour, Timeout: 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Ce-Id") != "x1" || string(body) != "payload" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/fail":
			http.Error(w, "boom", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	header := http.Header{"Ce-Id": {"x1"}, "Content-Type": {"application/json"}}
	tests := []struct {
		name    string
		target  string
		wantErr string // substring; "" means success
	}{
		{"2xx is success", srv.URL + "/ok", ""},
		{"non-2xx is an error", srv.URL + "/fail", "status 503"},
		{"transport error", deadURL, "posting to " + deadURL},
		{"bad URL", "://nope", "building request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Post(context.Background(), srv.Client(), tt.target, header, []byte("payload"))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Post: %v, want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Post: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
