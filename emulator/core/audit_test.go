package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/auditsamples"
)

// sample reads a real audit-log entry (internal/auditsamples/testdata) as
// generic JSON.
func sample(t *testing.T, name string) map[string]any {
	t.Helper()
	b := auditsamples.Read(t, name)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// asJSON renders v through encoding/json as generic JSON.
func asJSON(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// flatKeys lists the leaf paths of a JSON value ("a.b", "a.list[].c"); an
// empty object or array is a leaf of its own, so {} and absent differ.
func flatKeys(v any) []string {
	set := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				set[prefix+"{}"] = true
			}
			for k, c := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, c)
			}
		case []any:
			if len(x) == 0 {
				set[prefix+"[]"] = true
			}
			for _, c := range x {
				walk(prefix+"[]", c)
			}
		default:
			set[prefix] = true
		}
	}
	walk("", v)
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// del removes a dotted path from generic JSON.
func del(m map[string]any, path ...string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, path[len(path)-1])
}

// sampleCaller is the request context of the samples' caller.
func sampleCaller(t *testing.T, s map[string]any) context.Context {
	t.Helper()
	p := s["protoPayload"].(map[string]any)
	r := httptest.NewRequest("POST", "/compute/v1/projects/gcpdiag-lb3-aaaa/global/targetHttpsProxies", nil)
	r.Header.Set(core.PrincipalHeader, p["authenticationInfo"].(map[string]any)["principalEmail"].(string))
	r.Header.Set("User-Agent", p["requestMetadata"].(map[string]any)["callerSuppliedUserAgent"].(string))
	return core.WithHTTPCaller(r).Context()
}

// sampleRecord is what the compute surface passes for the sample's call.
func sampleRecord(t *testing.T, first map[string]any, isFirst bool) core.Record {
	t.Helper()
	p := first["protoPayload"].(map[string]any)
	op := first["operation"].(map[string]any)
	return core.Record{
		Ctx:                    sampleCaller(t, first),
		Project:                core.Project{ID: "gcpdiag-lb3-aaaa", Number: 12340051},
		ServiceName:            "compute.googleapis.com",
		MethodName:             "v1.compute.targetHttpsProxies.insert",
		ResourceName:           "projects/gcpdiag-lb3-aaaa/global/targetHttpsProxies/https-lb-proxy",
		Location:               "global",
		Permission:             "compute.targetHttpsProxies.create",
		PermissionResourceType: "compute.targetHttpsProxies",
		Request:                p["request"].(map[string]any),
		Response:               p["response"].(map[string]any),
		ResourceType:           "gce_target_https_proxy",
		ResourceLabels:         map[string]string{"target_https_proxy_id": "2209022440749649672"},
		Labels:                 map[string]string{"compute.googleapis.com/root_trigger_id": "40523d2d-d62b-476e-9585-17c2341a0dff"},
		Operation:              &core.EntryOperation{ID: op["id"].(string), Producer: "compute.googleapis.com", First: isFirst, Last: !isFirst},
		Slim:                   !isFirst,
	}
}

// normalise drops the members that differ between any two real entries
// (ids, times) or that the emulator cannot know (callerIp).
func normalise(m map[string]any) {
	for _, k := range []string{"insertId", "timestamp", "receiveTimestamp"} {
		delete(m, k)
	}
	del(m, "protoPayload", "requestMetadata", "callerIp")
	del(m, "protoPayload", "requestMetadata", "requestAttributes", "time")
}

