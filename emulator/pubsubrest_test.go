package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/emulatortest"
)

// Pub/Sub's Publish over REST, at the HTTP level: Google's transcoding of
// POST /v1/{topic=projects/*/topics/*}:publish, its JSON error envelope,
// and nothing else of Pub/Sub served over REST.
func TestPubSubRESTPublishContract(t *testing.T) {
	t.Parallel()
	const topic = "projects/demo-project/topics/t"
	em := emulatortest.StartPubSub(t, topic)
	base := "http://" + em.Addr() + "/v1/"
	type answer struct {
		code   int
		status string
		body   map[string]any
	}
	do := func(method, path, body string, header ...string) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		a.code = resp.StatusCode
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, b, err)
		}
		if e, ok := a.body["error"].(map[string]any); ok {
			a.status, _ = e["status"].(string)
			if c, _ := e["code"].(float64); int(c) != a.code {
				t.Errorf("%s %s: error.code %v, HTTP status %d", method, path, e["code"], a.code)
			}
		}
		return a
	}
	const publishMethod = "google.pubsub.v1.Publisher.Publish"
	calls := func() int64 { return em.Core.Stats.Snapshot().Calls[publishMethod] }

	// Published: data base64, attributes and ordering key kept, the ids
	// answered as messageIds; counted under the gRPC method key, for the
	// principal the caller names.
	a := do(http.MethodPost, topic+":publish?alt=json&prettyPrint=false",
		`{"messages":[{"data":"aGVsbG8=","attributes":{"k":"v"},"orderingKey":"o"},{"attributes":{"only":"attrs"}}]}`,
		"X-Emulator-Principal", "serviceAccount:pub@demo-project.iam.gserviceaccount.com")
	ids, _ := a.body["messageIds"].([]any)
	if a.code != http.StatusOK || len(ids) != 2 || len(a.body) != 1 {
		t.Fatalf("publish: HTTP %d %v, want 200 with two messageIds and nothing else", a.code, a.body)
	}
	msgs := em.PubSub.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages stored, want 2", len(msgs))
	}
	for _, m := range msgs {
		if m.ID == ids[0] && (string(m.Data) != "hello" || m.Attributes["k"] != "v" || m.OrderingKey != "o") {
			t.Errorf("message %s = data %q attributes %v key %q, want hello {k:v} o", m.ID, m.Data, m.Attributes, m.OrderingKey)
		}
	}
	if n := em.Core.Stats.ByPrincipal("serviceAccount:pub@demo-project.iam.gserviceaccount.com")[publishMethod]; n != 1 {
		t.Errorf("%d Publish calls counted for the named principal, want 1", n)
	}

	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		status                   string
		counted                  bool // the call reached the method (counted and faultable)
	}{
		{"unknown topic", http.MethodPost, "projects/demo-project/topics/missing:publish", `{"messages":[{"data":"ZA=="}]}`, 404, "NOT_FOUND", true},
		{"malformed JSON", http.MethodPost, topic + ":publish", `{"messages":[`, 400, "INVALID_ARGUMENT", true},
		{"unknown JSON field", http.MethodPost, topic + ":publish", `{"messages":[{"data":"ZA=="}],"mesages":[]}`, 400, "INVALID_ARGUMENT", true},
		{"data not base64", http.MethodPost, topic + ":publish", `{"messages":[{"data":"not base64!"}]}`, 400, "INVALID_ARGUMENT", true},
		{"unknown query parameter", http.MethodPost, topic + ":publish?topic2=x", `{"messages":[{"data":"ZA=="}]}`, 400, "INVALID_ARGUMENT", true},
		{"empty body", http.MethodPost, topic + ":publish", ``, 400, "INVALID_ARGUMENT", true},
		{"body over 10 MiB", http.MethodPost, topic + ":publish", `{"messages":[{"data":"` + strings.Repeat("QUFB", (emulator.PubSubMaxRESTBody+3)/4) + `"}]}`, 400, "INVALID_ARGUMENT", false},
		{"GET on publish", http.MethodGet, topic + ":publish", ``, 404, "NOT_FOUND", false},
		{"topic get", http.MethodGet, topic, ``, 404, "NOT_FOUND", false},
		{"topic list", http.MethodGet, "projects/demo-project/topics", ``, 404, "NOT_FOUND", false},
		{"subscription pull", http.MethodPost, "projects/demo-project/subscriptions/s:pull", `{"maxMessages":1}`, 404, "NOT_FOUND", false},
		{"nested topic name", http.MethodPost, "projects/demo-project/topics/a/b:publish", `{"messages":[{"data":"ZA=="}]}`, 404, "NOT_FOUND", false},
	} {
		was := calls()
		a := do(tc.method, tc.path, tc.body)
		if a.code != tc.code || a.status != tc.status {
			t.Errorf("%s: HTTP %d %s (%v), want %d %s", tc.name, a.code, a.status, a.body, tc.code, tc.status)
		}
		if got := calls() - was; got != map[bool]int64{true: 1, false: 0}[tc.counted] {
			t.Errorf("%s: %d Publish calls counted, want counted=%v", tc.name, got, tc.counted)
		}
	}
	if n := len(em.PubSub.Messages()); n != 2 {
		t.Errorf("%d messages stored after the refused requests, want still 2", n)
	}
}
