package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// BurstConfig sizes the burst scenario.
type BurstConfig struct {
	Services int
	// PerSecond and Burst are the emulated Cloud Run write quota (token
	// bucket; Google's is 60 per minute per region by default).
	PerSecond float64
	Burst     int
	// Concurrency is how many events are in flight at once: the deployed
	// function's max_instance_request_concurrency (20, one instance).
	Concurrency int
	Latency     time.Duration
}

// BurstResult is what the burst did.
type BurstResult struct {
	Config       BurstConfig
	Elapsed      time.Duration // first delivery → last event acknowledged
	MinTime      time.Duration // QuotaBoundTime of the minimum writes
	Calls        Calls
	Min          Minimum
	Throttled    int64 // calls answered RESOURCE_EXHAUSTED by the quota
	Redelivered  int   // deliveries answered non-2xx and sent again
	Outcomes     map[outcome.Kind]int
	Acked        []time.Duration // per event: burst start → acknowledged
	NonCompliant []string        // services found not compliant afterwards
}

// RateRatio is the achieved fraction of the quota-bound rate.
func (b *BurstResult) RateRatio() float64 { return float64(b.MinTime) / float64(b.Elapsed) }

// ExtraCalls is the fraction of calls beyond the minimum.
func (b *BurstResult) ExtraCalls() float64 {
	return float64(b.Calls.Total()-b.Min.Calls.Total()) / float64(b.Min.Calls.Total())
}

// Burst labels cfg.Services public services without a load balancer at
// once and delivers one event per service to a new instance, cfg.Concurrency
// at a time, redelivering (as Eventarc does, with backoff) every event the
// function answers with an error, under an emulated Cloud Run write quota.
func Burst(ctx context.Context, e *Env, cfg BurstConfig) (*BurstResult, error) {
	res := &BurstResult{Config: cfg, Min: MinBurst(cfg.Services), Outcomes: map[outcome.Kind]int{}}
	names, entries, err := labelled(ctx, e, "burst", cfg.Services)
	if err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}

	e.Cold()
	if err := e.SetLatency(cfg.Latency); err != nil {
		return nil, err
	}
	defer e.SetLatency(0)
	e.Core().Faults.SetQuotaRate("run", core.Write, cfg.PerSecond, cfg.Burst)
	before := e.Core().Stats.Snapshot()

	type job struct {
		i       int
		attempt int
	}
	queue := make(chan job, cfg.Services)
	for i := range entries {
		queue <- job{i: i}
	}
	var (
		mu          sync.Mutex
		remaining   = cfg.Services
		done        = make(chan struct{})
		redelivered atomic.Int64
		acked       = make([]time.Duration, cfg.Services)
	)
	start := time.Now()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var j job
				select {
				case <-wctx.Done():
					return
				case j = <-queue:
				}
				f, err := e.Fire(wctx, entries[j.i])
				if err == nil && f.Status/100 == 2 {
					acked[j.i] = time.Since(start)
					mu.Lock()
					remaining--
					if remaining == 0 {
						close(done)
					}
					mu.Unlock()
					continue
				}
				if wctx.Err() != nil {
					return
				}
				// Eventarc redelivers with exponential backoff (10 s–600 s on
				// Google; scaled down here like the emulator's stand-in).
				redelivered.Add(1)
				bo := gax.Backoff{Initial: time.Second, Max: 10 * time.Second, Multiplier: 2}
				var pause time.Duration
				for range j.attempt + 1 {
					pause = bo.Pause()
				}
				j.attempt++
				time.AfterFunc(pause, func() { queue <- j })
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		wg.Wait()
		return res, fmt.Errorf("burst: %d of %d events still unacknowledged: %w", remaining, cfg.Services, ctx.Err())
	}
	res.Elapsed = time.Since(start)
	cancel()
	wg.Wait()
	d := e.Core().Stats.Snapshot().Sub(before)
	res.Calls = CallsOf(d)
	for k, v := range d.Faults {
		if !strings.HasPrefix(k, "google.pubsub.") {
			res.Throttled += v
		}
	}
	res.Redelivered = int(redelivered.Load())
	res.Acked = acked
	res.MinTime = QuotaBoundTime(int(RunWrites(res.Min.Calls)), cfg.PerSecond, cfg.Burst, res.Min.Rounds, cfg.Latency)
	if err := e.SetLatency(0); err != nil {
		return res, err
	}

	// Every event's outcome (a redelivered event may have several).
	ids := map[string]bool{}
	for _, en := range entries {
		ids[eventID(en)] = true
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen := map[string]bool{}
		clear(res.Outcomes)
		for _, m := range e.St.Outcomes.All() {
			if ids[m.Trigger.EventID] {
				res.Outcomes[m.Outcome]++
				if m.Outcome != outcome.Failed {
					seen[m.Trigger.EventID] = true
				}
			}
		}
		if len(seen) == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("burst: outcomes arrived for %d of %d events", len(seen), len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc, err := verifyDirect(ctx, e, names)
	res.NonCompliant = nc
	return res, err
}

// eventID is the ce-id Eventarc gives the entry's event.
func eventID(en *core.LogEntry) string {
	h, _, err := delivery.CloudEventFor(en)
	if err != nil {
		return ""
	}
	return h.Get("Ce-Id")
}

// verifyDirect reads each service back and lists those that are not
// compliant in direct mode (built-in IAP on, no public invoker, the IAP
// agent an invoker).
func verifyDirect(ctx context.Context, e *Env, names []string) ([]string, error) {
	agent := fmt.Sprintf("serviceAccount:service-%d@gcp-sa-iap.iam.gserviceaccount.com", e.St.Project.Number)
	var mu sync.Mutex
	var bad []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, n := range names {
		g.Go(func() error {
			s, err := e.Users.Run.GetService(gctx, &runpb.GetServiceRequest{Name: e.Service(n)})
			if err != nil {
				return err
			}
			p, err := e.Users.Run.GetIamPolicy(gctx, &iampb.GetIamPolicyRequest{Resource: e.Service(n),
				Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}})
			if err != nil {
				return err
			}
			var invokers []string
			for _, b := range p.Bindings {
				if b.Role == "roles/run.invoker" {
					invokers = append(invokers, b.Members...)
				}
			}
			if !s.IapEnabled || slices.Contains(invokers, "allUsers") || !slices.Contains(invokers, agent) {
				mu.Lock()
				bad = append(bad, n)
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	slices.Sort(bad)
	return bad, err
}

// labelled creates n public services without a load balancer, named
// PREFIX-NNNN, labels each iap=enabled as a user would (no latency, nothing
// delivered) and returns their names and the audit entries of the labelling.
func labelled(ctx context.Context, e *Env, prefix string, n int) ([]string, []*core.LogEntry, error) {
	names := make([]string, n)
	entries := make([]*core.LogEntry, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%04d", prefix, i)
		g.Go(func() (err error) {
			entries[i], err = createLabelled(gctx, e, demo.ServiceSpec{Name: names[i], Public: true}, false)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, fmt.Errorf("building %d labelled services: %w", n, err)
	}
	return names, entries, nil
}
