package event

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
)

// realSamples is what every real sample in internal/auditsamples/testdata must
// decode to. A sample added there without an entry here fails the test.
var realSamples = map[string]want{
	"run-v1-create-service.json":                                  {targets: svc("some-project", "us-west1", "cloudrun-exfil")},
	"compute-instances-insert-beta-last.json":                     {skip: `Compute method "beta.compute.instances.insert" is not handled`},
	"compute-instances-insert-last-error-ip-space-exhausted.json": {skip: `Compute method "v1.compute.instances.insert" is not handled`},
	"compute-lb-target-https-proxy-insert-first.json":             {skip: `Compute method "v1.compute.targetHttpsProxies.insert" is not handled`},
	"compute-lb-target-https-proxy-insert-last.json":              {skip: `Compute method "v1.compute.targetHttpsProxies.insert" is not handled`},
	"generic-pubsub-create-topic.json":                            {skip: `not a Cloud Run or Compute event (serviceName "pubsub.googleapis.com")`},
	// A whole structured CloudEvent; its data is decoded on every path too.
	"cloudevent-structured-audit-storage-objects-create.json": {skip: `not a Cloud Run or Compute event (serviceName "storage.googleapis.com")`},
}

func TestRealSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(auditlogDir(t), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		seen[name] = true
		w, ok := realSamples[name]
		if !ok {
			t.Errorf("real sample %s has no expectation in realSamples", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			b := readSample(t, name)
			if !strings.HasPrefix(name, "cloudevent-") {
				decodeAllPaths(t, b, w)
				return
			}
			t.Run("structured-http", func(t *testing.T) {
				r := httptest.NewRequest("POST", "/", bytes.NewReader(b))
				r.Header.Set("Content-Type", "application/cloudevents+json")
				ev, err := FromHTTP(r)
				if err != nil {
					t.Fatalf("FromHTTP: %v", err)
				}
				d, err := Decode(ev)
				checkDecision(t, d, err, w)
			})
			t.Run("json", func(t *testing.T) {
				var ev cloudevents.Event
				if err := json.Unmarshal(b, &ev); err != nil {
					t.Fatalf("unmarshal CloudEvent: %v", err)
				}
				d, err := Decode(ev)
				checkDecision(t, d, err, w)
			})
			var env struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			decodeAllPaths(t, env.Data, w)
		})
	}
	for name := range realSamples {
		if !seen[name] {
			t.Errorf("expected real sample %s is missing from %s", name, auditlogDir(t))
		}
	}
}

func TestRealSampleTrigger(t *testing.T) {
	d, err := DecodeLogEntry(readSample(t, "run-v1-create-service.json"))
	if err != nil {
		t.Fatal(err)
	}
	w := Trigger{
		EventID:      "projects/some-project/logs/cloudaudit.googleapis.com%2Factivityjzm5rucrn21706867034497796",
		Source:       "//cloudaudit.googleapis.com/projects/some-project/logs/activity",
		Type:         AuditLogWritten,
		Method:       RunV1CreateService,
		Principal:    "some.user@company.com",
		ResourceName: "namespaces/some-project/services/cloudrun-exfil",
		Time:         mustTime(t, "2024-02-02T09:43:54.497796Z"),
		Via:          ViaLogSink,
	}
	if diff := cmp.Diff(w, d.Trigger); diff != "" {
		t.Errorf("Trigger (-want +got):\n%s", diff)
	}
}

// NewAuditLogEvent, given the data of the real delivered event, rebuilds
// the attributes Eventarc gave it.
func TestNewAuditLogEventMatchesRealEnvelope(t *testing.T) {
	var real cloudevents.Event
	if err := json.Unmarshal(readSample(t, "cloudevent-structured-audit-storage-objects-create.json"), &real); err != nil {
		t.Fatal(err)
	}
	got, err := NewAuditLogEvent(real.Data())
	if err != nil {
		t.Fatalf("NewAuditLogEvent: %v", err)
	}
	type attrs struct {
		ID, Source, Type, Subject, DataSchema, DataContentType string
		Time                                                   string
		Extensions                                             map[string]any
	}
	of := func(e cloudevents.Event) attrs {
		return attrs{e.ID(), e.Source(), e.Type(), e.Subject(), e.DataSchema(), e.DataContentType(), e.Time().UTC().Format("2006-01-02T15:04:05.999999999Z07:00"), e.Extensions()}
	}
	if diff := cmp.Diff(of(real), of(got)); diff != "" {
		t.Errorf("attributes (-real +built):\n%s", diff)
	}
	if !bytes.Equal(got.Data(), real.Data()) {
		t.Errorf("data differs")
	}
}

