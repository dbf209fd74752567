package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/outcome"
)

const eventsDir = "testdata/events"

// parseOutcomes decodes NDJSON outcome messages.
func parseOutcomes(t *testing.T, out string) []*outcome.Message {
	t.Helper()
	var ms []*outcome.Message
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		m, err := outcome.Unmarshal([]byte(line))
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ms = append(ms, m)
	}
	return ms
}

func TestReplayFiles(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	before := ts.auditEntries()

	// A directory: a CloudEvent, a raw LogEntry (compute: the reconciler
	// finds the service behind the backend) and a replay message, in name
	// order, through the function's own handler, planning only.
	out := ts.mustRun(t, ExitNonCompliant, "replay", eventsDir, "--project", testProject, "--dry-run")
	golden(t, "replay-files-dry-run.golden", out)
	if got := ts.auditEntries(); got != before {
		t.Fatalf("replay --dry-run wrote %d audit-log entries", got-before)
	}

	// One file, for real, as JSON lines: the outcome names the event's
	// change and who made it.
	file := filepath.Join(eventsDir, "synthetic-cloudevent-run-v2-setiampolicy-reports-public.json")
	ms := parseOutcomes(t, ts.mustRun(t, ExitOK, "replay", file, "--project", testProject, "-o", "json"))
	if len(ms) != 1 {
		t.Fatalf("got %d outcomes, want 1", len(ms))
	}
	m := ms[0]
	wantTrig := outcome.Trigger{
		EventID: "projects/demo-project/logs/cloudaudit.googleapis.com%2Factivitysynthetic011736935200000000",
		Source:  "//cloudaudit.googleapis.com/projects/demo-project/logs/activity", Type: event.AuditLogWritten,
		Method: event.RunV2SetIamPolicy, ResourceName: "projects/demo-project/locations/us-central1/services/reports",
		Principal: "developer@example.com", Via: event.ViaEventarc, Time: time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC),
	}
	if diff := cmp.Diff(wantTrig, m.Trigger); diff != "" {
		t.Errorf("trigger (-want +got):\n%s", diff)
	}
	if m.Outcome != outcome.Remediated || m.DryRun || m.Resource.Service != "reports" {
		t.Errorf("outcome = %s dryRun=%v service=%q, want remediated reports", m.Outcome, m.DryRun, m.Resource.Service)
	}
	if ts.auditEntries() == before {
		t.Error("replay changed nothing")
	}
	// Replaying it again is harmless: compliant, no writes.
	n := ts.auditEntries()
	out = ts.mustRun(t, ExitOK, "replay", file, "--project", testProject)
	if !strings.Contains(out, "compliant") || ts.auditEntries() != n {
		t.Errorf("second replay wrote %d entries:\n%s", ts.auditEntries()-n, out)
	}

	// A JSON array mixing a LogEntry and a replay message, as
	// `gcloud logging read --format=json` writes arrays.
	entry, err := os.ReadFile(filepath.Join(eventsDir, "synthetic-logentry-compute-backend-patch-storefront-last.json"))
	if err != nil {
		t.Fatal(err)
	}
	arr := filepath.Join(t.TempDir(), "array.json")
	if err := os.WriteFile(arr, []byte(`[`+string(entry)+`, {"version":1,"project":"demo-project","region":"us-central1","service":"ledger"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	ms = parseOutcomes(t, ts.mustRun(t, ExitNonCompliant, "replay", arr, "--project", testProject, "--dry-run", "-o", "json"))
	var got []string
	for _, m := range ms {
		got = append(got, m.Resource.Name+" "+string(m.Outcome)+" via "+m.Trigger.Via)
	}
	want := []string{
		"projects/demo-project/locations/us-central1/services/storefront remediated via eventarc",
		"projects/demo-project/locations/us-central1/services/ledger remediated via pubsub-replay",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("array replay (-want +got):\n%s", diff)
	}

	// An event whose attributes contradict its payload is malformed: the
	// handler publishes rejected, and replay exits 1 saying so.
	ce, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(ce), `"methodname": "google.cloud.run.v2.Services.SetIamPolicy"`, `"methodname": "google.cloud.run.v2.Services.DeleteService"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := ts.run(t, "replay", bad, "--project", testProject)
	if code != ExitError || !strings.Contains(stdout, "rejected") || !strings.Contains(stdout, "contradicts the payload") ||
		stderr != "iapctl: 1 event(s) were rejected as malformed (see the rejected outcomes)\n" {
		t.Errorf("malformed event: exit %d\nstdout %s\nstderr %q", code, stdout, stderr)
	}
}

func TestReplayFromLogs(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	// Every audit entry of the demo build, read back through Cloud
	// Logging's entries.list, replayed in order, planning only.
	out := ts.mustRun(t, ExitNonCompliant, "replay", "--from-logs", "--since", "1h", "--project", testProject, "--dry-run")
	golden(t, "replay-from-logs-dry-run.golden", out)

	// A narrower query, for real: only entries about reports.
	before := ts.auditEntries()
	out = ts.mustRun(t, ExitOK, "replay", "--from-logs", "--project", testProject,
		"--log-filter", `protoPayload.resourceName="projects/demo-project/locations/us-central1/services/reports"`, "-o", "json")
	ms := parseOutcomes(t, out)
	var kinds []string
	for _, m := range ms {
		if m.Resource.Service != "reports" || m.Trigger.Principal != "developer@example.com" {
			t.Errorf("unexpected outcome %s for %s by %s", m.Outcome, m.Resource.Name, m.Trigger.Principal)
		}
		kinds = append(kinds, string(m.Outcome))
	}
	// CreateService then SetIamPolicy: both name reports, which is
	// reconciled once (the reconcile reads live state).
	if diff := cmp.Diff([]string{"remediated"}, kinds); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if ts.auditEntries() == before {
		t.Error("replay --from-logs changed nothing")
	}

	// Nothing in the window: says so, exit 0.
	code, stdout, stderr := ts.run(t, "replay", "--from-logs", "--project", testProject, "--log-filter", `protoPayload.methodName="nothing.matches"`)
	if code != ExitOK || stdout != "" || stderr != "iapctl: nothing to replay (no events found)\n" {
		t.Errorf("empty window: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

// TestReplayViaTopic publishes replay messages and log entries to the
// replay topic, then hands what arrives on it to the function's handler
// the way Eventarc would, proving the deployed function does the work.
func TestReplayViaTopic(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	ctx := t.Context()

	// Without the topic: one clear line.
	code, stdout, stderr := ts.run(t, "replay", "--via-topic", "--project", testProject, "--region", testRegion, "--service", "reports")
	checkOneLineError(t, code, stdout, stderr, "topic projects/demo-project/topics/iapguard-replay not found")

	ps := testPubSub(t, ts.st.Emu.Addr(), testProject)
	topic := "projects/demo-project/topics/" + functions.DefaultReplayTopic
	sub := "projects/demo-project/subscriptions/eventarc-replay"
	createTopicSubscription(t, ps, topic, sub)

	// Files: the service events become replay messages; the Compute
	// entry stays a log entry, and being old, draws a note.
	code, out, errOut := ts.run(t, "replay", "--via-topic", eventsDir, "--project", testProject, "--dry-run")
	if code != ExitOK || !strings.Contains(errOut, "1 Compute log entr(ies) are older than 24h0m0s") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	golden(t, "replay-via-topic-dry-run.golden", out)

	out = ts.mustRun(t, ExitOK, "replay", "--via-topic", "--project", testProject, "--region", testRegion, "--service", "reports", "--requested-by", "alice@example.com")
	golden(t, "replay-via-topic-service.golden", out)
	// Fresh Compute entries from Cloud Logging (the "first" entries of the
	// operations are skipped, as the function skips them).
	out = ts.mustRun(t, ExitOK, "replay", "--via-topic", "--from-logs", "--project", testProject,
		"--log-filter", `protoPayload.methodName="v1.compute.backendServices.insert"`, "-o", "json")
	var abouts []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec topicRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("--via-topic JSON %q: %v", line, err)
		}
		if rec.Kind != "log-entry" || rec.MessageID == "" || rec.Topic != topic || rec.DryRun {
			t.Errorf("record = %+v", rec)
		}
		abouts = append(abouts, rec.About)
	}
	wantAbouts := []string{
		"v1.compute.backendServices.insert projects/demo-project/global/backendServices/storefront-backend",
		"v1.compute.backendServices.insert projects/demo-project/global/backendServices/assets-backend",
	}
	if diff := cmp.Diff(wantAbouts, abouts); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}

	// Eventarc's part: deliver what was published to the function.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var datas []string
	err := ps.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		ev, err := event.NewMessagePublishedEvent(testProject, functions.DefaultReplayTopic, sub,
			event.PubSubMessage{Data: m.Data, MessageID: m.ID, PublishTime: m.PublishTime})
		if err != nil {
			t.Error(err)
			return
		}
		if err := ts.st.Fn.Handler.Handle(rctx, ev); err != nil {
			t.Errorf("handler: %v", err)
		}
		mu.Lock()
		datas = append(datas, string(m.Data))
		if len(datas) == 3 {
			cancel()
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(datas) != 3 || !strings.Contains(strings.Join(datas, "\n"), `{"version":1,"project":"demo-project","region":"us-central1","service":"reports","requestedBy":"alice@example.com"}`) {
		t.Fatalf("published data:\n%s", strings.Join(datas, "\n"))
	}
	want := map[string]string{
		"reports":    "remediated via pubsub-replay by alice@example.com",
		"storefront": "remediated via log-sink by developer@example.com",
		"assets":     "conflict via log-sink by developer@example.com",
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]string{}
		for svc := range want {
			if m := ts.st.Outcomes.Latest(svc); m != nil {
				got[svc] = string(m.Outcome) + " via " + m.Trigger.Via + " by " + m.Trigger.Principal
			}
		}
		if len(got) == len(want) {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcomes of the replayed messages (-want +got):\n%s", diff)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outcomes so far: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
