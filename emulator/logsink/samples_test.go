package logsink

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/internal/auditsamples"
	"github.com/iapguard/iapguard/internal/event"
)

// decodeHTTP decodes a delivered request as the function does.
func decodeHTTP(t *testing.T, header http.Header, body []byte) (event.Decision, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header = header.Clone()
	ev, err := event.FromHTTP(r)
	if err != nil {
		t.Fatalf("FromHTTP: %v", err)
	}
	return event.Decode(ev)
}

// Every real audit-log sample (internal/auditsamples/testdata) gives the same
// Decision whether Eventarc delivers it directly or a log sink routes it
// through Pub/Sub and the push stand-in: same targets or skip reason, and
// the same trigger (event id, source, type, method, principal, resource,
// time), so duplicates across the two paths share one deduplication key.
// Only Via differs.
func TestRealSamplesDecideAlikeOnBothPaths(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(auditsamples.Dir(t), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no real samples (%v)", err)
	}
	srv := newPubSub(t)
	rcv := &receiver{}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	p := startPusher(t, srv, PushOptions{Targets: []string{hs.URL}, Concurrency: 1})

	entries := map[string][]byte{} // message id → entry
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		if strings.HasPrefix(name, "cloudevent-") { // a whole delivered event: its data is the entry
			var env struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			b = env.Data
		}
		entries[publish(t, srv, string(b))] = b
		names = append(names, name)
	}
	wait(t, p)
	if rcv.count() != len(entries) {
		t.Fatalf("%d deliveries for %d samples", rcv.count(), len(entries))
	}
	acted := 0
	for i, req := range rcv.got {
		entry := entries[req.Header.Get("Ce-Id")]
		sinkDec, sinkErr := decodeHTTP(t, req.Header, rcv.bodies[i])

		ev, err := event.NewAuditLogEvent(entry)
		if err != nil {
			t.Fatalf("NewAuditLogEvent: %v", err)
		}
		direct, err := http.NewRequest(http.MethodPost, "http://function.invalid/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := cehttp.WriteRequest(t.Context(), binding.ToMessage(&ev), direct); err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		if _, err := body.ReadFrom(direct.Body); err != nil {
			t.Fatal(err)
		}
		directDec, directErr := decodeHTTP(t, direct.Header, body.Bytes())

		what := directDec.Trigger.Method + " " + directDec.Trigger.ResourceName
		if (sinkErr == nil) != (directErr == nil) {
			t.Errorf("%s: errors differ: log sink %v, Eventarc %v", what, sinkErr, directErr)
		}
		if directDec.Trigger.Via != event.ViaEventarc || sinkDec.Trigger.Via != event.ViaLogSink {
			t.Errorf("%s: Via = %q (Eventarc) and %q (log sink)", what, directDec.Trigger.Via, sinkDec.Trigger.Via)
		}
		sinkDec.Trigger.Via = directDec.Trigger.Via
		if diff := cmp.Diff(directDec, sinkDec); diff != "" {
			t.Errorf("%s: decisions differ (-Eventarc +log sink):\n%s", what, diff)
		}
		if directDec.Trigger.EventID == "" {
			t.Errorf("%s: no event id to deduplicate on", what)
		}
		if len(directDec.Targets) > 0 {
			acted++
		}
	}
	if acted == 0 {
		t.Errorf("no sample among %v decoded to a target; the comparison covers skips only", names)
	}
}
