package cloudrun

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/core"
)

const (
	testProject = "demo-project"
	testNumber  = 123456789012
	testRegion  = "us-central1"
	testCaller  = "tester@example.com"
)

const testNumberStr = "123456789012"

type harness struct {
	c      *core.Core
	srv    *Server
	client *run.ServicesClient
}

// newHarness serves the surface on 127.0.0.1:0 behind the core interceptor
// and connects the official client to it, the way the emulator does.
func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	c := core.New(testCaller,
		core.Project{ID: testProject, Number: testNumber},
		core.Project{ID: "other-project", Number: 222222222222},
	)
	srv := New(c, opts)
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(core.UnaryServerInterceptor(c)))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	client, err := run.NewServicesClient(context.Background(),
		option.WithEndpoint(lis.Addr().String()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
	)
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return &harness{c: c, srv: srv, client: client}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func parent(project string) string { return "projects/" + project + "/locations/" + testRegion }

func svcName(project, id string) string { return parent(project) + "/services/" + id }

// minimalService is the smallest spec Cloud Run accepts.
func minimalService() *runpb.Service {
	return &runpb.Service{
		Labels: map[string]string{"iap": "enabled"},
		Template: &runpb.RevisionTemplate{
			Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}},
		},
	}
}

// create creates id with svc (minimalService when nil) and waits for it.
func (h *harness) create(t *testing.T, id string, svc *runpb.Service) *runpb.Service {
	t.Helper()
	if svc == nil {
		svc = minimalService()
	}
	ctx := ctxT(t)
	op, err := h.client.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: id, Service: svc})
	if err != nil {
		t.Fatalf("CreateService(%s): %v", id, err)
	}
	got, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("waiting for CreateService(%s): %v", id, err)
	}
	return got
}

func (h *harness) get(t *testing.T, id string) *runpb.Service {
	t.Helper()
	got, err := h.client.GetService(ctxT(t), &runpb.GetServiceRequest{Name: svcName(testProject, id)})
	if err != nil {
		t.Fatalf("GetService(%s): %v", id, err)
	}
	return got
}

// wantCode fails unless err has code and, when the code is an error, a
// message containing every fragment.
func wantCode(t *testing.T, err error, code codes.Code, fragments ...string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error = %v (code %v), want code %v", err, got, code)
	}
	if err == nil {
		return
	}
	msg := status.Convert(err).Message()
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error message %q does not contain %q", msg, f)
		}
	}
}

// auditCount is the number of audit entries written so far.
func (h *harness) auditCount() int { return len(h.c.Audit.Entries()) }

// checkRejectedEntries checks the audit entries rejected calls wrote since
// before: each one failed (severity ERROR, a status, no response), as
// Google logs refused writes (#14 item 5); want is how many there must be.
func checkRejectedEntries(t *testing.T, h *harness, before, want int) {
	t.Helper()
	entries := h.c.Audit.Entries()[before:]
	if len(entries) != want {
		t.Errorf("rejected calls wrote %d audit entries, want %d", len(entries), want)
	}
	for _, e := range entries {
		if e.Severity != "ERROR" || e.ProtoPayload.Status == nil || e.ProtoPayload.Status.Code == 0 || e.ProtoPayload.Response != nil {
			t.Errorf("entry for a rejected %s: severity %s, status %+v, response %v; want ERROR, a status, no response",
				e.ProtoPayload.MethodName, e.Severity, e.ProtoPayload.Status, e.ProtoPayload.Response)
		}
	}
}
