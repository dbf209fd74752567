package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/pkg/outcome"
)

var enabled = map[string]string{"iap": "enabled"}

// Single is the result of a single-event scenario: N events measured with
// latency L injected on every Google API call, and N0 with none (to tell
// the round trips from the fixed costs: decoding, CPU, the outcome publish).
type Single struct {
	Name, What string
	Latency    time.Duration
	Min        Minimum
	Want       outcome.Kind
	AtL        []Measured
	AtZero     []Measured
}

func latencies(ms []Measured) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = m.Latency
	}
	return out
}

// P50 and P99 of event → outcome at L.
func (s *Single) P50() time.Duration { return Percentile(latencies(s.AtL), 50) }
func (s *Single) P99() time.Duration { return Percentile(latencies(s.AtL), 99) }

// P50Zero is the median event → outcome without injected latency.
func (s *Single) P50Zero() time.Duration { return Percentile(latencies(s.AtZero), 50) }

// PublishP50 is the median time from the last Google API answer to the
// outcome's publish request, and the median publish round trip.
func (s *Single) PublishP50() (before, publish time.Duration) {
	b, p := make([]time.Duration, len(s.AtL)), make([]time.Duration, len(s.AtL))
	for i, m := range s.AtL {
		b[i], p[i] = m.BeforePublish, m.Publish
	}
	return Percentile(b, 50), Percentile(p, 50)
}

// RoundsByLatency estimates the sequential round trips as
// (p50 at L − p50 at 0) / L.
func (s *Single) RoundsByLatency() float64 {
	return float64(s.P50()-s.P50Zero()) / float64(s.Latency)
}

// RoundsCounted is the median of the rounds counted from the recorder's
// timestamps at L.
func (s *Single) RoundsCounted() int {
	rs := make([]int, len(s.AtL))
	for i, m := range s.AtL {
		rs[i] = m.Rounds
	}
	slices.Sort(rs)
	if len(rs) == 0 {
		return 0
	}
	return rs[(len(rs)-1)/2]
}

// MinLatency is the event → outcome time the minimum allows: its rounds at
// L plus the fixed costs measured at 0.
func (s *Single) MinLatency() time.Duration {
	return time.Duration(s.Min.Rounds)*s.Latency + s.P50Zero()
}

// CallsPerEvent is the mean number of calls per method over every measured
// event (they are normally identical).
func (s *Single) CallsPerEvent() map[string]float64 {
	out := map[string]float64{}
	all := append(slices.Clone(s.AtL), s.AtZero...)
	for _, m := range all {
		for k, v := range m.Calls {
			out[k] += float64(v) / float64(len(all))
		}
	}
	return out
}

// CallsVary reports whether the events did not all make the same calls.
func (s *Single) CallsVary() bool {
	all := append(slices.Clone(s.AtL), s.AtZero...)
	for _, m := range all[1:] {
		if fmt.Sprint(m.Calls) != fmt.Sprint(all[0].Calls) {
			return true
		}
	}
	return false
}

func sum(m map[string]float64, pred func(string) bool) float64 {
	var n float64
	for k, v := range m {
		if pred == nil || pred(k) {
			n += v
		}
	}
	return n
}

// CallsTotal and WritesTotal are per event (means).
func (s *Single) CallsTotal() float64 { return sum(s.CallsPerEvent(), nil) }
func (s *Single) WritesTotal() float64 {
	return sum(s.CallsPerEvent(), func(k string) bool { return core.ClassOf(k) == core.Write })
}

// Problems lists outcomes that were not the expected one.
func (s *Single) Problems() []string {
	var out []string
	for _, m := range append(slices.Clone(s.AtL), s.AtZero...) {
		if m.Outcome != s.Want {
			out = append(out, fmt.Sprintf("event %s: outcome %s, want %s", m.EventID, m.Outcome, s.Want))
		}
	}
	return out
}

// singleSpec describes a single-event scenario: prepare builds the state
// for one event (without latency) and returns the entry to deliver and the
// service it concerns.
type singleSpec struct {
	name, what string
	min        Minimum
	want       outcome.Kind
	prepare    func(ctx context.Context, e *Env, i int) (*core.LogEntry, string, error)
}

func runSingle(ctx context.Context, e *Env, sp singleSpec, n, n0 int, latency time.Duration) (*Single, error) {
	s := &Single{Name: sp.name, What: sp.what, Latency: latency, Min: sp.min, Want: sp.want}
	for i := range n0 + n {
		entry, svc, err := sp.prepare(ctx, e, i)
		if err != nil {
			return s, fmt.Errorf("%s: preparing event %d: %w", sp.name, i, err)
		}
		l := latency
		if i < n0 {
			l = 0
		}
		m, err := e.Measure(ctx, entry, svc, l)
		if err != nil {
			return s, fmt.Errorf("%s: event %d: %w", sp.name, i, err)
		}
		if i < n0 {
			s.AtZero = append(s.AtZero, m)
		} else {
			s.AtL = append(s.AtL, m)
		}
	}
	return s, nil
}

