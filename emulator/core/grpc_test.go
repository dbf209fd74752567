package core_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/core"
)

func TestMethodKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/google.cloud.run.v2.Services/GetService", "google.cloud.run.v2.Services.GetService"},
		{"/google.longrunning.Operations/WaitOperation", "google.longrunning.Operations.WaitOperation"},
		{"/google.pubsub.v1.Subscriber/StreamingPull", "google.pubsub.v1.Subscriber.StreamingPull"},
		{"google.logging.v2.LoggingServiceV2/ListLogEntries", "google.logging.v2.LoggingServiceV2.ListLogEntries"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := core.MethodKey(tt.in); got != tt.want {
				t.Errorf("MethodKey(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// callerHealth is the real gRPC health service that also remembers who
// called Check, as the emulator's surfaces read it.
type callerHealth struct {
	*health.Server
	c      *core.Core
	caller chan [2]string
}

func (h *callerHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	select {
	case h.caller <- [2]string{h.c.PrincipalFrom(ctx), core.UserAgentFrom(ctx)}:
	default:
	}
	return h.Server.Check(ctx, req)
}

// grpcHarness serves the health service with core's interceptors on
// 127.0.0.1:0 and returns a client.
func grpcHarness(t *testing.T) (*core.Core, *callerHealth, healthpb.HealthClient) {
	t.Helper()
	c := core.New("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(core.UnaryServerInterceptor(c)),
		grpc.ChainStreamInterceptor(core.StreamServerInterceptor(c)),
	)
	h := &callerHealth{Server: health.NewServer(), c: c, caller: make(chan [2]string, 1)}
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent("core-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, h, healthpb.NewHealthClient(conn)
}

const (
	checkKey = "grpc.health.v1.Health.Check"
	watchKey = "grpc.health.v1.Health.Watch"
)

func TestUnaryInterceptor(t *testing.T) {
	c, h, client := grpcHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := c.Faults.FailNext(checkKey, 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "The service is currently unavailable." {
		t.Errorf("injected Check = %v, want UNAVAILABLE with Google's message", err)
	}
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("Check after the injected failure: %v", err)
	}
	want := core.Snapshot{Calls: map[string]int64{checkKey: 3}, Faults: map[string]int64{checkKey: 1}}
	if diff := cmp.Diff(want, c.Stats.Snapshot()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}

	// The caller's identity travels as metadata.
	<-h.caller // drain earlier calls' identities
	mctx := metadata.AppendToOutgoingContext(ctx, "x-emulator-principal", "reconciler@p.iam.gserviceaccount.com")
	if _, err := client.Check(mctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	got := <-h.caller
	if got[0] != "reconciler@p.iam.gserviceaccount.com" || !strings.HasPrefix(got[1], "core-test") {
		t.Errorf("principal, user agent = %q, want the metadata's principal and core-test…", got)
	}
}

func TestUnaryInterceptorLatencyHonoursDeadline(t *testing.T) {
	c, _, client := grpcHarness(t)
	if err := c.Faults.SetLatency(checkKey, time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Check = %v, want DEADLINE_EXCEEDED", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Check returned after %s", took)
	}
	// The server side gives up too: its fault is counted once the
	// handler's context ends.
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Snapshot().Faults[checkKey] != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if f := c.Stats.Snapshot().Faults[checkKey]; f != 1 {
		t.Errorf("server counted %d faults, want 1", f)
	}
}

func TestStreamInterceptor(t *testing.T) {
	c, _, client := grpcHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := c.Faults.FailNext(watchKey, 1, codes.ResourceExhausted); err != nil {
		t.Fatal(err)
	}
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("injected Watch Recv = %v, want RESOURCE_EXHAUSTED", err)
	}

	stream, err = client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Watch Recv = %v, %v; want SERVING", resp, err)
	}
	want := core.Snapshot{Calls: map[string]int64{watchKey: 2}, Faults: map[string]int64{watchKey: 1}}
	if diff := cmp.Diff(want, c.Stats.Snapshot()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}
