package bench

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
)

// Rounds counts the sequential round trips in calls: the largest number of
// calls that ran one after another, each starting after the previous one
// was answered (the most non-overlapping intervals, found greedily by
// earliest end). Calls that overlap ran in the same round.
func Rounds(calls []Call) int {
	cs := slices.Clone(calls)
	slices.SortFunc(cs, func(a, b Call) int { return a.End.Compare(b.End) })
	n := 0
	var last time.Time
	for _, c := range cs {
		if n == 0 || !c.Start.Before(last) {
			n++
			last = c.End
		}
	}
	return n
}

// Percentile returns the p-th percentile (0..100) of ds by the
// nearest-rank method (0 for no samples).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Ratio is measured/minimum; a zero minimum gives 1 when the measurement is
// zero too and +Inf otherwise.
func Ratio(measured, minimum float64) float64 {
	if minimum == 0 {
		if measured == 0 {
			return 1
		}
		return math.Inf(1)
	}
	return measured / minimum
}

// Calls counts API calls per method key (the emulator's keys).
type Calls map[string]int64

// CallsOf returns the counted calls of a stats delta without Pub/Sub (the
// outcome publish is not one of the reconcile's API calls).
func CallsOf(d core.Snapshot) Calls {
	out := Calls{}
	for k, v := range d.Calls {
		if !strings.HasPrefix(k, "google.pubsub.") {
			out[k] = v
		}
	}
	return out
}

// Total sums the calls.
func (c Calls) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Writes sums the calls that are writes by the emulator's quota classes
// (core.ClassOf).
func (c Calls) Writes() int64 {
	var n int64
	for k, v := range c {
		if core.ClassOf(k) == core.Write {
			n += v
		}
	}
	return n
}

// Methods lists the union of the methods of cs, sorted.
func Methods(cs ...Calls) []string {
	seen := map[string]bool{}
	for _, c := range cs {
		for k := range c {
			seen[k] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Minimum is the least work one event of a scenario can cost: the API calls
// that must be made (by method) and the sequential round trips they need at
// best. Derivations are in minimums.go and docs/performance.md.
type Minimum struct {
	Rounds int
	Calls  Calls
}

// QuotaBoundTime is the least time in which writes writes can all be
// accepted by a token-bucket quota of perSecond with burst burst, plus the
// rounds×latency that a single reconcile needs anyway (the first write
// cannot be sent before the read round, the last one is answered and its
// operation polled after it).
func QuotaBoundTime(writes int, perSecond float64, burst int, rounds int, latency time.Duration) time.Duration {
	queued := max(writes-burst, 0)
	return time.Duration(float64(queued)/perSecond*float64(time.Second)) + time.Duration(rounds)*latency
}
