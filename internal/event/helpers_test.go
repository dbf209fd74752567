package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/iapguard/iapguard/internal/auditsamples"
)

// auditlogDir is the real samples directory (internal/auditsamples).
func auditlogDir(t testing.TB) string { return auditsamples.Dir(t) }

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(auditlogDir(t), name))
	if err != nil {
		t.Fatalf("reading sample: %v", err)
	}
	return b
}

// obj is a JSON object under construction.
type obj = map[string]any

// synthEntry builds a synthetic LogEntry shaped like the real samples:
// a successful Admin Activity entry for service/method/resource. Options
// edit the map before it is marshalled.
func synthEntry(service, method, resource string, opts ...func(obj)) obj {
	e := obj{
		"insertId": "synthetic1",
		"logName":  "projects/p1/logs/cloudaudit.googleapis.com%2Factivity",
		"protoPayload": obj{
			"@type":              "type.googleapis.com/google.cloud.audit.AuditLog",
			"authenticationInfo": obj{"principalEmail": "alice@example.com"},
			"serviceName":        service,
			"methodName":         method,
			"resourceName":       resource,
			"requestMetadata":    obj{"callerIp": "127.0.0.1"},
		},
		"resource":         obj{"type": "synthetic", "labels": obj{"project_id": "p1"}},
		"severity":         "NOTICE",
		"timestamp":        "2025-01-02T03:04:05.123456789Z",
		"receiveTimestamp": "2025-01-02T03:04:05.987654321Z",
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func pp(e obj) obj { return e["protoPayload"].(obj) }

func withOp(first, last bool) func(obj) {
	return func(e obj) {
		op := obj{"id": "operation-1-2-3", "producer": "compute.googleapis.com"}
		if first {
			op["first"] = true
		}
		if last {
			op["last"] = true
		}
		e["operation"] = op
	}
}

func withStatus(code int, msg string) func(obj) {
	return func(e obj) { pp(e)["status"] = obj{"code": code, "message": msg} }
}

func withLocationLabel(loc string) func(obj) {
	return func(e obj) { e["resource"].(obj)["labels"].(obj)["location"] = loc }
}

func withPayload(k string, v any) func(obj) { return func(e obj) { pp(e)[k] = v } }

func withTop(k string, v any) func(obj) { return func(e obj) { e[k] = v } }

func withoutPayload(k string) func(obj) { return func(e obj) { delete(pp(e), k) } }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// rawAuditEvent wraps data, unchecked, in an audit-log CloudEvent without
// extension attributes (so malformed data can be delivered too).
func rawAuditEvent(data []byte) cloudevents.Event {
	e := cloudevents.New()
	e.SetID("ev-1")
	e.SetSource("//cloudaudit.googleapis.com/projects/p1/logs/activity")
	e.SetType(AuditLogWritten)
	e.SetTime(time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC))
	_ = e.SetData("application/json", data)
	return e
}

// pubsubEvent wraps data as the message data of a messagePublished event.
func pubsubEvent(t testing.TB, data []byte) cloudevents.Event {
	t.Helper()
	e, err := NewMessagePublishedEvent("p1", "iapguard-replay", "projects/p1/subscriptions/eventarc-sub",
		PubSubMessage{Data: data, MessageID: "1234567890", PublishTime: time.Date(2025, 1, 2, 3, 4, 7, 0, time.UTC)})
	if err != nil {
		t.Fatalf("NewMessagePublishedEvent: %v", err)
	}
	return e
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse time: %v", err)
	}
	return v
}
