package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/iapguard/iapguard/functions"
)

// Config sizes a benchmark run.
type Config struct {
	Name string
	// Latency is injected on every Google API call in the single-event,
	// burst and concurrency scenarios.
	Latency time.Duration
	// N events per single-event scenario at Latency, N0 without latency.
	N, N0 int
	Burst BurstConfig
	// RSSEvents concurrent events for the peak-RSS scenario.
	RSSEvents int
	// Starts of each program in the start → serving scenario. With 15 a
	// run's ratio moved between 1.36× and 1.74× for one build (2026-12-07);
	// with 150, between 1.39× and 1.60×, most runs within 1.39–1.45×.
	Starts int
	// Only, when not empty, names the scenarios to run: warm, cold, lb,
	// direct, burst, rss, start.
	Only []string
	// Progress receives one line per step (nil: none).
	Progress io.Writer
}

func (c Config) runs(key string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, key) }

// Full is the committed run (1m49s on two cores in bench/results/full.txt).
func Full() Config {
	return Config{
		Name: "full", Latency: 50 * time.Millisecond, N: 40, N0: 10,
		Burst:     BurstConfig{Services: 500, PerSecond: 20, Burst: 20, Concurrency: 20, Latency: 50 * time.Millisecond},
		RSSEvents: 1000, Starts: 150,
	}
}

// Small is the CI-sized run (well under a minute).
func Small() Config {
	return Config{
		Name: "small", Latency: 50 * time.Millisecond, N: 8, N0: 4,
		Burst:     BurstConfig{Services: 60, PerSecond: 20, Burst: 20, Concurrency: 20, Latency: 50 * time.Millisecond},
		RSSEvents: 200, Starts: 5,
	}
}

// Report is everything a run measured.
type Report struct {
	Config  Config
	Started time.Time
	Took    time.Duration
	Env     string
	Singles []*Single
	Burst   *BurstResult
	// RSS holds the enforcer's figures as deployed (the target applies to
	// them), then uncapped for comparison.
	RSS   []*RSSResult
	Start *StartResult
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// Run runs every scenario, each single-event one and the burst in an
// environment of its own.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r := &Report{Config: cfg, Started: time.Now()}
	defer func() { r.Took = time.Since(r.Started) }()
	host, _ := os.Hostname()
	r.Env = fmt.Sprintf("%s %s/%s, %d CPUs (GOMAXPROCS %d), host %s", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), host)
	singles := []struct {
		key, name string
		run       func(context.Context, *Env, int, int, time.Duration) (*Single, error)
	}{
		{"warm", "warm compliant", WarmCompliant},
		{"cold", "cold instance", ColdInstance},
		{"lb", "LB non-compliant", LBNonCompliant},
		{"direct", "direct IAP", DirectIAP},
	}
	for _, s := range singles {
		if !cfg.runs(s.key) {
			continue
		}
		cfg.progress("scenario %s: %d events at %s, %d at 0", s.name, cfg.N, cfg.Latency, cfg.N0)
		res, err := withEnv(ctx, func(e *Env) (*Single, error) { return s.run(ctx, e, cfg.N, cfg.N0, cfg.Latency) })
		if err != nil {
			return r, err
		}
		r.Singles = append(r.Singles, res)
	}

	if cfg.runs("burst") {
		cfg.progress("scenario burst: %d services, quota %.0f/s (burst %d), concurrency %d", cfg.Burst.Services, cfg.Burst.PerSecond, cfg.Burst.Burst, cfg.Burst.Concurrency)
		b, err := withEnv(ctx, func(e *Env) (*BurstResult, error) { return Burst(ctx, e, cfg.Burst) })
		r.Burst = b
		if err != nil {
			return r, err
		}
	}
	if !cfg.runs("rss") && !cfg.runs("start") {
		return r, nil
	}

	root, err := ModuleRoot()
	if err != nil {
		return r, err
	}
	dir, err := os.MkdirTemp("", "iapbench-")
	if err != nil {
		return r, fmt.Errorf("making a build directory: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg.progress("building functions/cmd/enforcer and test/bench/hello")
	bins, err := Build(ctx, root, dir)
	if err != nil {
		return r, err
	}

	if cfg.runs("rss") {
		for _, p := range []struct {
			name, bin string
			env       []string
		}{
			{"functions/cmd/enforcer (IAPGUARD_MAX_CONCURRENT default: 100)", bins.Enforcer, nil},
			{"functions/cmd/enforcer uncapped (IAPGUARD_MAX_CONCURRENT=0), for comparison", bins.Enforcer, []string{functions.EnvMaxConcurrent + "=0"}},
		} {
			cfg.progress("scenario concurrent events: %d at once, peak RSS of %s", cfg.RSSEvents, p.name)
			rss, err := withEnv(ctx, func(e *Env) (*RSSResult, error) {
				return ConcurrentRSS(ctx, e, p.name, p.bin, p.env, cfg.RSSEvents, cfg.Latency)
			})
			if rss != nil {
				r.RSS = append(r.RSS, rss)
			}
			if err != nil {
				return r, err
			}
		}
	}
	if !cfg.runs("start") {
		return r, nil
	}

	cfg.progress("scenario start → serving: %d starts of each program", cfg.Starts)
	st, err := withEnv(ctx, func(e *Env) (*StartResult, error) {
		if err := warmUp(ctx, e); err != nil {
			return nil, err
		}
		entry, err := e.Label(ctx, "warmup", map[string]string{"iap": "enabled", "rev": "start"})
		if err != nil {
			return nil, err
		}
		return StartToServing(ctx, e, bins, cfg.Starts, entry)
	})
	r.Start = st
	return r, err
}

func withEnv[T any](ctx context.Context, f func(*Env) (T, error)) (T, error) {
	e, err := NewEnv(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer e.Close()
	return f(e)
}
