package deploy

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// schedulerJobIDRE is Cloud Scheduler's rule for a job id: letters, digits,
// hyphens and underscores, at most 500 characters.
var schedulerJobIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,500}$`)

// TestSweepJobIDs: the sweep job of a domain-scoped project (example.com:p)
// has an id Cloud Scheduler accepts, the encoding is reversible
// (lib.sh sweep_job_project), distinct projects get distinct ids, and the
// Terraform module names the job exactly as the script does.
func TestSweepJobIDs(t *testing.T) {
	projects := []string{"demo-project", "123456789012", "example.com:p", "example.com:p-2", "a.b.example:x", "google.com:team-a"}
	lib := scriptPath(t, "lib.sh")

	// The Terraform expression of the job's name, evaluated with
	// Terraform's replace (literal when the pattern is not /regex/).
	m := loadModule(t)
	job := m.resources["google_cloud_scheduler_job.sweep"]
	if job == nil {
		t.Fatal("no google_cloud_scheduler_job.sweep")
	}
	nameExpr := job.Body.Attributes["name"].Expr
	tfName := func(project string) string {
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"value": cty.StringVal(project)})},
			Functions: map[string]function.Function{"replace": stdlib.ReplaceFunc},
		}
		v, diags := nameExpr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("evaluating the sweep job's name for %q: %s", project, diags.Error())
		}
		return v.AsString()
	}

	seen := map[string]string{}
	for _, p := range projects {
		out, err := exec.CommandContext(t.Context(), "bash", "-c",
			`set -euo pipefail; source "$1"; id=$(sweep_job_id "$2"); printf '%s\n' "$id"; sweep_job_project "$id"`,
			"-", lib, p).CombinedOutput()
		if err != nil {
			t.Fatalf("sweep_job_id %q: %v\n%s", p, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			t.Fatalf("sweep_job_id %q: output %q", p, out)
		}
		id, back := lines[0], lines[1]
		if !strings.HasPrefix(id, "iapguard-sweep-") || !schedulerJobIDRE.MatchString(id) {
			t.Errorf("sweep job id for %q is %q: not a Cloud Scheduler job id", p, id)
		}
		if back != p {
			t.Errorf("sweep_job_project(sweep_job_id(%q)) = %q", p, back)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("projects %q and %q share sweep job %q", other, p, id)
		}
		seen[id] = p
		if got := tfName(p); got != id {
			t.Errorf("Terraform names the sweep job of %q %q; the script %q", p, got, id)
		}
	}
	// A folder entry's job (issue #18: one sweep job per scope): no
	// project id escapes to "_f", and sweep_job_scope reads both kinds.
	for scope, want := range map[string]string{"folders/10": "iapguard-sweep-_f10", "projects/example.com:p": "iapguard-sweep-example_dcom_cp"} {
		arg := strings.TrimPrefix(scope, "projects/")
		out, err := exec.CommandContext(t.Context(), "bash", "-c",
			`set -euo pipefail; source "$1"; id=$(sweep_job_id "$2"); printf '%s\n' "$id"; sweep_job_scope "$id"`,
			"-", lib, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("sweep_job_id %q: %v\n%s", arg, err, out)
		}
		if got := strings.Fields(string(out)); len(got) != 2 || got[0] != want || got[1] != scope {
			t.Errorf("sweep_job_id/sweep_job_scope of %s = %q, want [%s %s]", scope, got, want, scope)
		}
		if strings.HasPrefix(scope, "folders/") {
			if other, dup := seen[want]; dup {
				t.Errorf("folder job %s collides with project %q", want, other)
			}
		}
	}
	if id := "iapguard-sweep-example_dcom_cp"; seen[id] != "example.com:p" {
		t.Errorf("example.com:p's job is not %s (ids: %v)", id, seen)
	}
}