// remediate labels a new service and lets iapguard make it compliant
// (no latency), so later events find it compliant.
func remediate(ctx context.Context, e *Env, spec demo.ServiceSpec, lb bool) error {
	entry, err := createLabelled(ctx, e, spec, lb)
	if err != nil {
		return err
	}
	m, err := e.Measure(ctx, entry, spec.Name, 0)
	if err != nil {
		return err
	}
	if m.Outcome != outcome.Remediated {
		return fmt.Errorf("setting up %s: outcome %s, want remediated: %w", spec.Name, m.Outcome, errUnexpected)
	}
	return nil
}

// createLabelled creates a service (behind an HTTPS load balancer when lb)
// and labels it iap=enabled; it returns the audit entry of the labelling.
func createLabelled(ctx context.Context, e *Env, spec demo.ServiceSpec, lb bool) (*core.LogEntry, error) {
	if _, err := e.Users.CreateService(ctx, e.Project, Region, spec); err != nil {
		return nil, err
	}
	if lb {
		if _, err := e.Users.BuildLoadBalancer(ctx, e.Project, Region, demo.LBSpec{Service: spec.Name}); err != nil {
			return nil, err
		}
	}
	return e.Label(ctx, spec.Name, enabled)
}

// relabel makes a harmless user change to a compliant service (a label
// other than iap) and returns its audit entry.
func relabel(ctx context.Context, e *Env, svc string, i int) (*core.LogEntry, string, error) {
	entry, err := e.Label(ctx, svc, map[string]string{"iap": "enabled", "rev": strconv.Itoa(i)})
	return entry, svc, err
}

// WarmCompliant: an instance that has handled events before gets an event
// about a compliant service behind a load balancer.
func WarmCompliant(ctx context.Context, e *Env, n, n0 int, latency time.Duration) (*Single, error) {
	if err := remediate(ctx, e, demo.ServiceSpec{Name: "warm", Public: true}, true); err != nil {
		return nil, err
	}
	return runSingle(ctx, e, singleSpec{
		name: "warm compliant", what: "compliant service behind an HTTPS load balancer; instance already warm",
		min: MinWarmCompliant(), want: outcome.Compliant,
		prepare: func(ctx context.Context, e *Env, i int) (*core.LogEntry, string, error) {
			return relabel(ctx, e, "warm", i)
		},
	}, n, n0, latency)
}

// ColdInstance: the same event handled by a brand-new instance (its clients
// are built and the IAP service agent looked up inside the measurement, as
// on Cloud Run's first request to a new instance).
func ColdInstance(ctx context.Context, e *Env, n, n0 int, latency time.Duration) (*Single, error) {
	if err := remediate(ctx, e, demo.ServiceSpec{Name: "cold", Public: true}, true); err != nil {
		return nil, err
	}
	return runSingle(ctx, e, singleSpec{
		name: "cold instance", what: "compliant service behind an HTTPS load balancer; first event of a new instance",
		min: MinColdCompliant(), want: outcome.Compliant,
		prepare: func(ctx context.Context, e *Env, i int) (*core.LogEntry, string, error) {
			entry, svc, err := relabel(ctx, e, "cold", i)
			e.Cold()
			return entry, svc, err
		},
	}, n, n0, latency)
}

// LBNonCompliant: a public, ingress-all service behind an HTTPS load
// balancer whose backend has IAP off is labelled.
func LBNonCompliant(ctx context.Context, e *Env, n, n0 int, latency time.Duration) (*Single, error) {
	if err := warmUp(ctx, e); err != nil {
		return nil, err
	}
	return runSingle(ctx, e, singleSpec{
		name: "LB non-compliant", what: "public, ingress all, behind an HTTPS load balancer with IAP off; labelled",
		min: MinLBNonCompliant(), want: outcome.Remediated,
		prepare: func(ctx context.Context, e *Env, i int) (*core.LogEntry, string, error) {
			name := fmt.Sprintf("lb-%d", i)
			entry, err := createLabelled(ctx, e, demo.ServiceSpec{Name: name, Public: true}, true)
			return entry, name, err
		},
	}, n, n0, latency)
}

// DirectIAP: a public service without a load balancer is labelled.
func DirectIAP(ctx context.Context, e *Env, n, n0 int, latency time.Duration) (*Single, error) {
	if err := warmUp(ctx, e); err != nil {
		return nil, err
	}
	return runSingle(ctx, e, singleSpec{
		name: "direct IAP", what: "public service, no load balancer; labelled (Cloud Run's built-in IAP)",
		min: MinDirect(), want: outcome.Remediated,
		prepare: func(ctx context.Context, e *Env, i int) (*core.LogEntry, string, error) {
			name := fmt.Sprintf("direct-%d", i)
			entry, err := createLabelled(ctx, e, demo.ServiceSpec{Name: name, Public: true}, false)
			return entry, name, err
		},
	}, n, n0, latency)
}

// warmUp makes sure the instance exists and knows the IAP service agent
// (one remediation of a service "warmup").
func warmUp(ctx context.Context, e *Env) error {
	e.mu.Lock()
	warm := e.inst != nil
	e.mu.Unlock()
	if warm {
		return nil
	}
	return remediate(ctx, e, demo.ServiceSpec{Name: "warmup", Public: true}, false)
}

// frac formats a ratio.
func frac(x float64) string {
	if math.IsInf(x, 0) {
		return "inf"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + "×"
}
