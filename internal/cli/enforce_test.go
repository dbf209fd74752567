package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnforce(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	before := ts.auditEntries()

	out := ts.mustRun(t, ExitNonCompliant, "enforce", "storefront", "--project", testProject, "--region", testRegion, "--dry-run")
	golden(t, "enforce-storefront-dry-run.golden", out)
	out = ts.mustRun(t, ExitNonCompliant, "enforce", "--all", "--project", testProject, "--dry-run")
	golden(t, "enforce-all-dry-run.golden", out)
	if got := ts.auditEntries(); got != before {
		t.Fatalf("--dry-run wrote %d audit-log entries; it must change nothing", got-before)
	}

	out = ts.mustRun(t, ExitOK, "enforce", "storefront", "--project", testProject, "--region", testRegion, "-o", "json")
	golden(t, "enforce-storefront.json.golden", out)
	var rep enforceReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Services) != 1 || rep.Services[0].State != "remediated" || !rep.Services[0].Compliant || rep.DryRun {
		t.Errorf("enforce storefront: %+v", rep)
	}
	if ts.auditEntries() == before {
		t.Error("enforce wrote nothing")
	}

	// Now compliant: a dry run plans nothing and exits 0.
	out = ts.mustRun(t, ExitOK, "enforce", "storefront", "--project", testProject, "--region", testRegion, "--dry-run")
	if !strings.Contains(out, "storefront (projects/demo-project/locations/us-central1/services/storefront)  compliant") {
		t.Errorf("dry run after enforce:\n%s", out)
	}

	// --all fixes the rest but cannot fix the CDN conflict: exit 2.
	out = ts.mustRun(t, ExitNonCompliant, "enforce", "--all", "--project", testProject, "--region", testRegion)
	golden(t, "enforce-all.golden", out)
	out = ts.mustRun(t, ExitNonCompliant, "enforce", "--all", "--project", testProject, "--dry-run", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range rep.Services {
		states[s.Service] = s.State
	}
	want := map[string]string{"assets": "conflict", "ledger": "compliant", "marketing": "unmanaged", "reports": "compliant", "storefront": "compliant"}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("states after enforce --all (-want +got):\n%s", diff)
	}
}

// TestEnforceAccessPolicies: with the function's access policy file, plans
// here grant what the function would; without it, a service that names a
// policy is rejected exactly as the function would reject it.
func TestEnforceAccessPolicies(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	if err := ts.clients.SetLabels(t.Context(), testProject, testRegion, "reports", map[string]string{"iap": "enabled", "iap-access": "web"}); err != nil {
		t.Fatal(err)
	}
	args := []string{"enforce", "reports", "--project", testProject, "--region", testRegion, "--dry-run", "-o", "json"}
	access := func(out string) ruleReport {
		t.Helper()
		var rep enforceReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Services[0].Rules {
			if r.Rule == "access" {
				return r
			}
		}
		t.Fatalf("no access rule in %s", out)
		return ruleReport{}
	}
	got := access(ts.mustRun(t, ExitNonCompliant, append(args, "--access-policies", "testdata/access-policies.yaml")...))
	if got.Status != "changed" || !strings.Contains(got.Message, "group:web-team@example.com") {
		t.Errorf("with the policy file: %+v", got)
	}
	// The same file through the environment, as the function reads it.
	code, out, _ := runWithEnv(t, withEnv(t.Context(), map[string]string{envEmulatorHost: ts.st.Emu.Addr(), envAccess: "testdata/access-policies.yaml"}), args...)
	if code != ExitNonCompliant || access(out).Status != "changed" {
		t.Errorf("with %s: exit %d, %+v", envAccess, code, access(out))
	}
	got = access(ts.mustRun(t, ExitNonCompliant, args...))
	if got.Status != "rejected" || !strings.Contains(got.Message, "no access policies are configured") {
		t.Errorf("without the policy file: %+v", got)
	}
	code, out, errOut := ts.run(t, append(args, "--access-policies", "testdata/events/README.md")...)
	checkOneLineError(t, code, out, errOut, "--access-policies: access policies testdata/events/README.md")
}
