package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const replayMsg = `{"version":1,"project":"demo-project","region":"us-central1","service":"%s"}`

// TestStreamEvents: the input forms, the per-event cap and messages that
// say what the user gave and what is expected (no Go type names).
func TestStreamEvents(t *testing.T) {
	t.Parallel()
	big := `{"version":1,"project":"demo-project","service":"x","pad":"` + strings.Repeat("a", maxEventBytes) + `"}`
	huge := `[` + fmt.Sprintf(replayMsg, "a") + `,"` + strings.Repeat("b", 6*maxEventBytes) + `"]`
	tests := []struct {
		name    string
		content string
		want    int    // events
		wantErr string // regexp
	}{
		{"one event", fmt.Sprintf(replayMsg, "a"), 1, ""},
		{"an array", "[" + fmt.Sprintf(replayMsg, "a") + "," + fmt.Sprintf(replayMsg, "b") + "]", 2, ""},
		{"JSON lines", fmt.Sprintf(replayMsg, "a") + "\n" + fmt.Sprintf(replayMsg, "b") + "\n", 2, ""},
		{"empty", "  \n", 0, `the file is empty: want a CloudEvent, a LogEntry, a replay message or a JSON array of them`},
		{"a number in an array", "[" + fmt.Sprintf(replayMsg, "a") + ", 7]", 0, `item 2: a number, not a JSON object: want a CloudEvent, a LogEntry or a replay message$`},
		{"not an event kind", `{"hello": 1}`, 0, `not a CloudEvent \("specversion"\), a LogEntry \("protoPayload"\) or a replay message \("version"\)`},
		{"truncated", "[" + fmt.Sprintf(replayMsg, "a") + ", {", 0, `item 2: the JSON ends early`},
		{"trailing garbage after the array", "[" + fmt.Sprintf(replayMsg, "a") + "] 1 is", 0, `more data after the array of events`},
		{"an event over 1 MiB", "[" + fmt.Sprintf(replayMsg, "a") + "," + big + "]", 0, `item 2 is \d+ bytes, over the 1 MiB the function accepts for one event`},
		{"a value far over 1 MiB", huge, 0, `item 2 \(from byte \d+\) is over 1 MiB`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "events.json", tt.content)
			n := 0
			err := streamEvents(path, "projects/demo-project/topics/iapguard-replay", func(int, cloudevents.Event) error { n++; return nil })
			if tt.wantErr == "" {
				if err != nil || n != tt.want {
					t.Fatalf("streamEvents() = %v with %d events, want nil with %d", err, n, tt.want)
				}
				return
			}
			if err == nil || !regexp.MustCompile(tt.wantErr).MatchString(err.Error()) {
				t.Fatalf("streamEvents() = %v, want an error matching %q", err, tt.wantErr)
			}
			for _, internal := range []string{"Go value", "json.RawMessage", "map["} {
				if strings.Contains(err.Error(), internal) {
					t.Errorf("error %q shows Go internals", err)
				}
			}
		})
	}
}

// TestReplayDeduplicates: many events about one service are one reconcile;
// the summary says how many were left out.
func TestReplayDeduplicates(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	var b strings.Builder
	b.WriteString("[")
	for i := range 300 {
		fmt.Fprintf(&b, replayMsg+",", "ledger")
		if i == 150 {
			fmt.Fprintf(&b, replayMsg+",", "reports")
		}
	}
	fmt.Fprintf(&b, replayMsg+"]", "reports")
	path := writeFile(t, "many.json", b.String())
	out := ts.mustRun(t, ExitNonCompliant, "replay", path, "--project", testProject, "--dry-run")
	if !strings.Contains(out, "replayed 2 event(s): 2 remediated; 300 more about resources already replayed were left out") {
		t.Errorf("summary:\n%s", out)
	}
	if got := strings.Count(out, "remediated (dry run)"); got != 2 {
		t.Errorf("%d outcomes, want 2:\n%s", got, out)
	}
}

// TestReplayRefusesOversizedEvent: an event over the function's 1 MiB cap
// stops the replay before anything is done.
func TestReplayRefusesOversizedEvent(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	before := ts.auditEntries()
	big := `{"version":1,"project":"demo-project","region":"us-central1","service":"ledger","pad":"` + strings.Repeat("a", maxEventBytes) + `"}`
	path := writeFile(t, "big.json", "["+fmt.Sprintf(replayMsg, "reports")+","+big+"]")
	code, out, errOut := ts.run(t, "replay", path, "--project", testProject)
	checkOneLineError(t, code, out, errOut, "item 2 is 1048")
	if !strings.Contains(errOut, "over the 1 MiB the function accepts for one event") {
		t.Errorf("stderr = %q", errOut)
	}
	if ts.auditEntries() != before {
		t.Error("the replay changed something before refusing the oversized event")
	}
}

// TestReplayInterrupted: Ctrl-C during a replay lets the event under way
// finish, prints the summary and counts what was not started.
func TestReplayInterrupted(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	var b strings.Builder
	b.WriteString("[")
	for i, svc := range []string{"ledger", "reports", "storefront", "assets"} {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, replayMsg, svc)
	}
	b.WriteString("]")
	path := writeFile(t, "four.json", b.String())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ictx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	hooks := scanHooks{replaying: func(n int) {
		if n == 2 {
			interrupt()
		}
	}}
	code, out, errOut := runWithEnv(t, withEnv(context.WithValue(ictx, scanHooksKey{}, hooks), ts.env()), "replay", path, "--project", testProject)
	if code != ExitInterrupted {
		t.Errorf("exit %d, want %d", code, ExitInterrupted)
	}
	if errOut != "iapctl: interrupted: 2 event(s) done, 2 not started\n" {
		t.Errorf("stderr = %q", errOut)
	}
	if !strings.Contains(out, "us-central1/ledger") || !strings.Contains(out, "us-central1/reports") || strings.Contains(out, "storefront") ||
		!strings.Contains(out, "replayed 2 event(s): 2 remediated") {
		t.Errorf("stdout:\n%s", out)
	}
	// With --from-logs too (read after the files): the file events not
	// started are still counted.
	ictx, interrupt = context.WithCancel(ctx)
	defer interrupt()
	_, _, errOut = runWithEnv(t, withEnv(context.WithValue(ictx, scanHooksKey{}, hooks), ts.env()), "replay", path, "--from-logs", "--project", testProject)
	if want := "iapctl: interrupted: 2 event(s) done, 2 not started; log entries not yet read are not counted\n"; errOut != want {
		t.Errorf("with --from-logs: stderr = %q, want %q", errOut, want)
	}
}
