package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

type decodeResult struct {
	d   Decision
	err error
}

// decodeServer serves FromHTTP+Decode over real HTTP (so header names go
// through the wire and Go's canonicalisation, as Eventarc's do).
func decodeServer(t *testing.T) (url string, results <-chan decodeResult) {
	t.Helper()
	ch := make(chan decodeResult, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := FromHTTP(r)
		var res decodeResult
		if err != nil {
			res.err = err
		} else {
			res.d, res.err = Decode(ev)
		}
		ch <- res
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func TestFromHTTP(t *testing.T) {
	const name = "projects/p1/locations/us-central1/services/hello"
	entry := mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, name))
	target := want{targets: svc("p1", "us-central1", "hello")}

	binaryHeaders := func(ext map[string]string) map[string]string {
		h := map[string]string{
			"ce-specversion": "1.0",
			"ce-type":        AuditLogWritten,
			"ce-source":      "//cloudaudit.googleapis.com/projects/p1/logs/activity",
			"ce-id":          "projects/p1/logs/cloudaudit.googleapis.com%2Factivitysynthetic11735787045123456",
			"ce-time":        "2025-01-02T03:04:05.987654321Z",
			"ce-subject":     RunServiceName + "/" + name,
			"Content-Type":   "application/json; charset=utf-8",
		}
		for k, v := range ext {
			h[k] = v
		}
		return h
	}
	lowerExt := map[string]string{"ce-servicename": RunServiceName, "ce-methodname": RunV2UpdateService, "ce-resourcename": name, "ce-recordedtime": "2025-01-02T03:04:05.123456789Z"}
	camelExt := map[string]string{"ce-serviceName": RunServiceName, "ce-methodName": RunV2UpdateService, "ce-resourceName": name, "ce-recordedTime": "2025-01-02T03:04:05.123456789Z"}

	structured := func(ext map[string]any, dataKey string, data any) []byte {
		m := map[string]any{
			"specversion": "1.0", "type": AuditLogWritten, "id": "x1",
			"source":          "//cloudaudit.googleapis.com/projects/p1/logs/activity",
			"datacontenttype": "application/json; charset=utf-8",
			dataKey:           data,
		}
		for k, v := range ext {
			m[k] = v
		}
		return mustJSON(t, m)
	}
	sJSON := "application/cloudevents+json"

	tests := []struct {
		name    string
		headers map[string]string
		body    []byte
		want    want
	}{
		{name: "binary, lower-case extensions", headers: binaryHeaders(lowerExt), body: entry, want: target},
		{name: "binary, camelCase extension headers", headers: binaryHeaders(camelExt), body: entry, want: target},
		{name: "binary, no extensions", headers: binaryHeaders(nil), body: entry, want: target},
		{name: "binary, camelCase methodName contradicts the payload", headers: binaryHeaders(map[string]string{"ce-methodName": RunV2CreateService}), body: entry, want: want{malformed: true}},
		{name: "binary, servicename contradicts the payload", headers: binaryHeaders(map[string]string{"ce-servicename": "storage.googleapis.com"}), body: entry, want: want{malformed: true}},
		{name: "binary, resourcename contradicts the payload", headers: binaryHeaders(map[string]string{"ce-resourcename": "projects/p1/locations/us-central1/services/other"}), body: entry, want: want{malformed: true}},
		{name: "binary, missing ce-id", headers: func() map[string]string { h := binaryHeaders(nil); delete(h, "ce-id"); return h }(), body: entry, want: want{malformed: true}},
		{name: "binary, text/plain data", headers: func() map[string]string { h := binaryHeaders(nil); h["Content-Type"] = "text/plain"; return h }(), body: entry, want: want{malformed: true}},
		{name: "binary, empty body", headers: binaryHeaders(nil), body: nil, want: want{malformed: true}},
		{name: "binary, truncated body", headers: binaryHeaders(nil), body: entry[:len(entry)/2], want: want{malformed: true}},
		{
			name:    "structured, lower-case extensions",
			headers: map[string]string{"Content-Type": sJSON},
			body:    structured(map[string]any{"servicename": RunServiceName, "methodname": RunV2UpdateService, "resourcename": name}, "data", json.RawMessage(entry)),
			want:    target,
		},
		{
			name:    "structured, camelCase extensions",
			headers: map[string]string{"Content-Type": sJSON},
			body:    structured(map[string]any{"serviceName": RunServiceName, "methodName": RunV2UpdateService, "resourceName": name, "recordedTime": "2025-01-02T03:04:05Z"}, "data", json.RawMessage(entry)),
			want:    target,
		},
		{
			name:    "structured, camelCase methodName contradicts the payload",
			headers: map[string]string{"Content-Type": sJSON},
			body:    structured(map[string]any{"methodName": "google.cloud.run.v2.Services.DeleteService"}, "data", json.RawMessage(entry)),
			want:    want{malformed: true},
		},
		{
			name:    "structured, data_base64",
			headers: map[string]string{"Content-Type": sJSON},
			body:    structured(nil, "data_base64", base64.StdEncoding.EncodeToString(entry)),
			want:    target,
		},
		{
			name:    "structured, truncated",
			headers: map[string]string{"Content-Type": sJSON},
			body:    structured(nil, "data", json.RawMessage(entry))[:100],
			want:    want{malformed: true},
		},
		{
			name:    "structured, missing type",
			headers: map[string]string{"Content-Type": sJSON},
			body:    []byte(`{"specversion":"1.0","id":"x","source":"//s","data":{}}`),
			want:    want{malformed: true},
		},
		{
			name:    "plain JSON without CloudEvent attributes",
			headers: map[string]string{"Content-Type": "application/json"},
			body:    entry,
			want:    want{malformed: true},
		},
		{
			name: "binary messagePublished replay",
			headers: map[string]string{
				"ce-specversion": "1.0", "ce-type": MessagePublished, "ce-id": "42",
				"ce-source":    "//pubsub.googleapis.com/projects/p1/topics/iapguard-replay",
				"Content-Type": "application/json",
			},
			body: mustJSON(t, obj{"message": obj{"data": []byte(`{"version":1,"project":"p1","region":"us-central1","service":"hello"}`), "messageId": "42"}, "subscription": "projects/p1/subscriptions/s"}),
			want: target,
		},
	}
	url, results := decodeServer(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", url, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header[k] = []string{v} // as written, not canonicalised
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			res := <-results
			checkDecision(t, res.d, res.err, tc.want)
		})
	}
}

