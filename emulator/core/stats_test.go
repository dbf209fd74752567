package core_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

func TestSnapshotTotalAndMethods(t *testing.T) {
	s := core.NewStats()
	calls := map[string]int{
		"google.cloud.run.v2.Services.GetService":    3,
		"google.cloud.run.v2.Services.GetIamPolicy":  1,
		"google.longrunning.Operations.GetOperation": 2,
		"compute.backendServices.get":                4,
		"compute.backendServices.patch":              1,
		"iap.getIamPolicy":                           5,
	}
	for m, n := range calls {
		for range n {
			s.Inc(m)
		}
	}
	snap := s.Snapshot()
	tests := []struct {
		name     string
		prefixes []string
		want     int64
	}{
		{name: "all", want: 16},
		{name: "one API", prefixes: []string{"compute."}, want: 5},
		{name: "exact method", prefixes: []string{"iap.getIamPolicy"}, want: 5},
		{name: "two prefixes", prefixes: []string{"google.cloud.run.", "google.longrunning."}, want: 6},
		{name: "overlapping prefixes count once", prefixes: []string{"compute.", "compute.backendServices."}, want: 5},
		{name: "no match", prefixes: []string{"serviceusage."}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snap.Total(tt.prefixes...); got != tt.want {
				t.Errorf("Total(%q) = %d, want %d", tt.prefixes, got, tt.want)
			}
		})
	}
	want := []string{
		"compute.backendServices.get",
		"compute.backendServices.patch",
		"google.cloud.run.v2.Services.GetIamPolicy",
		"google.cloud.run.v2.Services.GetService",
		"google.longrunning.Operations.GetOperation",
		"iap.getIamPolicy",
	}
	if diff := cmp.Diff(want, snap.Methods()); diff != "" {
		t.Errorf("Methods (-want +got):\n%s", diff)
	}
	if got := (core.Snapshot{}).Methods(); len(got) != 0 {
		t.Errorf("empty snapshot Methods = %v", got)
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	c := core.New("")
	if err := c.Faults.FailNext("*", 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	_ = c.Begin(context.Background(), "iap.getIamPolicy")
	snap := c.Stats.Snapshot()
	snap.Calls["iap.getIamPolicy"] = 100
	snap.Faults["iap.getIamPolicy"] = 100
	want := core.Snapshot{Calls: map[string]int64{"iap.getIamPolicy": 1}, Faults: map[string]int64{"iap.getIamPolicy": 1}}
	if diff := cmp.Diff(want, c.Stats.Snapshot()); diff != "" {
		t.Errorf("snapshot changed the counters (-want +got):\n%s", diff)
	}
}

func TestSnapshotSub(t *testing.T) {
	c := core.New("")
	_ = c.Begin(context.Background(), "compute.backendServices.get")
	_ = c.Begin(context.Background(), "iap.getIamPolicy")
	before := c.Stats.Snapshot()
	if err := c.Faults.FailNext("compute.*", 1, codes.Internal); err != nil {
		t.Fatal(err)
	}
	_ = c.Begin(context.Background(), "compute.backendServices.get")
	_ = c.Begin(context.Background(), "compute.backendServices.get")
	_ = c.Begin(context.Background(), "google.cloud.run.v2.Services.GetService")
	want := core.Snapshot{
		Calls:  map[string]int64{"compute.backendServices.get": 2, "google.cloud.run.v2.Services.GetService": 1},
		Faults: map[string]int64{"compute.backendServices.get": 1},
	}
	if diff := cmp.Diff(want, c.Stats.Snapshot().Sub(before)); diff != "" {
		t.Errorf("Sub (-want +got):\n%s", diff)
	}
	empty := core.Snapshot{Calls: map[string]int64{}, Faults: map[string]int64{}}
	if diff := cmp.Diff(empty, before.Sub(before)); diff != "" {
		t.Errorf("x.Sub(x) (-want +got):\n%s", diff)
	}
}

func TestStatsReset(t *testing.T) {
	c := core.New("")
	if err := c.Faults.FailNext("*", 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	_ = c.Begin(context.Background(), "iap.setIamPolicy")
	c.Stats.Reset()
	empty := core.Snapshot{Calls: map[string]int64{}, Faults: map[string]int64{}}
	if diff := cmp.Diff(empty, c.Stats.Snapshot()); diff != "" {
		t.Errorf("after Reset (-want +got):\n%s", diff)
	}
	c.Stats.Inc("iap.setIamPolicy")
	if got := c.Stats.Snapshot().Total(); got != 1 {
		t.Errorf("Total after Reset and one call = %d", got)
	}
}

func TestStatsConcurrent(t *testing.T) {
	s := core.NewStats()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 1000 {
				s.Inc("compute.backendServices.get")
				if i%2 == 0 {
					_ = s.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	if got := s.Snapshot().Total(); got != 8000 {
		t.Errorf("Total = %d, want 8000", got)
	}
}
