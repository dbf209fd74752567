package logging_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	loggingpb "cloud.google.com/go/logging/apiv2/loggingpb"
	"cloud.google.com/go/logging/logadmin"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	auditpb "google.golang.org/genproto/googleapis/cloud/audit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/logging"
	"github.com/iapguard/iapguard/internal/auditsamples"
)

var project = core.Project{ID: "demo-project", Number: 123456789012}

// startServer serves the logging surface on 127.0.0.1:0 with the emulator's
// Begin interceptor.
func startServer(t *testing.T, c *core.Core) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(core.UnaryServerInterceptor(c)))
	logging.New(c).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

func newClient(t *testing.T, addr string, parent string) *logadmin.Client {
	t.Helper()
	cl, err := logadmin.NewClient(context.Background(), parent,
		option.WithEndpoint(addr),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
		option.WithTelemetryDisabled(),
	)
	if err != nil {
		t.Fatalf("logadmin.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// seed records n entries one second apart (from 10 minutes ago, so that
// logadmin's default 24 h timestamp clause keeps them), alternating Cloud
// Run updates and compute patches.
func seed(t *testing.T, c *core.Core, n int) time.Time {
	t.Helper()
	start := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	for i := range n {
		now := start.Add(time.Duration(i) * time.Second)
		c.SetNow(func() time.Time { return now })
		r := core.Record{
			Project: project, ServiceName: "run.googleapis.com",
			MethodName:   "google.cloud.run.v2.Services.UpdateService",
			ResourceName: fmt.Sprintf("projects/demo-project/locations/us-central1/services/svc-%d", i),
			Location:     "us-central1", Permission: "run.services.update",
			Request:      map[string]any{"@type": "type.googleapis.com/google.cloud.run.v2.UpdateServiceRequest"},
			ResourceType: "cloud_run_revision",
		}
		if i%2 == 1 {
			r.ServiceName, r.MethodName = "compute.googleapis.com", "v1.compute.backendServices.patch"
			r.ResourceName = fmt.Sprintf("projects/demo-project/global/backendServices/bs-%d", i)
			r.Permission, r.PermissionResourceType = "compute.backendServices.update", "compute.backendServices"
			r.Request = map[string]any{"@type": "type.googleapis.com/compute.backendServices.patch"}
			r.ResourceType = "gce_backend_service"
			r.Operation = &core.EntryOperation{ID: fmt.Sprintf("operation-%d", i), Producer: "compute.googleapis.com", First: true}
		}
		c.Audit.Record(r)
	}
	c.SetNow(time.Now)
	return start
}

func list(t *testing.T, cl *logadmin.Client, opts ...logadmin.EntriesOption) ([]string, error) {
	t.Helper()
	var names []string
	it := cl.Entries(context.Background(), opts...)
	for {
		e, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names, nil
		}
		if err != nil {
			return names, err
		}
		al, ok := e.Payload.(*auditpb.AuditLog)
		if !ok {
			t.Fatalf("payload is %T, want *audit.AuditLog", e.Payload)
		}
		names = append(names, al.GetResourceName())
	}
}

func TestLogadminEntries(t *testing.T) {
	c := core.New("", project)
	old := time.Now().UTC().Add(-48 * time.Hour)
	c.SetNow(func() time.Time { return old })
	c.Audit.Record(core.Record{Project: project, ServiceName: "run.googleapis.com",
		MethodName: "google.cloud.run.v2.Services.CreateService", ResourceName: "old", ResourceType: "cloud_run_revision"})
	start := seed(t, c, 6)
	addr := startServer(t, c)
	cl := newClient(t, addr, "demo-project")

	run := func(i int) string {
		return fmt.Sprintf("projects/demo-project/locations/us-central1/services/svc-%d", i)
	}
	bs := func(i int) string { return fmt.Sprintf("projects/demo-project/global/backendServices/bs-%d", i) }
	tests := []struct {
		name string
		opts []logadmin.EntriesOption
		want []string
	}{
		{"all oldest first", nil, []string{run(0), bs(1), run(2), bs(3), run(4), bs(5)}},
		{"newest first", []logadmin.EntriesOption{logadmin.NewestFirst()}, []string{bs(5), run(4), bs(3), run(2), bs(1), run(0)}},
		{"method filter", []logadmin.EntriesOption{logadmin.Filter(`protoPayload.methodName="v1.compute.backendServices.patch"`)},
			[]string{bs(1), bs(3), bs(5)}},
		{"service and time window", []logadmin.EntriesOption{logadmin.Filter(fmt.Sprintf(
			`protoPayload.serviceName="run.googleapis.com" AND timestamp >= %q AND timestamp < %q`,
			start.Add(time.Second).Format(time.RFC3339), start.Add(5*time.Second).Format(time.RFC3339)))},
			[]string{run(2), run(4)}},
		{"resource name has, or", []logadmin.EntriesOption{logadmin.Filter(`protoPayload.resourceName:"svc-0" OR protoPayload.resourceName:"bs-5"`)},
			[]string{run(0), bs(5)}},
		{"small pages", []logadmin.EntriesOption{logadmin.PageSize(2), logadmin.NewestFirst(), logadmin.Filter(`resource.type="gce_backend_service" OR resource.type="cloud_run_revision"`)},
			[]string{bs(5), run(4), bs(3), run(2), bs(1), run(0)}},
		{"log name and project number", []logadmin.EntriesOption{
			logadmin.ResourceNames([]string{"projects/123456789012"}),
			logadmin.Filter(`logName="projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity" AND operation.first=true`),
		}, []string{bs(1), bs(3), bs(5)}},
		{"explicit time clause replaces the 24 h default", []logadmin.EntriesOption{logadmin.Filter(fmt.Sprintf(
			`timestamp >= %q AND timestamp < %q`, old.Add(-time.Hour).Format(time.RFC3339), start.Format(time.RFC3339)))},
			[]string{"old"}},
		{"nothing that old", []logadmin.EntriesOption{logadmin.Filter(`timestamp < "2000-01-01T00:00:00Z"`)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := list(t, cl, tt.opts...)
			if err != nil {
				t.Fatalf("Entries: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resource names (-want +got):\n%s", diff)
			}
		})
	}

	calls := c.Stats.Snapshot().Calls["google.logging.v2.LoggingServiceV2.ListLogEntries"]
	if calls < int64(len(tests)) {
		t.Errorf("ListLogEntries calls counted = %d, want at least %d", calls, len(tests))
	}
}

func TestLogadminEntryFields(t *testing.T) {
	c := core.New("", project)
	seed(t, c, 2)
	cl := newClient(t, startServer(t, c), "projects/demo-project")
	it := cl.Entries(context.Background(), logadmin.Filter(`protoPayload.methodName="v1.compute.backendServices.patch"`))
	e, err := it.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	src := c.Audit.Entries()[1]
	if e.InsertID != src.InsertID || !e.Timestamp.Equal(src.Timestamp) || e.Resource.GetType() != "gce_backend_service" ||
		e.LogName != "projects/demo-project/logs/cloudaudit.googleapis.com/activity" || e.Operation.GetId() != "operation-1" || !e.Operation.GetFirst() {
		t.Errorf("entry = %+v, want the fields of %+v", e, src)
	}
	al := e.Payload.(*auditpb.AuditLog)
	ai := al.GetAuthorizationInfo()
	if len(ai) != 1 || ai[0].GetPermission() != "compute.backendServices.update" || ai[0].GetResourceAttributes().GetType() != "compute.backendServices" {
		t.Errorf("authorizationInfo = %v", ai)
	}
	if al.GetAuthenticationInfo().GetPrincipalEmail() != core.DefaultPrincipal {
		t.Errorf("principal = %q", al.GetAuthenticationInfo().GetPrincipalEmail())
	}
	if got := al.GetRequest().GetFields()["@type"].GetStringValue(); got != "type.googleapis.com/compute.backendServices.patch" {
		t.Errorf("request @type = %q", got)
	}
}

func TestListErrors(t *testing.T) {
	c := core.New("", project)
	seed(t, c, 1)
	addr := startServer(t, c)
	tests := []struct {
		name   string
		parent string
		opts   []logadmin.EntriesOption
		want   codes.Code
	}{
		{"unsupported filter", "demo-project", []logadmin.EntriesOption{logadmin.Filter(`protoPayload.methodName=~"Update"`)}, codes.InvalidArgument},
		{"global restriction", "demo-project", []logadmin.EntriesOption{logadmin.Filter(`"hello"`)}, codes.InvalidArgument},
		{"unknown project", "other-project", nil, codes.PermissionDenied},
		{"organization", "organizations/123", nil, codes.InvalidArgument},
		{"page size too large", "demo-project", []logadmin.EntriesOption{logadmin.PageSize(1001)}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newClient(t, addr, tt.parent)
			_, err := list(t, cl, tt.opts...)
			if got := status.Code(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestInjectedFault(t *testing.T) {
	c := core.New("", project)
	seed(t, c, 1)
	cl := newClient(t, startServer(t, c), "demo-project")
	if err := c.Faults.FailNext("google.logging.v2.LoggingServiceV2.ListLogEntries", 1, codes.PermissionDenied); err != nil {
		t.Fatal(err)
	}
	if _, err := list(t, cl); status.Code(err) != codes.PermissionDenied {
		t.Errorf("error = %v, want the injected PERMISSION_DENIED", err)
	}
}

// auditlogDir is the real samples directory (internal/auditsamples).
func auditlogDir(t *testing.T) string { return auditsamples.Dir(t) }

// TestEntryProtoKeepsRealSampleFields converts real samples and checks that
// the AuditLog proto carries the same protoPayload, except the fields the
// proto does not have.
func TestEntryProtoKeepsRealSampleFields(t *testing.T) {
	for _, name := range []string{
		"compute-lb-target-https-proxy-insert-first.json",
		"compute-lb-target-https-proxy-insert-last.json",
		"compute-instances-insert-last-error-ip-space-exhausted.json",
	} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(auditlogDir(t), name))
			if err != nil {
				t.Fatal(err)
			}
			var e core.LogEntry
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("decoding sample: %v", err)
			}
			pe, err := logging.EntryProto(&e)
			if err != nil {
				t.Fatalf("EntryProto: %v", err)
			}
			var al auditpb.AuditLog
			if err := pe.GetProtoPayload().UnmarshalTo(&al); err != nil {
				t.Fatalf("unpacking payload: %v", err)
			}
			gotJSON, err := protojson.Marshal(&al)
			if err != nil {
				t.Fatal(err)
			}
			var got, want map[string]any
			_ = json.Unmarshal(gotJSON, &got)
			wantJSON, _ := json.Marshal(e.ProtoPayload)
			_ = json.Unmarshal(wantJSON, &want)
			prune(want) // proto3 JSON omits empty fields; core.LogEntry writes some
			delete(want, "@type")
			for _, ai := range asSlice(want["authorizationInfo"]) {
				delete(ai.(map[string]any), "permissionType")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("protoPayload after conversion (-core +proto):\n%s", diff)
			}
			if pe.GetSeverity().String() != e.Severity || pe.GetInsertId() != e.InsertID || !pe.GetTimestamp().AsTime().Equal(e.Timestamp) {
				t.Errorf("entry fields lost: %v", pe)
			}
		})
	}
}

// prune deletes null and empty-string members, recursively.
func prune(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, m := range x {
			if m == nil || m == "" {
				delete(x, k)
				continue
			}
			prune(m)
		}
	case []any:
		for _, m := range x {
			prune(m)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestPagination(t *testing.T) {
	c := core.New("", project)
	seed(t, c, 5)
	conn, err := grpc.NewClient(startServer(t, c), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cl := loggingpb.NewLoggingServiceV2Client(conn)
	ctx := context.Background()

	for _, order := range []string{"timestamp asc", "timestamp desc"} {
		t.Run(order, func(t *testing.T) {
			req := &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/demo-project"}, OrderBy: order, PageSize: 2}
			var ids, pages []string
			for {
				resp, err := cl.ListLogEntries(ctx, req)
				if err != nil {
					t.Fatalf("ListLogEntries: %v", err)
				}
				pages = append(pages, fmt.Sprint(len(resp.GetEntries())))
				for _, e := range resp.GetEntries() {
					ids = append(ids, e.GetInsertId())
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			var want []string
			for _, e := range c.Audit.Entries() {
				want = append(want, e.InsertID)
			}
			if order == "timestamp desc" {
				slices.Reverse(want)
			}
			if diff := cmp.Diff(want, ids); diff != "" {
				t.Errorf("insert ids (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"2", "2", "1"}, pages); diff != "" {
				t.Errorf("page sizes (-want +got):\n%s", diff)
			}
		})
	}

	first, err := cl.ListLogEntries(ctx, &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/demo-project"}, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *loggingpb.ListLogEntriesRequest
	}{
		{"token of another filter", &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/demo-project"}, Filter: `severity=NOTICE`, PageToken: first.GetNextPageToken()}},
		{"garbage token", &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/demo-project"}, PageToken: "not-a-token"}},
		{"no resource names", &loggingpb.ListLogEntriesRequest{}},
		{"bad order", &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/demo-project"}, OrderBy: "insertId"}},
		{"negative page size", &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/demo-project"}, PageSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.ListLogEntries(ctx, tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("error = %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}
