package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

var interruptedLine = regexp.MustCompile(`^iapctl: interrupted: (\d+) service\(s\) done, (\d+) not started\n$`)

// runInterrupted runs iapctl against ts with one reconcile at a time and
// interrupts it (cancels its context, as Ctrl-C does in cmd/iapctl) as the
// reconcile of service at starts.
func runInterrupted(t *testing.T, ts *testStack, at string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ictx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	hooks := scanHooks{parallelism: 1, starting: func(ref iapsetup.ServiceRef) {
		if ref.Name == at {
			interrupt()
		}
	}}
	return runWithEnv(t, withEnv(context.WithValue(ictx, scanHooksKey{}, hooks), ts.env()), args...)
}

// checkInterrupted checks the interrupt contract: exit 130, one line
// "interrupted: N done, M not started" on stderr counting every service,
// and no cancellation noise in the output.
func checkInterrupted(t *testing.T, code int, stdout, stderr string, total int) (done int) {
	t.Helper()
	if code != ExitInterrupted {
		t.Errorf("exit %d, want %d", code, ExitInterrupted)
	}
	m := interruptedLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr = %q, want one line \"iapctl: interrupted: N service(s) done, M not started\"", stderr)
	}
	done, _ = strconv.Atoi(m[1])
	notStarted, _ := strconv.Atoi(m[2])
	if done+notStarted != total || notStarted == 0 {
		t.Errorf("%d done + %d not started, want %d services with some not started", done, notStarted, total)
	}
	for _, noise := range []string{"rpc error", "Canceled", "context canceled", "failed", "fix:"} {
		if strings.Contains(stdout+stderr, noise) {
			t.Errorf("output mentions %q:\n%s\n%s", noise, stdout, stderr)
		}
	}
	return done
}

// TestEnforceAllInterrupted: Ctrl-C during enforce --all starts nothing
// more, lets the reconcile under way finish (ledger, interrupted as it
// starts, ends fully remediated), lists what was done, and leaves the
// services not started as they were.
func TestEnforceAllInterrupted(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	code, out, errOut := runInterrupted(t, ts, "ledger", "enforce", "--all", "--project", testProject)
	checkInterrupted(t, code, out, errOut, 5)
	if !strings.Contains(out, "ledger (projects/demo-project/locations/us-central1/services/ledger)  remediated") {
		t.Errorf("the reconcile under way at the interrupt is not reported remediated:\n%s", out)
	}
	if strings.Contains(out, "storefront") || !strings.Contains(out, "interrupted: only the services done are listed") {
		t.Errorf("output lists a service not started, or does not say it was interrupted:\n%s", out)
	}
	code, out, _ = ts.run(t, "audit", "--project", testProject, "-o", "json")
	if code != ExitNonCompliant {
		t.Fatalf("audit after the interrupt: exit %d", code)
	}
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	state := map[string]string{}
	for _, r := range rep.Services {
		state[r.Service] = r.State
	}
	if state["ledger"] != "compliant" || state["storefront"] != "non-compliant" || state["reports"] != "non-compliant" {
		t.Errorf("after the interrupt: %v; want ledger compliant (finished), reports and storefront untouched", state)
	}
}

// TestAuditInterrupted: Ctrl-C during audit prints the services scanned,
// no failed rows or cancellation errors, and the interrupted line.
func TestAuditInterrupted(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	code, out, errOut := runInterrupted(t, ts, "ledger", "audit", "--project", testProject, "--no-progress")
	done := checkInterrupted(t, code, out, errOut, 5)
	if !strings.Contains(out, "(interrupted: only the services done are counted): "+strconv.Itoa(done)+" services") {
		t.Errorf("summary does not say the audit was interrupted after %d services:\n%s", done, out)
	}
	if !regexp.MustCompile(`(?m)^ledger\s+us-central1\s+enabled\s+non-compliant`).MatchString(out) {
		t.Errorf("the scan under way at the interrupt is missing:\n%s", out)
	}
}