func TestRecordMatchesRealFirstEntry(t *testing.T) {
	want := sample(t, "compute-lb-target-https-proxy-insert-first.json")
	c := core.New("")
	now := time.Date(2024, 10, 18, 14, 34, 15, 686588000, time.UTC)
	c.SetNow(func() time.Time { return now })
	e := c.Audit.Record(sampleRecord(t, want, true))
	got := asJSON(t, e)

	if diff := cmp.Diff(flatKeys(want), flatKeys(got)); diff != "" {
		t.Errorf("field set differs from the real entry (-real +emulator):\n%s", diff)
	}

	// Values: the emulator lists only the permission on the resource itself
	// (a documented deviation); Google also lists compute.urlMaps.use.
	wp := want["protoPayload"].(map[string]any)
	wp["authorizationInfo"] = wp["authorizationInfo"].([]any)[:1]
	normalise(want)
	normalise(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entry differs from the real one (-real +emulator):\n%s", diff)
	}

	if !e.Timestamp.Equal(now) {
		t.Errorf("timestamp = %s, want %s", e.Timestamp, now)
	}
	if lag := e.ReceiveTimestamp.Sub(e.Timestamp); lag <= 0 || lag > 10*time.Millisecond {
		t.Errorf("receiveTimestamp - timestamp = %s, want a small positive lag", lag)
	}
	if rt := e.ProtoPayload.RequestMetadata.RequestAttributes["time"]; rt != now.Format(time.RFC3339Nano) {
		t.Errorf("requestAttributes.time = %v, want %s", rt, now.Format(time.RFC3339Nano))
	}
	if !regexp.MustCompile(`^[a-z0-9]{12}$`).MatchString(e.InsertID) {
		t.Errorf("insertId = %q", e.InsertID)
	}
	if e2 := c.Audit.Record(sampleRecord(t, sample(t, "compute-lb-target-https-proxy-insert-first.json"), true)); e2.InsertID == e.InsertID {
		t.Errorf("two entries share insertId %q", e.InsertID)
	}
}

func TestRecordSlimMatchesRealLastEntry(t *testing.T) {
	first := sample(t, "compute-lb-target-https-proxy-insert-first.json")
	want := sample(t, "compute-lb-target-https-proxy-insert-last.json")
	c := core.New("")
	got := asJSON(t, c.Audit.Record(sampleRecord(t, first, false)))

	if diff := cmp.Diff(flatKeys(want), flatKeys(got)); diff != "" {
		t.Errorf("field set differs from the real entry (-real +emulator):\n%s", diff)
	}
	normalise(want)
	normalise(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entry differs from the real one (-real +emulator):\n%s", diff)
	}
}

func TestRecordSlimWithoutRequestType(t *testing.T) {
	c := core.New("")
	e := c.Audit.Record(core.Record{Project: core.Project{ID: "p", Number: 1}, ServiceName: "compute.googleapis.com",
		MethodName: "v1.compute.urlMaps.delete", ResourceName: "projects/p/global/urlMaps/m", Slim: true})
	got := asJSON(t, e)["protoPayload"].(map[string]any)
	if req, ok := got["request"]; ok {
		t.Errorf("request = %v, want none when the record carries no @type", req)
	}
}

