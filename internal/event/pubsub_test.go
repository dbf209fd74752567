package event

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
)

func TestDecodeReplay(t *testing.T) {
	tests := []struct {
		name string
		data string
		want want
	}{
		{"service", `{"version":1,"project":"p1","region":"us-central1","service":"hello"}`, want{targets: svc("p1", "us-central1", "hello")}},
		{"project in one region", `{"version":1,"project":"p1","region":"us-central1"}`, want{targets: []Target{{Kind: TargetProject, Project: "p1", Region: "us-central1"}}}},
		{"whole project by number", `{"version":1,"project":"123456789012"}`, want{targets: []Target{{Kind: TargetProject, Project: "123456789012"}}}},
		{"with requestedBy", `{"version":1,"project":"p1","requestedBy":"scheduler"}`, want{targets: []Target{{Kind: TargetProject, Project: "p1"}}}},
		{"empty strings are absent", `{"version":1,"project":"p1","region":"","service":""}`, want{targets: []Target{{Kind: TargetProject, Project: "p1"}}}},
		{"no version", `{"project":"p1"}`, want{malformed: true}},
		{"version 2", `{"version":2,"project":"p1"}`, want{malformed: true}},
		{"version as string", `{"version":"1","project":"p1"}`, want{malformed: true}},
		{"misspelt member", `{"version":1,"project":"p1","region":"r1","sevice":"hello"}`, want{malformed: true}},
		{"service without region", `{"version":1,"project":"p1","service":"hello"}`, want{malformed: true}},
		{"service given twice, last empty", `{"version":1,"project":"p1","region":"r1","service":"billing","service":""}`, want{malformed: true}},
		{"service given twice in another case", `{"version":1,"project":"p1","region":"r1","service":"billing","SERVICE":""}`, want{malformed: true}},
		{"service given twice by case folding", "{\"version\":1,\"project\":\"p1\",\"region\":\"r1\",\"service\":\"billing\",\"\u017fervice\":\"\"}", want{malformed: true}},
		{"region given twice", `{"version":1,"project":"p1","region":"r1","Region":""}`, want{malformed: true}},
		{"project given twice, same value", `{"version":1,"project":"p1","project":"p1"}`, want{malformed: true}},
		{"no project", `{"version":1,"region":"r1"}`, want{malformed: true}},
		{"wildcard project", `{"version":1,"project":"-"}`, want{malformed: true}},
		{"project with a slash", `{"version":1,"project":"p1/locations/x"}`, want{malformed: true}},
		{"bad region", `{"version":1,"project":"p1","region":"us central1"}`, want{malformed: true}},
		{"bad service", `{"version":1,"project":"p1","region":"r1","service":"a/b"}`, want{malformed: true}},
		{"two objects", `{"version":1,"project":"p1"}{"version":1,"project":"p2"}`, want{malformed: true}},
		{"truncated", `{"version":1,"proj`, want{malformed: true}},
		{"JSON array", `[{"version":1,"project":"p1"}]`, want{malformed: true}},
		{"not JSON", `reconcile p1 please`, want{malformed: true}},
		{"JSON string", `"p1"`, want{malformed: true}},
		{"empty", ``, want{malformed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decode(pubsubEvent(t, []byte(tc.data)))
			checkDecision(t, d, err, tc.want)
			if err == nil && d.Trigger.Via != ViaPubSubReplay {
				t.Errorf("Via = %q, want %q", d.Trigger.Via, ViaPubSubReplay)
			}
		})
	}
}

func TestDecodeReplayTrigger(t *testing.T) {
	e := pubsubEvent(t, []byte(`{"version":1,"project":"p1","region":"us-central1","service":"hello","requestedBy":"bob@example.com"}`))
	d, err := Decode(e)
	if err != nil {
		t.Fatal(err)
	}
	w := Trigger{
		EventID:      "1234567890",
		Source:       "//pubsub.googleapis.com/projects/p1/topics/iapguard-replay",
		Type:         MessagePublished,
		Method:       ReplayMethod,
		Principal:    "bob@example.com",
		ResourceName: "projects/p1/locations/us-central1/services/hello",
		Time:         time.Date(2025, 1, 2, 3, 4, 7, 0, time.UTC),
		Via:          ViaPubSubReplay,
	}
	if diff := cmp.Diff(w, d.Trigger); diff != "" {
		t.Errorf("Trigger (-want +got):\n%s", diff)
	}
}

func TestDecodePubSubEnvelope(t *testing.T) {
	replay := []byte(`{"version":1,"project":"p1"}`)
	withData := func(data []byte) cloudevents.Event {
		e := pubsubEvent(t, replay)
		_ = e.SetData("application/json", data)
		return e
	}
	tests := []struct {
		name string
		ev   cloudevents.Event
		want want
	}{
		{"as built", pubsubEvent(t, replay), want{targets: []Target{{Kind: TargetProject, Project: "p1"}}}},
		{"snake-case id and time only", withData([]byte(`{"message":{"data":"eyJ2ZXJzaW9uIjoxLCJwcm9qZWN0IjoicDEifQ==","message_id":"9","publish_time":"2025-01-01T00:00:00Z"}}`)), want{targets: []Target{{Kind: TargetProject, Project: "p1"}}}},
		{"no message", withData([]byte(`{"subscription":"projects/p1/subscriptions/s"}`)), want{malformed: true}},
		{"message is null", withData([]byte(`{"message":null}`)), want{malformed: true}},
		{"message data not base64", withData([]byte(`{"message":{"data":"%%%"}}`)), want{malformed: true}},
		{"message data is a number", withData([]byte(`{"message":{"data":5}}`)), want{malformed: true}},
		{"attributes only", withData([]byte(`{"message":{"attributes":{"project":"p1"}}}`)), want{malformed: true}},
		{"envelope truncated", withData([]byte(`{"message":{"data":"eyJ2`)), want{malformed: true}},
		{"envelope is an array", withData([]byte(`[]`)), want{malformed: true}},
		{"no data", withData(nil), want{malformed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decode(tc.ev)
			checkDecision(t, d, err, tc.want)
		})
	}
}

