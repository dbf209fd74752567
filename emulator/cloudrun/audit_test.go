package cloudrun

import (
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
)

// auditView is the part of an entry the consumers (Eventarc filters, the
// reconciler) rely on.
type auditView struct {
	Method, Service, Resource, Permission, Principal string
	RequestType, ResponseType, ResourceType          string
	Labels                                           map[string]string
	Locations                                        []string
	Severity, LogName                                string
}

func viewOf(e *core.LogEntry) auditView {
	p := e.ProtoPayload
	v := auditView{
		Method: p.MethodName, Service: p.ServiceName, Resource: p.ResourceName,
		Principal:    p.AuthenticationInfo.PrincipalEmail,
		RequestType:  p.Request["@type"].(string),
		ResponseType: p.Response["@type"].(string),
		ResourceType: e.Resource.Type, Labels: e.Resource.Labels,
		Severity: e.Severity, LogName: e.LogName,
	}
	if len(p.AuthorizationInfo) == 1 {
		v.Permission = p.AuthorizationInfo[0].Permission
	}
	if p.ResourceLocation != nil {
		v.Locations = p.ResourceLocation.CurrentLocations
	}
	return v
}

func TestAuditEntries(t *testing.T) {
	h := newHarness(t, Options{LRO: LROImmediate})
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-emulator-principal", "alice@example.com")
	name := svcName(testNumberStr, "hello") // callers may use the number; audit uses the id

	op, err := h.client.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent(testNumberStr), ServiceId: "hello", Service: minimalService()})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	created, _ := op.Wait(ctx)
	if created.GetCreator() != "alice@example.com" {
		t.Errorf("creator = %q, want the caller named in metadata", created.GetCreator())
	}
	if _, err := h.client.UpdateService(ctx, &runpb.UpdateServiceRequest{
		Service: &runpb.Service{Name: name, IapEnabled: true}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"iap_enabled"}},
	}); err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	if _, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: &iampb.Policy{
		Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"allUsers"}}},
	}}); err != nil {
		t.Fatalf("SetIamPolicy: %v", err)
	}
	// Reads write nothing.
	h.get(t, "hello")
	if _, err := h.client.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name}); err != nil {
		t.Fatalf("GetIamPolicy: %v", err)
	}
	if _, err := h.client.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: name}); err != nil {
		t.Fatalf("DeleteService: %v", err)
	}

	labels := func(service string) map[string]string {
		return map[string]string{"service_name": service, "location": testRegion, "project_id": testProject, "configuration_name": "", "revision_name": ""}
	}
	base := auditView{
		Service: "run.googleapis.com", Resource: svcName(testProject, "hello"), Principal: "alice@example.com",
		ResponseType: "type.googleapis.com/google.cloud.run.v2.Service", ResourceType: "cloud_run_revision",
		Labels: labels("hello"), Locations: []string{testRegion}, Severity: "NOTICE",
		LogName: "projects/" + testProject + "/logs/cloudaudit.googleapis.com%2Factivity",
	}
	with := func(method, perm, reqType string, f func(*auditView)) auditView {
		v := base
		v.Method, v.Permission, v.RequestType = method, perm, "type.googleapis.com/"+reqType
		if f != nil {
			f(&v)
		}
		return v
	}
	want := []auditView{
		with(methodCreate, "run.services.create", "google.cloud.run.v2.CreateServiceRequest", nil),
		with(methodUpdate, "run.services.update", "google.cloud.run.v2.UpdateServiceRequest", nil),
		with(methodSetIAM, "run.services.setIamPolicy", "google.iam.v1.SetIamPolicyRequest", func(v *auditView) {
			v.ResponseType = "type.googleapis.com/google.iam.v1.Policy"
			v.Labels = labels("")
		}),
		with(methodDelete, "run.services.delete", "google.cloud.run.v2.DeleteServiceRequest", nil),
	}
	entries := h.c.Audit.Entries()
	var got []auditView
	for _, e := range entries {
		got = append(got, viewOf(e))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("audit entries mismatch (-want +got):\n%s", diff)
	}

	t.Run("payloads", func(t *testing.T) {
		if got := entries[0].ProtoPayload.Request["serviceId"]; got != "hello" {
			t.Errorf("create request serviceId = %v, want hello", got)
		}
		if got := entries[1].ProtoPayload.Request["updateMask"]; got != "iapEnabled" {
			t.Errorf("update request updateMask = %v, want iapEnabled (protojson FieldMask)", got)
		}
		if got := entries[1].ProtoPayload.Response["iapEnabled"]; got != true {
			t.Errorf("update response iapEnabled = %v, want true", got)
		}
		if got := entries[1].ProtoPayload.Response["generation"]; got != "2" {
			t.Errorf("update response generation = %v, want \"2\" (int64 as JSON string)", got)
		}
		if _, ok := entries[2].ProtoPayload.Response["etag"]; !ok {
			t.Error("SetIamPolicy response lacks the policy etag")
		}
		if got := entries[3].ProtoPayload.Response["deleteTime"]; got == nil {
			t.Error("delete response lacks deleteTime")
		}
	})

	// The JSON field set matches the real Cloud Run sample
	// (internal/auditsamples/testdata/run-v1-create-service.json).
	t.Run("field set", func(t *testing.T) {
		b, err := json.Marshal(entries[0])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		keysOf := func(v any) []string {
			var ks []string
			for k := range v.(map[string]any) {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			return ks
		}
		if diff := cmp.Diff([]string{"insertId", "logName", "protoPayload", "receiveTimestamp", "resource", "severity", "timestamp"}, keysOf(m)); diff != "" {
			t.Errorf("entry keys mismatch (-real sample +got):\n%s", diff)
		}
		wantPayload := []string{"@type", "authenticationInfo", "authorizationInfo", "methodName", "request", "requestMetadata",
			"resourceLocation", "resourceName", "response", "serviceName"}
		if diff := cmp.Diff(wantPayload, keysOf(m["protoPayload"])); diff != "" {
			t.Errorf("protoPayload keys mismatch (-real sample +got):\n%s", diff)
		}
		authz := m["protoPayload"].(map[string]any)["authorizationInfo"].([]any)[0]
		if diff := cmp.Diff([]string{"granted", "permission", "permissionType", "resource", "resourceAttributes"}, keysOf(authz)); diff != "" {
			t.Errorf("authorizationInfo keys mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestStatsCounted(t *testing.T) {
	h := newHarness(t, Options{})
	h.create(t, "hello", nil) // CreateService + one GetOperation from op.Wait
	h.get(t, "hello")
	h.get(t, "hello")
	if _, err := h.client.TestIamPermissions(ctxT(t), &iampb.TestIamPermissionsRequest{Resource: svcName(testProject, "hello")}); err != nil {
		t.Fatal(err)
	}
	_, _ = h.client.GetService(ctxT(t), &runpb.GetServiceRequest{Name: svcName(testProject, "ghost")})
	want := map[string]int64{
		methodCreate: 1,
		getOperation: 1,
		"google.cloud.run.v2.Services.GetService":         3,
		"google.cloud.run.v2.Services.TestIamPermissions": 1,
	}
	if diff := cmp.Diff(want, h.c.Stats.Snapshot().Calls); diff != "" {
		t.Errorf("call counts mismatch (-want +got):\n%s", diff)
	}
}

// TestConcurrentReadModifyWrite runs etag-guarded label updates from many
// goroutines: every accepted write bumps the generation exactly once and
// losers see ABORTED.
func TestConcurrentReadModifyWrite(t *testing.T) {
	h := newHarness(t, Options{LRO: LROImmediate})
	h.create(t, "hello", nil)
	const workers, perWorker = 8, 5
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		failures []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; {
				cur, err := h.client.GetService(ctxT(t), &runpb.GetServiceRequest{Name: svcName(testProject, "hello")})
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				cur.Labels["w"+string(rune('a'+w))] = "x"
				_, err = h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{
					Service: cur, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
				})
				if status.Code(err) == codes.Aborted {
					continue
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					accepted++
				}
				mu.Unlock()
				i++
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(failures...); err != nil {
		t.Fatalf("unexpected errors: %v", err)
	}
	got := h.get(t, "hello")
	if got.GetGeneration() != int64(1+accepted) || accepted != workers*perWorker {
		t.Errorf("generation %d after %d accepted writes, want %d", got.GetGeneration(), accepted, 1+workers*perWorker)
	}
	var ks []string
	for k := range got.GetLabels() {
		ks = append(ks, k)
	}
	if len(ks) != workers+1 || !slices.Contains(ks, "iap") {
		t.Errorf("labels %v: want iap plus one per worker (no lost update)", ks)
	}
}
