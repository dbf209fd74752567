package delivery_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/internal/auditsamples"
	"github.com/iapguard/iapguard/internal/event"
)

// auditlogDir is the real samples directory (internal/auditsamples).
func auditlogDir(t *testing.T) string { return auditsamples.Dir(t) }

// attributes returns the CloudEvent attributes in h, keyed like the
// structured-mode JSON (lower case, no "ce-" prefix; Content-Type as
// datacontenttype).
func attributes(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		k = strings.ToLower(k)
		switch {
		case k == "content-type":
			out["datacontenttype"] = v[0]
		case strings.HasPrefix(k, "ce-"):
			out[strings.TrimPrefix(k, "ce-")] = v[0]
		}
	}
	return out
}

// TestCloudEventForMatchesRealDelivery re-derives every attribute of a real
// Eventarc audit-log CloudEvent from its data.
func TestCloudEventForMatchesRealDelivery(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(auditlogDir(t), "cloudevent-structured-audit-storage-objects-create.json"))
	if err != nil {
		t.Fatal(err)
	}
	var real map[string]json.RawMessage
	if err := json.Unmarshal(b, &real); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for k, v := range real {
		if k == "data" {
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			t.Fatalf("attribute %s: %v", k, err)
		}
		want[k] = s
	}
	var e core.LogEntry
	if err := json.Unmarshal(real["data"], &e); err != nil {
		t.Fatalf("decoding data: %v", err)
	}
	h, body, err := delivery.CloudEventFor(&e)
	if err != nil {
		t.Fatalf("CloudEventFor: %v", err)
	}
	if diff := cmp.Diff(want, attributes(h)); diff != "" {
		t.Errorf("attributes (-real +derived):\n%s", diff)
	}
	var back core.LogEntry
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatalf("body is not a LogEntry: %v", err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("body round trip (-entry +body):\n%s", diff)
	}
}

// TestCloudEventForAgreesWithDecoder checks the emulator's mapping against
// the one the function's own test helpers use, for an emulator entry.
func TestCloudEventForAgreesWithDecoder(t *testing.T) {
	c := core.New("", core.Project{ID: "demo-project", Number: 123456789012})
	c.SetNow(func() time.Time { return time.Date(2025, 5, 6, 7, 8, 9, 123456789, time.UTC) })
	e := c.Audit.Record(core.Record{
		Project: c.Projects.All()[0], ServiceName: "run.googleapis.com",
		MethodName:   "google.cloud.run.v2.Services.UpdateService",
		ResourceName: "projects/demo-project/locations/us-central1/services/hello",
		Location:     "us-central1", ResourceType: "cloud_run_revision",
	})
	h, body, err := delivery.CloudEventFor(e)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.NewAuditLogEvent(body)
	if err != nil {
		t.Fatalf("event.NewAuditLogEvent: %v", err)
	}
	want := map[string]string{
		"id": ev.ID(), "source": ev.Source(), "subject": ev.Subject(), "type": ev.Type(),
		"specversion": ev.SpecVersion(), "time": ev.Time().Format(time.RFC3339Nano),
		"dataschema": ev.DataSchema(), "datacontenttype": ev.DataContentType(),
	}
	for k, v := range ev.Extensions() {
		want[k] = v.(string)
	}
	if diff := cmp.Diff(want, attributes(h)); diff != "" {
		t.Errorf("attributes (-decoder helper +delivery):\n%s", diff)
	}
	if got := h.Get("Ce-Source"); got != "//cloudaudit.googleapis.com/projects/demo-project/logs/activity" {
		t.Errorf("source = %q", got)
	}
}

func TestCloudEventForRejects(t *testing.T) {
	ok := func() *core.LogEntry {
		return &core.LogEntry{
			ProtoPayload: &core.AuditPayload{ServiceName: "run.googleapis.com", MethodName: "m", ResourceName: "r"},
			LogName:      "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
		}
	}
	tests := []struct {
		name string
		edit func(*core.LogEntry) *core.LogEntry
	}{
		{"nil entry", func(*core.LogEntry) *core.LogEntry { return nil }},
		{"no payload", func(e *core.LogEntry) *core.LogEntry { e.ProtoPayload = nil; return e }},
		{"log name without logs", func(e *core.LogEntry) *core.LogEntry { e.LogName = "projects/p"; return e }},
		{"not an audit log", func(e *core.LogEntry) *core.LogEntry {
			e.LogName = "projects/p/logs/run.googleapis.com%2Fstdout"
			return e
		}},
		{"bad escape", func(e *core.LogEntry) *core.LogEntry {
			e.LogName = "projects/p/logs/cloudaudit.googleapis.com%zz"
			return e
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := delivery.CloudEventFor(tt.edit(ok())); err == nil {
				t.Error("CloudEventFor succeeded, want an error")
			}
		})
	}
	if _, _, err := delivery.CloudEventFor(ok()); err != nil {
		t.Errorf("valid entry: %v", err)
	}
}

// Eventarc's delivered data is google.events.cloud.audit.v1.LogEntryData:
// protoPayload is a typed AuditLog, so it has no "@type" — like the real
// delivered payloads in internal/auditsamples/testdata
// (compute-instances-insert-beta-last.json, the storage CloudEvent) — while
// Cloud Logging's view of the same entry keeps it (#14 item 8).
func TestDeliveredDataHasNoProtoPayloadType(t *testing.T) {
	for _, sample := range []string{"compute-instances-insert-beta-last.json"} {
		b, err := os.ReadFile(filepath.Join(auditlogDir(t), sample))
		if err != nil {
			t.Fatal(err)
		}
		var real struct{ ProtoPayload map[string]any }
		if err := json.Unmarshal(b, &real); err != nil {
			t.Fatal(err)
		}
		if _, ok := real.ProtoPayload["@type"]; ok {
			t.Fatalf("%s: the real delivered payload has protoPayload.@type; this test's premise is wrong", sample)
		}
	}
	c := core.New("", core.Project{ID: "demo-project", Number: 123456789012})
	e := c.Audit.Record(core.Record{
		Project: c.Projects.All()[0], ServiceName: "run.googleapis.com",
		MethodName:   "google.cloud.run.v2.Services.UpdateService",
		ResourceName: "projects/demo-project/locations/us-central1/services/hello",
		Location:     "us-central1", ResourceType: "cloud_run_revision",
		Request: map[string]any{"@type": "type.googleapis.com/google.cloud.run.v2.UpdateServiceRequest"},
	})
	_, body, err := delivery.CloudEventFor(e)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ ProtoPayload map[string]any }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if typ, ok := got.ProtoPayload["@type"]; ok {
		t.Errorf("delivered protoPayload.@type = %v, want none", typ)
	}
	if req, _ := got.ProtoPayload["request"].(map[string]any); req["@type"] == nil {
		t.Errorf("delivered request lost its @type: %v", req)
	}
	if logged := c.Audit.Entries()[0].ProtoPayload.Type; logged != "type.googleapis.com/google.cloud.audit.AuditLog" {
		t.Errorf("Cloud Logging's entry @type = %q, want the AuditLog type", logged)
	}
}