// Synthetic entries made from real samples by changing only the method and
// resource name, so that handled methods are exercised with real shapes
// (slim last entries, missing @type, error status with details).
func TestDecodeRealShapes(t *testing.T) {
	tests := []struct {
		name   string
		sample string
		edit   func(obj)
		want   want
	}{
		{
			name:   "synthetic: backendServices.insert last, from the targetHttpsProxies last entry",
			sample: "compute-lb-target-https-proxy-insert-last.json",
			edit:   setMethod("v1.compute.backendServices.insert", "projects/gcpdiag-lb3-aaaa/global/backendServices/web"),
			want:   want{compute: &ComputeRef{Project: "gcpdiag-lb3-aaaa", Kind: ComputeBackendService, Name: "web"}},
		},
		{
			name:   "synthetic: backendServices.insert first, from the targetHttpsProxies first entry",
			sample: "compute-lb-target-https-proxy-insert-first.json",
			edit:   setMethod("v1.compute.backendServices.insert", "projects/gcpdiag-lb3-aaaa/global/backendServices/web"),
			want:   want{skip: "waiting for the operation's last entry"},
		},
		{
			name:   "synthetic: regionBackendServices.patch failed last entry, from the IP_SPACE_EXHAUSTED entry",
			sample: "compute-instances-insert-last-error-ip-space-exhausted.json",
			edit:   setMethod("v1.compute.regionBackendServices.patch", "projects/12340032/regions/us-central1/backendServices/web"),
			want:   want{skip: "operation failed (code 8: IP_SPACE_EXHAUSTED)"},
		},
		{
			name:   "synthetic: regionBackendServices.patch last, project number, from the IP_SPACE_EXHAUSTED entry without status",
			sample: "compute-instances-insert-last-error-ip-space-exhausted.json",
			edit: func(e obj) {
				setMethod("v1.compute.regionBackendServices.patch", "projects/12340032/regions/us-central1/backendServices/web")(e)
				delete(pp(e), "status")
			},
			want: want{compute: &ComputeRef{Project: "12340032", Region: "us-central1", Kind: ComputeBackendService, Name: "web"}},
		},
		{
			name:   "synthetic: beta regionNetworkEndpointGroups.insert last without @type, from the console VM entry",
			sample: "compute-instances-insert-beta-last.json",
			edit:   setMethod("beta.compute.regionNetworkEndpointGroups.insert", "projects/events-atamel/regions/us-central1/networkEndpointGroups/neg"),
			want:   want{compute: &ComputeRef{Project: "events-atamel", Region: "us-central1", Kind: ComputeNetworkEndpointGroup, Name: "neg"}},
		},
		{
			name:   "synthetic: run v1 ReplaceService with the location only in resourceLocation",
			sample: "run-v1-create-service.json",
			edit: func(e obj) {
				pp(e)["methodName"] = RunV1ReplaceService
				delete(e["resource"].(obj)["labels"].(obj), "location")
			},
			want: want{targets: svc("some-project", "us-west1", "cloudrun-exfil")},
		},
		{
			name:   "synthetic: run v1 CreateService with the location only in the response",
			sample: "run-v1-create-service.json",
			edit: func(e obj) {
				delete(e["resource"].(obj)["labels"].(obj), "location")
				delete(pp(e), "resourceLocation")
			},
			want: want{targets: svc("some-project", "us-west1", "cloudrun-exfil")},
		},
		{
			name:   "synthetic: run v1 DeleteService",
			sample: "run-v1-create-service.json",
			edit:   func(e obj) { pp(e)["methodName"] = "google.cloud.run.v1.Services.DeleteService" },
			want:   want{skip: "deleted"},
		},
		{
			name:   "synthetic: run v1 CreateService denied",
			sample: "run-v1-create-service.json",
			edit:   func(e obj) { pp(e)["status"] = obj{"code": 7, "message": "Permission denied"} },
			want:   want{skip: "call failed (code 7: Permission denied)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e obj
			if err := json.Unmarshal(readSample(t, tc.sample), &e); err != nil {
				t.Fatal(err)
			}
			tc.edit(e)
			decodeAllPaths(t, mustJSON(t, e), tc.want)
		})
	}
}

func setMethod(method, resource string) func(obj) {
	return func(e obj) {
		pp(e)["methodName"] = method
		pp(e)["resourceName"] = resource
	}
}
