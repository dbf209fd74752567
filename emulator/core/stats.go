package core

import (
	"sort"
	"strings"
	"sync"
)

// Stats counts calls per method. Method keys are the names Google uses in
// audit logs and discovery documents without a version prefix:
// "google.cloud.run.v2.Services.GetService", "compute.backendServices.patch",
// "serviceusage.services.generateServiceIdentity", "iap.getIamPolicy",
// "google.pubsub.v1.Publisher.Publish", "google.longrunning.Operations.GetOperation".
type Stats struct {
	mu     sync.Mutex
	calls  map[string]int64
	faults map[string]int64
	// by counts calls per caller principal, then method.
	by map[string]map[string]int64
}

// NewStats returns empty counters.
func NewStats() *Stats {
	return &Stats{calls: map[string]int64{}, faults: map[string]int64{}, by: map[string]map[string]int64{}}
}

// incCall counts one call of method by principal, under one lock (Begin
// runs it for every call).
func (s *Stats) incCall(principal, method string) {
	s.mu.Lock()
	s.calls[method]++
	m := s.by[principal]
	if m == nil {
		m = map[string]int64{}
		s.by[principal] = m
	}
	m[method]++
	s.mu.Unlock()
}

// ByPrincipal returns the calls made by one caller (as named by the
// X-Emulator-Principal header / x-emulator-principal metadata, else the
// default principal), per method.
func (s *Stats) ByPrincipal(principal string) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.by[principal]))
	for k, v := range s.by[principal] {
		out[k] = v
	}
	return out
}

// Inc counts one call of method.
func (s *Stats) Inc(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

func (s *Stats) incFault(method string) {
	s.mu.Lock()
	s.faults[method]++
	s.mu.Unlock()
}

// Snapshot is a copy of the counters.
type Snapshot struct {
	Calls  map[string]int64 `json:"calls"`
	Faults map[string]int64 `json:"faults"` // calls answered by an injected fault
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Snapshot{Calls: make(map[string]int64, len(s.calls)), Faults: make(map[string]int64, len(s.faults))}
	for k, v := range s.calls {
		out.Calls[k] = v
	}
	for k, v := range s.faults {
		out.Faults[k] = v
	}
	return out
}

// Reset zeroes the counters.
func (s *Stats) Reset() {
	s.mu.Lock()
	s.calls = map[string]int64{}
	s.faults = map[string]int64{}
	s.by = map[string]map[string]int64{}
	s.mu.Unlock()
}

// Total sums the calls of every method whose key starts with one of prefixes
// (all methods when none is given).
func (sn Snapshot) Total(prefixes ...string) int64 {
	var n int64
	for k, v := range sn.Calls {
		if len(prefixes) == 0 {
			n += v
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				n += v
				break
			}
		}
	}
	return n
}

// Methods lists the counted methods, sorted.
func (sn Snapshot) Methods() []string {
	out := make([]string, 0, len(sn.Calls))
	for k := range sn.Calls {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Sub returns sn minus before, dropping zero entries.
func (sn Snapshot) Sub(before Snapshot) Snapshot {
	out := Snapshot{Calls: map[string]int64{}, Faults: map[string]int64{}}
	for k, v := range sn.Calls {
		if d := v - before.Calls[k]; d != 0 {
			out.Calls[k] = d
		}
	}
	for k, v := range sn.Faults {
		if d := v - before.Faults[k]; d != 0 {
			out.Faults[k] = d
		}
	}
	return out
}
