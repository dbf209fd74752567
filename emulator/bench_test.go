package emulator_test

// Benchmarks over real loopback with the official clients. They do not run
// in a normal `go test`; run them with
//
//	go test -run '^$' -bench . -benchtime 2s ./emulator/
//
// Results on the reference machine are recorded in docs/emulator.md.

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/internal/demo"
)

const (
	benchRegion  = "us-central1"
	benchService = "hello"
	// benchParallelism × GOMAXPROCS goroutines issue calls at once in the
	// parallel benchmarks (8 on the 2-core reference machine), about what a
	// busy reconciler plus a CLI produce.
	benchParallelism = 4
)

// benchEnv is an emulator holding one labelled Cloud Run service behind an
// external HTTPS load balancer, and official clients connected to it.
type benchEnv struct {
	emu     *emulator.Emulator
	run     *run.ServicesClient
	compute *compute.Service
	svcName string
	backend string
}

func dialRun(ctx context.Context, addr string) (*run.ServicesClient, error) {
	return run.NewServicesClient(ctx,
		option.WithEndpoint(addr),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
		option.WithTelemetryDisabled(),
	)
}

// dialCompute connects the Compute client with a transport that keeps
// enough idle connections for the benchmark's goroutines (Go's default
// keeps 2 per host, so 8 goroutines would keep opening connections).
func dialCompute(ctx context.Context, addr string) (*compute.Service, *http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	cs, err := compute.NewService(ctx, option.WithEndpoint("http://"+addr+"/compute/v1/"), option.WithHTTPClient(&http.Client{Transport: tr}))
	return cs, tr, err
}

func newBenchEnv(b testing.TB) *benchEnv {
	b.Helper()
	ctx := b.Context()
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { emu.Close() })

	setup, err := demo.Dial(ctx, emu.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer setup.Close()
	p := emulator.DefaultProject.ID
	svc, err := setup.CreateService(ctx, p, benchRegion, demo.ServiceSpec{Name: benchService, Labels: map[string]string{"iap": "enabled"}, Public: true})
	if err != nil {
		b.Fatal(err)
	}
	lb, err := setup.BuildLoadBalancer(ctx, p, benchRegion, demo.LBSpec{Service: benchService})
	if err != nil {
		b.Fatal(err)
	}

	rc, err := dialRun(ctx, emu.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rc.Close() })
	cs, tr, err := dialCompute(ctx, emu.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &benchEnv{emu: emu, run: rc, compute: cs, svcName: svc.GetName(), backend: lb.BackendService}
}

// reportRate records calls per second of timed wall time and checks the
// emulator counted exactly the calls the benchmark made.
func reportRate(b *testing.B, env *benchEnv, before int64, perOp int) {
	b.Helper()
	elapsed := b.Elapsed()
	calls := env.emu.Core.Stats.Snapshot().Total() - before
	if want := int64(b.N * perOp); calls != want {
		b.Fatalf("emulator counted %d calls, want %d", calls, want)
	}
	if elapsed > 0 {
		b.ReportMetric(float64(calls)/elapsed.Seconds(), "req/s")
	}
}

// BenchmarkRunGetService: Cloud Run Admin API v2 GetService over gRPC.
func BenchmarkRunGetService(b *testing.B) {
	env := newBenchEnv(b)
	ctx := b.Context()
	before := env.emu.Core.Stats.Snapshot().Total()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := env.run.GetService(ctx, &runpb.GetServiceRequest{Name: env.svcName}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, env, before, 1)
}

// BenchmarkComputeBackendServiceGet: Compute v1 backendServices.get over
// REST (JSON) with the google.golang.org/api client.
func BenchmarkComputeBackendServiceGet(b *testing.B) {
	env := newBenchEnv(b)
	ctx := b.Context()
	p := emulator.DefaultProject.ID
	before := env.emu.Core.Stats.Snapshot().Total()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := env.compute.BackendServices.Get(p, env.backend).Context(ctx).Do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, env, before, 1)
}

// reconcileRound issues the reads one reconciliation of a labelled service
// starts with, in parallel: the service, its IAM policy, the region's
// serverless NEGs and every backend service.
func (env *benchEnv) reconcileRound(ctx context.Context) error {
	p := emulator.DefaultProject.ID
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := env.run.GetService(ctx, &runpb.GetServiceRequest{Name: env.svcName})
		return err
	})
	g.Go(func() error {
		_, err := env.run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: env.svcName})
		return err
	})
	g.Go(func() error {
		l, err := env.compute.RegionNetworkEndpointGroups.List(p, benchRegion).Context(ctx).Do()
		if err == nil && len(l.Items) != 1 {
			err = fmt.Errorf("NEG list: %d items, want 1", len(l.Items))
		}
		return err
	})
	g.Go(func() error {
		l, err := env.compute.BackendServices.AggregatedList(p).Context(ctx).Do()
		if err == nil && len(l.Items["global"].BackendServices) != 1 {
			err = fmt.Errorf("aggregatedList: global scope %+v, want one backend service", l.Items["global"])
		}
		return err
	})
	return g.Wait()
}

// BenchmarkReconcileRound: one op is one round of four calls issued in
// parallel (Cloud Run GetService and GetIamPolicy over gRPC, Compute
// regionNetworkEndpointGroups.list and backendServices.aggregatedList over
// REST). "one-reconciler" runs rounds back to back (ns/op is the latency of
// a round); "parallel" runs benchParallelism×GOMAXPROCS reconcilers.
func BenchmarkReconcileRound(b *testing.B) {
	b.Run("one-reconciler", func(b *testing.B) {
		env := newBenchEnv(b)
		ctx := b.Context()
		before := env.emu.Core.Stats.Snapshot().Total()
		b.ResetTimer()
		for range b.N {
			if err := env.reconcileRound(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportRate(b, env, before, 4)
	})
	b.Run("parallel", func(b *testing.B) {
		env := newBenchEnv(b)
		ctx := b.Context()
		before := env.emu.Core.Stats.Snapshot().Total()
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := env.reconcileRound(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		reportRate(b, env, before, 4)
	})
}

// BenchmarkStartup: emulator.New + Start on 127.0.0.1:0 + connecting the
// official Cloud Run client + its first successful call (ListServices).
// Shutting down is not timed.
func BenchmarkStartup(b *testing.B) {
	ctx := b.Context()
	for range b.N {
		emu, err := emulator.New(emulator.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := emu.Start("127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
		rc, err := dialRun(ctx, emu.Addr())
		if err != nil {
			b.Fatal(err)
		}
		it := rc.ListServices(ctx, &runpb.ListServicesRequest{Parent: "projects/" + emulator.DefaultProject.ID + "/locations/" + benchRegion})
		if _, err := it.Next(); err != iterator.Done {
			b.Fatalf("first ListServices: %v, want an empty list", err)
		}
		b.StopTimer()
		rc.Close()
		emu.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/start")
}

// TestReconcileRound keeps the benchmark set-up honest in normal runs: a
// round against a fresh environment succeeds and costs exactly four calls.
func TestReconcileRound(t *testing.T) {
	env := newBenchEnv(t)
	before := env.emu.Core.Stats.Snapshot()
	if err := env.reconcileRound(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"google.cloud.run.v2.Services.GetService":   1,
		"google.cloud.run.v2.Services.GetIamPolicy": 1,
		"compute.regionNetworkEndpointGroups.list":  1,
		"compute.backendServices.aggregatedList":    1,
	}
	if diff := cmp.Diff(want, env.emu.Core.Stats.Snapshot().Sub(before).Calls); diff != "" {
		t.Errorf("calls of one round (-want +got):\n%s", diff)
	}
}