func TestRecordFailedCall(t *testing.T) {
	c := core.New("")
	e := c.Audit.Record(core.Record{
		Project: core.Project{ID: "p", Number: 1}, ServiceName: "run.googleapis.com",
		MethodName: "google.cloud.run.v2.Services.UpdateService", ResourceName: "projects/p/locations/us-central1/services/s",
		Permission: "run.services.update", ResourceType: "cloud_run_revision",
		Err: core.Errorf(codes.FailedPrecondition, "revision failed"),
	})
	if e.Severity != "ERROR" {
		t.Errorf("severity = %q, want ERROR", e.Severity)
	}
	want := &core.RPCStatus{Code: int32(codes.FailedPrecondition), Message: "revision failed"}
	if diff := cmp.Diff(want, e.ProtoPayload.Status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// Cloud Run style: no permission resource type → resourceAttributes {}.
	if got := asJSON(t, e)["protoPayload"].(map[string]any)["authorizationInfo"].([]any)[0].(map[string]any)["resourceAttributes"]; !cmp.Equal(got, map[string]any{}) {
		t.Errorf("resourceAttributes = %v, want {}", got)
	}
	if e.LogName != "projects/p/logs/cloudaudit.googleapis.com%2Factivity" {
		t.Errorf("logName = %q", e.LogName)
	}
	if e.ProtoPayload.ResourceLocation != nil {
		t.Errorf("resourceLocation = %+v without a Location", e.ProtoPayload.ResourceLocation)
	}
}

func TestRecordLeavesCallerMapsAlone(t *testing.T) {
	c := core.New("")
	labels := map[string]string{"service_name": "s"}
	rec := core.Record{Project: core.Project{ID: "p", Number: 1}, ServiceName: "run.googleapis.com",
		MethodName: "google.cloud.run.v2.Services.DeleteService", ResourceName: "projects/p/locations/r/services/s",
		ResourceType: "cloud_run_revision", ResourceLabels: labels}
	e := c.Audit.Record(rec)
	if diff := cmp.Diff(map[string]string{"service_name": "s"}, labels); diff != "" {
		t.Errorf("Record changed the caller's ResourceLabels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"service_name": "s", "project_id": "p"}, e.Resource.Labels); diff != "" {
		t.Errorf("resource labels (-want +got):\n%s", diff)
	}
	// A project_id the surface sets is kept.
	rec.ResourceLabels = map[string]string{"project_id": "123"}
	if got := c.Audit.Record(rec).Resource.Labels["project_id"]; got != "123" {
		t.Errorf("project_id = %q, want the surface's 123", got)
	}
}

func TestPrincipalAndUserAgent(t *testing.T) {
	httpCtx := func(h map[string]string) context.Context {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Del("User-Agent")
		for k, v := range h {
			r.Header.Set(k, v)
		}
		return core.WithHTTPCaller(r).Context()
	}
	grpcCtx := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	tests := []struct {
		name                   string
		defaultPrincipal       string
		ctx                    context.Context
		principal, subject, ua string
	}{
		{name: "no context", ctx: nil, principal: core.DefaultPrincipal, subject: "user:" + core.DefaultPrincipal, ua: "emulator"},
		{name: "empty context", ctx: context.Background(), principal: core.DefaultPrincipal, subject: "user:" + core.DefaultPrincipal, ua: "emulator"},
		{name: "configured default", defaultPrincipal: "ops@example.org", ctx: context.Background(), principal: "ops@example.org", subject: "user:ops@example.org", ua: "emulator"},
		{name: "HTTP header", ctx: httpCtx(map[string]string{core.PrincipalHeader: "alice@example.com", "User-Agent": "google-api-go-client/0.5"}),
			principal: "alice@example.com", subject: "user:alice@example.com", ua: "google-api-go-client/0.5"},
		{name: "HTTP service account", ctx: httpCtx(map[string]string{core.PrincipalHeader: "iapguard@p.iam.gserviceaccount.com"}),
			principal: "iapguard@p.iam.gserviceaccount.com", subject: "serviceAccount:iapguard@p.iam.gserviceaccount.com", ua: "emulator"},
		{name: "HTTP without header", ctx: httpCtx(nil), principal: core.DefaultPrincipal, subject: "user:" + core.DefaultPrincipal, ua: "emulator"},
		{name: "gRPC metadata", ctx: grpcCtx("x-emulator-principal", "bob@example.com", "user-agent", "grpc-go/1.85.0"),
			principal: "bob@example.com", subject: "user:bob@example.com", ua: "grpc-go/1.85.0"},
		{name: "gRPC empty principal", ctx: grpcCtx("x-emulator-principal", "", "user-agent", "grpc-go/1.85.0"),
			principal: core.DefaultPrincipal, subject: "user:" + core.DefaultPrincipal, ua: "grpc-go/1.85.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := core.New(tt.defaultPrincipal)
			if tt.ctx != nil {
				if got := c.PrincipalFrom(tt.ctx); got != tt.principal {
					t.Errorf("PrincipalFrom = %q, want %q", got, tt.principal)
				}
			}
			e := c.Audit.Record(core.Record{Ctx: tt.ctx, Project: core.Project{ID: "p", Number: 1}})
			got := []string{e.ProtoPayload.AuthenticationInfo.PrincipalEmail, e.ProtoPayload.AuthenticationInfo.PrincipalSubject, e.ProtoPayload.RequestMetadata.CallerSuppliedUserAgent}
			if diff := cmp.Diff([]string{tt.principal, tt.subject, tt.ua}, got); diff != "" {
				t.Errorf("principal, subject, user agent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListen(t *testing.T) {
	c := core.New("")
	var mu sync.Mutex
	var a, b []string
	stopA := c.Audit.Listen(func(e *core.LogEntry) { mu.Lock(); a = append(a, e.InsertID); mu.Unlock() })
	stopB := c.Audit.Listen(func(e *core.LogEntry) { mu.Lock(); b = append(b, e.InsertID); mu.Unlock() })
	for i := range 3 {
		c.Audit.Append(&core.LogEntry{InsertID: strconv.Itoa(i)})
	}
	stopA()
	stopA() // idempotent
	c.Audit.Append(&core.LogEntry{InsertID: "3"})
	stopB()
	c.Audit.Append(&core.LogEntry{InsertID: "4"})

	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"0", "1", "2"}, a); diff != "" {
		t.Errorf("listener a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"0", "1", "2", "3"}, b); diff != "" {
		t.Errorf("listener b (-want +got):\n%s", diff)
	}
	var all []string
	for _, e := range c.Audit.Entries() {
		all = append(all, e.InsertID)
	}
	if diff := cmp.Diff([]string{"0", "1", "2", "3", "4"}, all); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

// TestListenerMayRecord checks a listener can itself cause an entry (as a
// listener that polls a Compute operation does) without deadlocking.
func TestListenerMayRecord(t *testing.T) {
	c := core.New("")
	var got []string
	stop := c.Audit.Listen(func(e *core.LogEntry) {
		got = append(got, e.InsertID)
		if e.InsertID == "first" {
			c.Audit.Append(&core.LogEntry{InsertID: "from-listener"})
		}
	})
	defer stop()
	done := make(chan struct{})
	go func() {
		c.Audit.Append(&core.LogEntry{InsertID: "first"})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Append from a listener deadlocked")
	}
	if len(got) != 2 || len(c.Audit.Entries()) != 2 {
		t.Errorf("listener saw %v, log holds %d entries; want both entries", got, len(c.Audit.Entries()))
	}
}

// TestListenConcurrent checks that, with many goroutines appending at once,
// every listener sees every entry exactly once and each goroutine's entries
// in the order it appended them (the order across goroutines is not
// guaranteed; see Listen).
func TestListenConcurrent(t *testing.T) {
	const goroutines, each = 8, 300
	c := core.New("")
	var mu sync.Mutex
	seen := map[int][]int{}
	total := 0
	stop := c.Audit.Listen(func(e *core.LogEntry) {
		var g, i int
		if _, err := fmt.Sscanf(e.InsertID, "%d-%d", &g, &i); err != nil {
			t.Errorf("insertId %q: %v", e.InsertID, err)
		}
		mu.Lock()
		seen[g] = append(seen[g], i)
		total++
		mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				c.Audit.Append(&core.LogEntry{InsertID: fmt.Sprintf("%d-%d", g, i)})
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if total != goroutines*each || len(c.Audit.Entries()) != goroutines*each {
		t.Fatalf("listener saw %d entries, log holds %d; want %d", total, len(c.Audit.Entries()), goroutines*each)
	}
	want := make([]int, each)
	for i := range want {
		want[i] = i
	}
	for g := range goroutines {
		if diff := cmp.Diff(want, seen[g]); diff != "" {
			t.Errorf("goroutine %d's entries reached the listener out of order (-want +got):\n%s", g, diff)
		}
	}
}

func TestEmptyLogRendersAsArray(t *testing.T) {
	b, err := json.Marshal(core.New("").Audit.Entries())
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "[]" {
		t.Errorf("empty log as JSON = %s, want []", b)
	}
}

func TestAuditLogCap(t *testing.T) {
	const max, extra = 100_000, 1_234
	c := core.New("")
	for i := range max + extra {
		c.Audit.Append(&core.LogEntry{InsertID: strconv.Itoa(i)})
	}
	got := c.Audit.Entries()
	if len(got) != max {
		t.Fatalf("log holds %d entries, want %d", len(got), max)
	}
	if got[0].InsertID != strconv.Itoa(extra) || got[max-1].InsertID != strconv.Itoa(max+extra-1) {
		t.Errorf("log spans %s..%s, want %d..%d", got[0].InsertID, got[max-1].InsertID, extra, max+extra-1)
	}
	for i := 1; i < len(got); i++ {
		if a, _ := strconv.Atoi(got[i-1].InsertID); strconv.Itoa(a+1) != got[i].InsertID {
			t.Fatalf("entry %d is %s after %s", i, got[i].InsertID, got[i-1].InsertID)
		}
	}
	// Entries is a copy.
	got[0] = nil
	if c.Audit.Entries()[0] == nil {
		t.Error("Entries shares its slice with the log")
	}
}

func BenchmarkAppendAtCap(b *testing.B) {
	c := core.New("")
	for i := range 100_000 {
		c.Audit.Append(&core.LogEntry{InsertID: strconv.Itoa(i)})
	}
	e := &core.LogEntry{InsertID: "x"}
	for b.Loop() {
		c.Audit.Append(e)
	}
}

func TestProtoMapAndJSONMap(t *testing.T) {
	policy := &iampb.Policy{Version: 3, Etag: []byte{7, 1}, Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}}
	tests := []struct {
		name string
		got  map[string]any
		want map[string]any
	}{
		{"proto message", core.ProtoMap(policy, "type.googleapis.com/google.iam.v1.Policy"), map[string]any{
			"@type": "type.googleapis.com/google.iam.v1.Policy", "version": float64(3), "etag": "BwE=",
			"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []any{"allUsers"}}},
		}},
		{"proto not an object", core.ProtoMap(durationpb.New(time.Second), "t"), map[string]any{"@type": "t"}},
		{"proto nil", core.ProtoMap(nil, "type.googleapis.com/x"), map[string]any{"@type": "type.googleapis.com/x"}},
		{"json struct", core.JSONMap(struct {
			Name      string `json:"name"`
			QuicOver  string `json:"quicOverride"`
			Forgotten string `json:"-"`
		}{"p", "NONE", "x"}, "type.googleapis.com/compute.targetHttpsProxies.insert"),
			map[string]any{"name": "p", "quicOverride": "NONE", "@type": "type.googleapis.com/compute.targetHttpsProxies.insert"}},
		{"json without type", core.JSONMap(map[string]int{"a": 1}, ""), map[string]any{"a": float64(1)}},
		{"json not an object", core.JSONMap([]int{1}, "t"), map[string]any{"@type": "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestIDsAndOperationNames(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		id := core.ID()
		if s := strconv.FormatUint(id, 10); len(s) != 19 {
			t.Fatalf("ID() = %s, want 19 digits", s)
		}
		seen[id] = true
	}
	if len(seen) < 999 {
		t.Errorf("1000 IDs, %d distinct", len(seen))
	}
	now := time.UnixMilli(1729262055617)
	name := core.OperationName(now)
	// Shape of the real "operation-1729262055617-624c1328c759c-adc97462-31656ee9".
	if !regexp.MustCompile(`^operation-1729262055617-[0-9a-f]{13}-[0-9a-f]{8}-[0-9a-f]{8}$`).MatchString(name) {
		t.Errorf("OperationName = %q", name)
	}
}
