package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is one of the performance targets, checked.
type Target struct {
	What     string
	Measured string
	Met      bool
}

// Targets checks the report against the targets: ≤ 1.1× the minimum
// rounds and calls per single event (warm compliant: one round, zero
// writes); the burst at ≥ 90 % of the quota-bound rate with no failed
// outcome and ≤ 5 % extra calls; start → first answer ≤ 2× hello-world;
// peak RSS ≤ 128 MiB under the concurrent events.
func (r *Report) Targets() []Target {
	var ts []Target
	for _, s := range r.Singles {
		rr := Ratio(float64(s.RoundsCounted()), float64(s.Min.Rounds))
		cr := Ratio(s.CallsTotal(), float64(s.Min.Calls.Total()))
		ts = append(ts,
			Target{s.Name + ": round trips ≤ 1.1× minimum", fmt.Sprintf("%d vs %d (%s)", s.RoundsCounted(), s.Min.Rounds, frac(rr)), rr <= 1.1},
			Target{s.Name + ": calls ≤ 1.1× minimum", fmt.Sprintf("%.1f vs %d (%s)", s.CallsTotal(), s.Min.Calls.Total(), frac(cr)), cr <= 1.1},
		)
		if s.Name == "warm compliant" {
			ts = append(ts, Target{s.Name + ": zero writes", fmt.Sprintf("%.1f", s.WritesTotal()), s.WritesTotal() == 0})
		}
		if p := s.Problems(); len(p) > 0 {
			ts = append(ts, Target{s.Name + ": expected outcome", p[0], false})
		}
	}
	if b := r.Burst; b != nil && b.Elapsed > 0 {
		ts = append(ts,
			Target{"burst: ≥ 90% of the quota-bound rate", fmt.Sprintf("%.1f%%", 100*b.RateRatio()), b.RateRatio() >= 0.9},
			Target{"burst: 0 failed outcomes (and no event answered with an error)",
				fmt.Sprintf("%d failed, %d redelivered", b.Outcomes["failed"], b.Redelivered), b.Outcomes["failed"] == 0 && b.Redelivered == 0},
			Target{"burst: ≤ 5% calls beyond the minimum", fmt.Sprintf("%+.1f%%", 100*b.ExtraCalls()), b.ExtraCalls() <= 0.05},
			Target{"burst: every service compliant afterwards", fmt.Sprintf("%d not compliant", len(b.NonCompliant)), len(b.NonCompliant) == 0},
		)
	}
	if s := r.Start; s != nil && len(s.Hello) > 0 && len(s.Enforcer) > 0 {
		ts = append(ts, Target{"start → first answer ≤ 2× hello-world", frac(s.Ratio()), s.Ratio() <= 2})
	}
	if len(r.RSS) > 0 && r.RSS[0].PeakRSS > 0 {
		m := r.RSS[0]
		ts = append(ts, Target{fmt.Sprintf("peak RSS ≤ 128 MiB at %d concurrent events", m.Events), mib(m.PeakRSS), m.PeakRSS <= 128<<20})
	}
	return ts
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Format writes the report as text.
func (r *Report) Format(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	c := r.Config
	p("iapguard performance — run %q — %s (took %s)", c.Name, r.Started.UTC().Format(time.RFC3339), r.Took.Round(time.Second))
	p("%s", r.Env)
	p("Injected latency L = %s before every Google API call (Cloud Run, operations, Compute, Service Usage, IAP); none on Pub/Sub.", c.Latency)
	p("Event → outcome: POST of the CloudEvent to the function → its answer, which comes after Pub/Sub accepted the outcome.")
	p("")

	if len(r.Singles) > 0 {
		p("== Single events: %d at L, %d at 0 per scenario ==", c.N, c.N0)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\tp50\tp99\tp50 at 0\tminimum p50\tratio\trounds (latency)\trounds (counted)\tmin rounds\tratio\tcalls\tmin calls\tratio\twrites\tmin writes\t")
		for _, s := range r.Singles {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%d\t%d\t%s\t%.1f\t%d\t%s\t%.1f\t%d\t\n",
				s.Name, ms(s.P50()), ms(s.P99()), ms(s.P50Zero()), ms(s.MinLatency()),
				frac(Ratio(float64(s.P50()), float64(s.MinLatency()))),
				s.RoundsByLatency(), s.RoundsCounted(), s.Min.Rounds, frac(Ratio(float64(s.RoundsCounted()), float64(s.Min.Rounds))),
				s.CallsTotal(), s.Min.Calls.Total(), frac(Ratio(s.CallsTotal(), float64(s.Min.Calls.Total()))),
				s.WritesTotal(), s.Min.Calls.Writes())
		}
		tw.Flush()
		p("minimum p50 = min rounds × L + p50 at 0. rounds (latency) = (p50 − p50 at 0) / L; rounds (counted) = median of the")
		p("longest chain of calls each sent after the previous one was answered (recorder timestamps).")
		p("The fixed cost (p50 at 0) is mostly the outcome publish; medians at L, last API answer → publish request, and publish:")
		for _, s := range r.Singles {
			before, pub := s.PublishP50()
			p("   %-18s %s + %s", s.Name, ms(before), ms(pub))
		}
		p("")
		for _, s := range r.Singles {
			p("-- %s: %s (outcome %s)", s.Name, s.What, s.Want)
			per := s.CallsPerEvent()
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "   method\tcalls/event\tminimum\t")
			for _, m := range Methods(s.Min.Calls, callsOfFloat(per)) {
				fmt.Fprintf(tw, "   %s\t%.2f\t%d\t\n", m, per[m], s.Min.Calls[m])
			}
			tw.Flush()
			if s.CallsVary() {
				p("   (calls differed between events; figures are means)")
			}
			if probs := s.Problems(); len(probs) > 0 {
				p("   unexpected outcomes: %s", strings.Join(probs, "; "))
			}
		}
		p("")
	}

	if b := r.Burst; b != nil {
		bc := b.Config
		p("== Burst: %d labelled public services, Cloud Run write quota %.0f/s (burst %d), %d events in flight, L = %s ==",
			bc.Services, bc.PerSecond, bc.Burst, bc.Concurrency, bc.Latency)
		if b.Elapsed > 0 {
			p("time to converge        %s   quota-bound minimum %s   → %.1f%% of the quota-bound rate",
				b.Elapsed.Round(time.Millisecond), b.MinTime.Round(time.Millisecond), 100*b.RateRatio())
			p("Cloud Run writes        %d (minimum %d)   achieved %.2f writes/s", RunWrites(b.Calls), RunWrites(b.Min.Calls),
				float64(RunWrites(b.Calls))/b.Elapsed.Seconds())
			p("calls                   %d (minimum %d)   %+.1f%% beyond the minimum; %d answered RESOURCE_EXHAUSTED",
				b.Calls.Total(), b.Min.Calls.Total(), 100*b.ExtraCalls(), b.Throttled)
			p("outcomes                %v   redelivered events %d   not compliant afterwards %d", b.Outcomes, b.Redelivered, len(b.NonCompliant))
			p("event → outcome         p50 %s   p99 %s   (from the start of the burst)", ms(Percentile(b.Acked, 50)), ms(Percentile(b.Acked, 99)))
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "   method\tcalls\tminimum\t")
			for _, m := range Methods(b.Calls, b.Min.Calls) {
				fmt.Fprintf(tw, "   %s\t%d\t%d\t\n", m, b.Calls[m], b.Min.Calls[m])
			}
			tw.Flush()
		}
		p("")
	}

	for _, m := range r.RSS {
		p("== %d concurrent events to one process of %s, L = %s ==", m.Events, m.Program, m.Latency)
		p("RSS idle %s   peak (VmHWM) %s", mib(m.IdleRSS), mib(m.PeakRSS))
		if len(m.Latencies) > 0 {
			p("event → outcome p50 %s   p99 %s   non-2xx answers %d   outcomes %v",
				ms(Percentile(m.Latencies, 50)), ms(Percentile(m.Latencies, 99)), m.Non2xx, m.Outcomes)
			p("calls %d (minimum %d, %s)", m.Calls.Total(), m.Min.Calls.Total(), frac(Ratio(float64(m.Calls.Total()), float64(m.Min.Calls.Total()))))
		}
		p("")
	}

	if s := r.Start; s != nil {
		p("== Process start → first HTTP answer, %d starts each (alternating) ==", len(s.Enforcer))
		p("hello-world (test/bench/hello)   p50 %s   min %s   max %s", ms(Percentile(s.Hello, 50)), ms(Percentile(s.Hello, 0)), ms(Percentile(s.Hello, 100)))
		p("enforcer (functions/cmd/enforcer) p50 %s   min %s   max %s   → %s hello-world",
			ms(Percentile(s.Enforcer, 50)), ms(Percentile(s.Enforcer, 0)), ms(Percentile(s.Enforcer, 100)), frac(s.Ratio()))
		if len(s.FirstEvent) > 0 {
			p("enforcer start → first event handled (instance built on it, no latency)   p50 %s   max %s",
				ms(Percentile(s.FirstEvent, 50)), ms(Percentile(s.FirstEvent, 100)))
		}
		p("")
	}

	p("== Targets ==")
	for _, t := range r.Targets() {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		p("%s  %s: %s", mark, t.What, t.Measured)
	}
}

func callsOfFloat(m map[string]float64) Calls {
	out := Calls{}
	for k, v := range m {
		if v > 0 {
			out[k] = 1
		}
	}
	return out
}

// WriteReport writes r's text (a *Report or an *OrgReport) to path,
// creating its directory.
func WriteReport(r interface{ Format(io.Writer) }, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	var b strings.Builder
	r.Format(&b)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}
