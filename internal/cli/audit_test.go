package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAudit scans the demo project as built (nothing reconciled yet), then
// after `enforce --all`, then with the CDN conflict unlabelled.
func TestAudit(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	before := ts.auditEntries()

	out := ts.mustRun(t, ExitNonCompliant, "audit", "--project", testProject)
	golden(t, "audit-as-built.golden", out)

	out = ts.mustRun(t, ExitNonCompliant, "audit", "--project", testProject, "--region", testRegion, "--output", "json")
	golden(t, "audit-as-built.json.golden", out)
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit JSON: %v", err)
	}
	wantSummary := auditSummary{Services: 5, Labelled: 4, Compliant: 0, NonCompliant: 4, Unmanaged: 1}
	if diff := cmp.Diff(wantSummary, rep.Summary); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if got := ts.auditEntries(); got != before {
		t.Errorf("audit wrote %d audit-log entries; it must change nothing", got-before)
	}

	// Another region has nothing: compliant by vacuity.
	out = ts.mustRun(t, ExitOK, "audit", "--project", testProject, "--region", "europe-west1")
	if !strings.Contains(out, "0 services, 0 labelled") {
		t.Errorf("audit of an empty region:\n%s", out)
	}

	ts.mustRun(t, ExitNonCompliant, "enforce", "--all", "--project", testProject)
	out = ts.mustRun(t, ExitNonCompliant, "audit", "--project", testProject)
	golden(t, "audit-enforced.golden", out)

	// Taking the CDN-fronted service out of iapguard's hands leaves every
	// labelled service compliant: exit 0.
	if err := ts.clients.SetLabels(t.Context(), testProject, testRegion, "assets", map[string]string{"iap": "disabled"}); err != nil {
		t.Fatal(err)
	}
	out = ts.mustRun(t, ExitOK, "audit", "--project", testProject)
	if !strings.Contains(out, "3 labelled: 3 compliant, 0 not compliant; 2 unmanaged") {
		t.Errorf("audit after unlabelling assets:\n%s", out)
	}
}
