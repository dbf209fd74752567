package bench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator/core"
)

// at builds a call from offsets in milliseconds.
func at(start, end int) Call {
	t0 := time.Unix(0, 0)
	return Call{Start: t0.Add(time.Duration(start) * time.Millisecond), End: t0.Add(time.Duration(end) * time.Millisecond)}
}

func TestRounds(t *testing.T) {
	tests := []struct {
		name  string
		calls []Call
		want  int
	}{
		{"none", nil, 0},
		{"one", []Call{at(0, 50)}, 1},
		{"concurrent read round", []Call{at(0, 50), at(1, 51), at(2, 53), at(1, 52)}, 1},
		{"reads then two writes", []Call{at(0, 50), at(1, 51), at(52, 102), at(103, 153)}, 3},
		{"next sent exactly at the answer", []Call{at(0, 50), at(50, 100)}, 2},
		{"a long call spanning two short ones", []Call{at(0, 120), at(0, 50), at(55, 105)}, 2},
		{"unsorted input", []Call{at(103, 153), at(0, 50), at(52, 102)}, 3},
		{"two independent chains count once", []Call{at(0, 50), at(51, 101), at(0, 49), at(50, 100)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rounds(tt.calls); got != tt.want {
				t.Errorf("Rounds = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"median of ten is the fifth", ds, 50, 5},
		{"p99 of ten is the largest", ds, 99, 10},
		{"p0 is the smallest", ds, 0, 1},
		{"single", []time.Duration{7}, 99, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		name              string
		measured, minimum float64
		want              float64
	}{
		{"equal", 4, 4, 1},
		{"one extra round in four", 5, 4, 1.25},
		{"zero of zero", 0, 0, 1},
		{"something of nothing", 1, 0, math.Inf(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Ratio(tt.measured, tt.minimum); got != tt.want {
				t.Errorf("Ratio(%v, %v) = %v, want %v", tt.measured, tt.minimum, got, tt.want)
			}
		})
	}
}

func TestQuotaBoundTime(t *testing.T) {
	tests := []struct {
		name   string
		writes int
		rate   float64
		burst  int
		rounds int
		lat    time.Duration
		want   time.Duration
	}{
		{"all within the burst", 10, 20, 20, 4, 50 * time.Millisecond, 200 * time.Millisecond},
		{"1000 writes at 20/s after a burst of 20", 1000, 20, 20, 4, 50 * time.Millisecond, 49*time.Second + 200*time.Millisecond},
		{"no latency", 120, 20, 20, 4, 0, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QuotaBoundTime(tt.writes, tt.rate, tt.burst, tt.rounds, tt.lat); got != tt.want {
				t.Errorf("QuotaBoundTime = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMinimums checks the hand derivations against the design's rules:
// every scenario reads the same four things, writes are what the
// compliance rules name, each Cloud Run or Compute write is followed by one
// operation poll.
func TestMinimums(t *testing.T) {
	type fig struct{ Rounds, Calls, Writes, RunWrites int64 }
	figs := func(m Minimum) fig {
		return fig{int64(m.Rounds), m.Calls.Total(), m.Calls.Writes(), RunWrites(m.Calls)}
	}
	tests := []struct {
		name string
		min  Minimum
		want fig
	}{
		{"warm compliant: one read round, no writes", MinWarmCompliant(), fig{1, 4, 0, 0}},
		{"cold: generateServiceIdentity joins the read round", MinColdCompliant(), fig{1, 5, 1, 0}},
		{"LB: three writes, two frontend lists, an IAP policy, two polls", MinLBNonCompliant(), fig{4, 12, 3, 2}},
		{"direct: two ordered writes, an IAP policy and a poll", MinDirect(), fig{4, 8, 2, 2}},
		{"burst of 500: 500 direct reconciles, one agent and one project IAP policy", MinBurst(500), fig{4, 4002, 1001, 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, figs(tt.min)); d != "" {
				t.Errorf("minimum (-want +got):\n%s", d)
			}
			for m := range tt.min.Calls {
				if strings.HasPrefix(m, "google.pubsub.") {
					t.Errorf("minimum counts Pub/Sub call %s", m)
				}
			}
		})
	}
	// Every Compute or Cloud Run write is followed by one operation poll.
	for _, m := range []Minimum{MinLBNonCompliant(), MinDirect()} {
		if polls := m.Calls[mGetOperation] + m.Calls[mWaitGlobalOp]; polls != m.Calls.Writes()-m.Calls[mSetIAMPolicy] {
			t.Errorf("%v: %d operation polls for %d operation-returning writes", m.Calls, polls, m.Calls.Writes()-m.Calls[mSetIAMPolicy])
		}
	}
	if core.ClassOf(mGetOperation) != core.Read || core.ClassOf(mUpdateService) != core.Write {
		t.Error("the emulator's quota classes changed; revisit the minimums")
	}
}

// TestWarmCompliantIsOneRound runs the warm-compliant scenario for real,
// small: it proves the harness measures (recorder, stats, outcomes) and
// guards the headline property — a compliant service costs one concurrent
// read round, the minimum calls and no writes.
func TestWarmCompliantIsOneRound(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	e, err := NewEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s, err := WarmCompliant(ctx, e, 3, 1, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Problems(); len(p) > 0 {
		t.Fatalf("unexpected outcomes: %v", p)
	}
	if got := s.RoundsCounted(); got != 1 {
		t.Errorf("rounds counted = %d, want 1", got)
	}
	if s.P50() < 30*time.Millisecond {
		t.Errorf("event → outcome p50 = %v, want at least the one round's 30 ms", s.P50())
	}
	want := map[string]float64{}
	for k, v := range MinWarmCompliant().Calls {
		want[k] = float64(v)
	}
	if d := cmp.Diff(want, s.CallsPerEvent()); d != "" {
		t.Errorf("calls per event (-minimum +got):\n%s", d)
	}
}

// TestPerformance is the benchmark run. It runs only when IAPGUARD_BENCH
// names a configuration ("full" or "small") and writes its report to
// bench/results/NAME.txt at the module root:
//
//	IAPGUARD_BENCH=full go test ./test/bench -run TestPerformance -v -timeout 30m
//
// IAPGUARD_BENCH_ONLY=burst,rss (a comma-separated list of warm, cold, lb,
// direct, burst, rss, start) runs only those scenarios and writes
// NAME-burst-rss.txt. It fails when a target is missed (after writing the
// report).
func TestPerformance(t *testing.T) {
	var cfg Config
	switch name := os.Getenv("IAPGUARD_BENCH"); name {
	case "":
		t.Skip("set IAPGUARD_BENCH=full or IAPGUARD_BENCH=small to run the benchmark")
	case "full":
		cfg = Full()
	case "small":
		cfg = Small()
	default:
		t.Fatalf("IAPGUARD_BENCH=%q: want full or small", name)
	}
	if only := os.Getenv("IAPGUARD_BENCH_ONLY"); only != "" {
		cfg.Only = strings.Split(only, ",")
		cfg.Name += "-" + strings.ReplaceAll(only, ",", "-")
	}
	cfg.Progress = testWriter{t}
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "bench", "results", cfg.Name+".txt")
	if err := WriteReport(r, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("report written to %s", path)
	for _, tg := range r.Targets() {
		if !tg.Met {
			t.Errorf("target missed: %s: %s", tg.What, tg.Measured)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// BenchmarkSingleEvents measures one event per iteration for each
// single-event scenario at L = 50 ms and reports rounds and calls per event
// next to their minimums:
//
//	go test ./test/bench -run '^$' -bench . -benchtime 20x
func BenchmarkSingleEvents(b *testing.B) {
	for _, sc := range []struct {
		name string
		run  func(context.Context, *Env, int, int, time.Duration) (*Single, error)
	}{
		{"warm-compliant", WarmCompliant}, {"cold-instance", ColdInstance},
		{"lb-non-compliant", LBNonCompliant}, {"direct-iap", DirectIAP},
	} {
		b.Run(sc.name, func(b *testing.B) {
			ctx := context.Background()
			e, err := NewEnv(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.ResetTimer()
			s, err := sc.run(ctx, e, b.N, 0, 50*time.Millisecond)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			var total time.Duration
			for _, m := range s.AtL {
				total += m.Latency
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns-event→outcome/op")
			b.ReportMetric(float64(s.RoundsCounted()), "rounds")
			b.ReportMetric(float64(s.Min.Rounds), "min-rounds")
			b.ReportMetric(s.CallsTotal(), "calls/op")
			b.ReportMetric(float64(s.Min.Calls.Total()), "min-calls/op")
		})
	}
}