func TestDecodeLogSinkRealSample(t *testing.T) {
	d, err := Decode(pubsubEvent(t, readSample(t, "run-v1-create-service.json")))
	if err != nil {
		t.Fatal(err)
	}
	w := Decision{
		Targets: svc("some-project", "us-west1", "cloudrun-exfil"),
		Trigger: Trigger{
			EventID:      "projects/some-project/logs/cloudaudit.googleapis.com%2Factivityjzm5rucrn21706867034497796",
			Source:       "//cloudaudit.googleapis.com/projects/some-project/logs/activity",
			Type:         AuditLogWritten,
			Method:       RunV1CreateService,
			Principal:    "some.user@company.com",
			ResourceName: "namespaces/some-project/services/cloudrun-exfil",
			Time:         mustTime(t, "2024-02-02T09:43:54.497796Z"),
			Via:          ViaLogSink,
		},
	}
	if diff := cmp.Diff(w, d); diff != "" {
		t.Errorf("Decision (-want +got):\n%s", diff)
	}
}

func TestReplayMessageRoundTrip(t *testing.T) {
	targets := []Target{
		{Kind: TargetService, Project: "p1", Region: "us-central1", Service: "hello"},
		{Kind: TargetProject, Project: "p1", Region: "europe-west1"},
		{Kind: TargetProject, Project: "123456789012"},
	}
	for _, tgt := range targets {
		t.Run(tgt.ResourceName(), func(t *testing.T) {
			m := ReplayMessageFor(tgt, "alice@example.com")
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseReplayMessage(b)
			if err != nil {
				t.Fatalf("ParseReplayMessage(%s): %v", b, err)
			}
			if diff := cmp.Diff(tgt, back.Target()); diff != "" {
				t.Errorf("target (-want +got):\n%s", diff)
			}
			d, err := Decode(pubsubEvent(t, b))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]Target{tgt}, d.Targets); diff != "" {
				t.Errorf("decoded targets (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("invalid target", func(t *testing.T) {
		m := ReplayMessageFor(Target{Kind: TargetService, Project: "p1", Service: "hello"}, "")
		if err := m.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("Validate = %v, want ErrMalformed (service without region)", err)
		}
	})
}

// The example messages in docs/replay-message.md decode as the document
// says, in the order given there.
func TestReplayMessageDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "replay-message.md"))
	if err != nil {
		t.Fatalf("reading the replay message document: %v", err)
	}
	var examples []string
	for _, block := range strings.Split(string(doc), "```json\n")[1:] {
		body, _, ok := strings.Cut(block, "```")
		if !ok {
			t.Fatalf("unterminated json block in docs/replay-message.md")
		}
		examples = append(examples, body)
	}
	want := []Target{
		{Kind: TargetService, Project: "my-project", Region: "europe-west1", Service: "billing"},
		{Kind: TargetProject, Project: "my-project", Region: "europe-west1"},
		{Kind: TargetProject, Project: "my-project"},
		{Kind: TargetSweep, Scope: "folders/1234"},
	}
	if len(examples) != len(want) {
		t.Fatalf("docs/replay-message.md has %d json examples, want %d", len(examples), len(want))
	}
	for i, ex := range examples {
		m, err := ParseReplayMessage([]byte(ex))
		if err != nil {
			t.Errorf("example %d: %v", i+1, err)
			continue
		}
		if diff := cmp.Diff(want[i], m.Target()); diff != "" {
			t.Errorf("example %d (-want +got):\n%s", i+1, diff)
		}
	}
}

// TestSweepRequest: the scope member (issue #18) makes a sweep request; it
// excludes project, region and service, and names a concrete project,
// folder or organisation.
func TestSweepRequest(t *testing.T) {
	tests := []struct {
		data string
		want Target
		ok   bool
	}{
		{`{"version":1,"scope":"folders/1234","requestedBy":"scheduler"}`, Target{Kind: TargetSweep, Scope: "folders/1234"}, true},
		{`{"version":1,"scope":"organizations/42"}`, Target{Kind: TargetSweep, Scope: "organizations/42"}, true},
		{`{"version":1,"scope":"projects/example.com:p"}`, Target{Kind: TargetSweep, Scope: "projects/example.com:p"}, true},
		{`{"version":1,"scope":"folders/10","project":"p"}`, Target{}, false},
		{`{"version":1,"scope":"folders/10","region":"us-central1"}`, Target{}, false},
		{`{"version":1,"scope":"folders/abc"}`, Target{}, false},
		{`{"version":1,"scope":"projects/-"}`, Target{}, false},
		{`{"version":1,"scope":"organizations/"}`, Target{}, false},
		{`{"version":1,"scope":"billingAccounts/1"}`, Target{}, false},
		{`{"version":1,"scope":"folders/1","scope":"folders/2"}`, Target{}, false},
		{`{"version":1}`, Target{}, false},
	}
	for _, tt := range tests {
		m, err := ParseReplayMessage([]byte(tt.data))
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.data, err, tt.ok)
			continue
		}
		if tt.ok {
			if got := m.Target(); got != tt.want {
				t.Errorf("%s: target %+v, want %+v", tt.data, got, tt.want)
			}
			if got := ReplayMessageFor(m.Target(), m.RequestedBy); got != m {
				t.Errorf("%s: ReplayMessageFor round trip = %+v", tt.data, got)
			}
		}
	}
}