func TestFromHTTPLimits(t *testing.T) {
	t.Run("body over the limit", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(make([]byte, maxBody+1)))
		r.Header.Set("Ce-Specversion", "1.0")
		if _, err := FromHTTP(r); !errors.Is(err, ErrMalformed) {
			t.Fatalf("error = %v, want ErrMalformed", err)
		}
	})
	t.Run("body read error is not malformed", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/", io.MultiReader(strings.NewReader("{"), errReader{}))
		r.Header.Set("Content-Type", "application/cloudevents+json")
		_, err := FromHTTP(r)
		if err == nil || errors.Is(err, ErrMalformed) {
			t.Fatalf("error = %v, want a read error that is not ErrMalformed", err)
		}
	})
	t.Run("no body", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/", nil)
		r.Body = nil
		if _, err := FromHTTP(r); !errors.Is(err, ErrMalformed) {
			t.Fatalf("error = %v, want ErrMalformed", err)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// An Event built by hand may carry camelCase extension keys (the SDK
// lower-cases only what goes through SetExtension); they are still read.
func TestDecodeCamelCaseExtensionMap(t *testing.T) {
	entry := mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello"))
	tests := []struct {
		name string
		ext  map[string]any
		want want
	}{
		{"agreeing", map[string]any{"methodName": RunV2UpdateService, "serviceName": RunServiceName}, want{targets: svc("p1", "us-central1", "hello")}},
		{"contradicting methodName", map[string]any{"methodName": RunV2CreateService}, want{malformed: true}},
		{"contradicting resourceName", map[string]any{"resourceName": "projects/p1/locations/us-central1/services/x"}, want{malformed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := rawAuditEvent(entry)
			ctx := e.Context.(*cloudevents.EventContextV1)
			ctx.Extensions = tc.ext
			d, err := Decode(e)
			checkDecision(t, d, err, tc.want)
		})
	}
}

func TestDecodeEventLevel(t *testing.T) {
	entry := mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello"))
	tests := []struct {
		name string
		ev   func() cloudevents.Event
		want want
	}{
		{"zero event", func() cloudevents.Event { return cloudevents.Event{} }, want{malformed: true}},
		{"missing source", func() cloudevents.Event { e := rawAuditEvent(entry); e.SetSource(""); return e }, want{malformed: true}},
		{"unknown type", func() cloudevents.Event {
			e := rawAuditEvent(entry)
			e.SetType("google.cloud.storage.object.v1.finalized")
			return e
		}, want{skip: `event type "google.cloud.storage.object.v1.finalized" is not handled`}},
		{"legacy pre-GA audit type", func() cloudevents.Event {
			e := rawAuditEvent(entry)
			e.SetType("com.google.cloud.auditlog.event")
			return e
		}, want{skip: "is not handled"}},
		{"protobuf data", func() cloudevents.Event {
			e := rawAuditEvent(entry)
			e.SetDataContentType("application/protobuf")
			return e
		}, want{malformed: true}},
		{"no content type, JSON data", func() cloudevents.Event { e := rawAuditEvent(entry); e.SetDataContentType(""); return e }, want{targets: svc("p1", "us-central1", "hello")}},
		{"+json content type", func() cloudevents.Event {
			e := rawAuditEvent(entry)
			e.SetDataContentType("application/vnd.x+json")
			return e
		}, want{targets: svc("p1", "us-central1", "hello")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decode(tc.ev())
			checkDecision(t, d, err, tc.want)
		})
	}
}
