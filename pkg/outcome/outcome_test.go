package outcome

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func example() *Message {
	return &Message{
		Outcome: Remediated,
		Resource: Resource{
			Name:    "projects/demo-project/locations/us-central1/services/hello",
			Project: "demo-project", Region: "us-central1", Service: "hello",
		},
		Trigger: Trigger{
			EventID: "projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity-abc1700000000000000",
			Source:  "//cloudaudit.googleapis.com/projects/demo-project/logs/activity",
			Type:    "google.cloud.audit.log.v1.written",
			Method:  "google.cloud.run.v2.Services.UpdateService", Principal: "dev@example.com", Via: "eventarc",
			ResourceName: "projects/demo-project/locations/us-central1/services/hello",
			Time:         time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		},
		Mode: LoadBalancer,
		Steps: []Step{
			{Name: "agent-identity", Result: StepOK, Message: "IAP service agent service-123456789012@gcp-sa-iap.iam.gserviceaccount.com exists"},
			{Name: "ingress", Result: StepChanged, Message: "ingress INGRESS_TRAFFIC_ALL → INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"},
		},
		Changes: []Change{{
			Resource: "projects/demo-project/locations/us-central1/services/hello", Field: "ingress",
			Before: "INGRESS_TRAFFIC_ALL", After: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
		}},
		DurationMs: 42,
		Time:       time.Date(2026, 11, 26, 12, 0, 1, 0, time.UTC),
	}
}

func TestMarshalGolden(t *testing.T) {
	b, err := example().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden := filepath.Join("testdata", "remediated.golden.json")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden (run with -update to create): %v", err)
	}
	if d := cmp.Diff(string(want), pretty.String()); d != "" {
		t.Errorf("Marshal mismatch (-golden +got):\n%s", d)
	}
	back, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(example().Resource, back.Resource); d != "" {
		t.Errorf("round trip resource (-want +got):\n%s", d)
	}
}

func TestAttributesAndOrderingKey(t *testing.T) {
	m := example()
	m.DryRun = true
	want := map[string]string{
		"outcome": "remediated", "project": "demo-project", "region": "us-central1",
		"service": "hello", "dryRun": "true", "schemaVersion": "1",
	}
	if d := cmp.Diff(want, m.Attributes()); d != "" {
		t.Errorf("Attributes() mismatch (-want +got):\n%s", d)
	}
	if got := m.OrderingKey(); got != m.Resource.Name {
		t.Errorf("OrderingKey() = %q, want %q", got, m.Resource.Name)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Message)
		wantErr bool
	}{
		{"valid", func(*Message) {}, false},
		{"unknown kind", func(m *Message) { m.Outcome = "fixed" }, true},
		{"no resource name", func(m *Message) { m.Resource.Name = "" }, true},
		{"no project", func(m *Message) { m.Resource.Project = "" }, true},
		{"every kind is valid", func(m *Message) { m.Outcome = OptedOut }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := example()
			tt.mutate(m)
			_, err := m.Marshal()
			if (err != nil) != tt.wantErr {
				t.Errorf("Marshal() error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
	if _, err := Unmarshal([]byte(`{"schemaVersion":"2","outcome":"compliant"}`)); err == nil {
		t.Error("Unmarshal accepted schemaVersion 2")
	}
	if _, err := Unmarshal([]byte(`{`)); err == nil {
		t.Error("Unmarshal accepted truncated JSON")
	}
}

// Issue #19 item 7: a sender-chosen 8 KB resource name gave a 5,000-byte
// project attribute and an 8,041-byte ordering key; Pub/Sub refuses more
// than 1,024 bytes for each.
func TestAttributesAndOrderingKeyBounded(t *testing.T) {
	long := "projects/" + strings.Repeat("é", 4000) + "/locations/r/services/s"
	m := &Message{Outcome: Skipped, Resource: Resource{Name: long, Project: strings.Repeat("p", 5000), Region: "r", Service: strings.Repeat("s", 2000)}}
	for k, v := range m.Attributes() {
		if len(v) > MaxAttributeValue || !utf8.ValidString(v) {
			t.Errorf("attribute %s: %d bytes (valid UTF-8: %v), want at most %d", k, len(v), utf8.ValidString(v), MaxAttributeValue)
		}
	}
	k := m.OrderingKey()
	if len(k) > MaxOrderingKey || !utf8.ValidString(k) {
		t.Errorf("ordering key: %d bytes, want at most %d", len(k), MaxOrderingKey)
	}
	other := *m
	other.Resource.Name = long + "x"
	if other.OrderingKey() == k {
		t.Error("two long resource names share an ordering key")
	}
	short := &Message{Resource: Resource{Name: "projects/p/locations/r/services/s", Project: "p"}}
	if short.OrderingKey() != "projects/p/locations/r/services/s" || short.Attributes()[AttrProject] != "p" {
		t.Error("short values changed")
	}
}
