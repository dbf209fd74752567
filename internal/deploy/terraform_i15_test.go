package deploy

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// TestTerraformOptionalTriggers evaluates the module's trigger selection
// (local.enabled_triggers) over the generated triggers.json: by default
// every required trigger and no optional one (a refusal would fail the
// apply); with var.optional_triggers every trigger. The trigger resource
// iterates over that selection.
func TestTerraformOptionalTriggers(t *testing.T) {
	m := loadModule(t)
	expr := m.locals["enabled_triggers"]
	if expr == nil {
		t.Fatal("no local.enabled_triggers")
	}
	if fe := m.resources["google_eventarc_trigger.iapguard"].Body.Attributes["for_each"]; fe == nil ||
		string(m.files["eventarc.tf"][fe.Expr.Range().Start.Byte:fe.Expr.Range().End.Byte]) != "local.enabled_triggers" {
		t.Error("google_eventarc_trigger.iapguard does not iterate over local.enabled_triggers")
	}
	def, ok := m.variables["optional_triggers"].Body.Attributes["default"]
	if !ok {
		t.Fatal("var.optional_triggers has no default")
	}
	if v, diags := def.Expr.Value(nil); diags.HasErrors() || v.True() {
		t.Error("var.optional_triggers must default to false")
	}

	var doc struct {
		Triggers map[string]TerraformTrigger `json:"triggers"`
	}
	if err := json.Unmarshal(readRepoFile(t, "deploy/terraform/generated/triggers.json"), &doc); err != nil {
		t.Fatal(err)
	}
	triggers := map[string]cty.Value{}
	var required, all []string
	for name, tr := range doc.Triggers {
		triggers[name] = cty.ObjectVal(map[string]cty.Value{"optional": cty.BoolVal(tr.Optional), "location": cty.StringVal(tr.Location)})
		all = append(all, name)
		if !tr.Optional {
			required = append(required, name)
		}
	}
	slices.Sort(required)
	slices.Sort(all)
	if len(required) == len(all) {
		t.Fatal("triggers.json has no optional trigger; the selection below checks nothing")
	}
	for _, tc := range []struct {
		optional bool
		want     []string
	}{{false, required}, {true, all}} {
		ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
			"local": cty.ObjectVal(map[string]cty.Value{"triggers": cty.ObjectVal(triggers)}),
			"var":   cty.ObjectVal(map[string]cty.Value{"optional_triggers": cty.BoolVal(tc.optional)}),
		}}
		v, diags := expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("evaluating local.enabled_triggers: %s", diags.Error())
		}
		var got []string
		for k := range v.AsValueMap() {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("optional_triggers=%v: enabled %v, want %v", tc.optional, got, tc.want)
		}
	}
}

// TestTerraformDeployerAndAgents: the apply's own identity acts as exactly
// the two accounts it deploys with (not project-wide), before the service
// and the triggers are made; the Pub/Sub service agent may mint tokens for
// the trigger identity (agents created before 2021-04-08).
func TestTerraformDeployerAndAgents(t *testing.T) {
	m := loadModule(t)
	src := func(key string) string {
		b := m.resources[key]
		if b == nil {
			t.Fatalf("no %s", key)
		}
		return string(m.files[filepath.Base(b.Range().Filename)][b.Range().Start.Byte:b.Range().End.Byte])
	}
	acts := src("google_service_account_iam_member.deployer_acts_as")
	for _, want := range []string{"enforcer = google_service_account.enforcer.name", "trigger  = google_service_account.trigger.name",
		`role               = "roles/iam.serviceAccountUser"`, "member             = local.deployer"} {
		if !strings.Contains(acts, want) {
			t.Errorf("deployer_acts_as lacks %q:\n%s", want, acts)
		}
	}
	for _, key := range []string{"google_cloud_run_v2_service.enforcer", "google_eventarc_trigger.iapguard"} {
		if !strings.Contains(src(key), "google_service_account_iam_member.deployer_acts_as,") {
			t.Errorf("%s does not wait for the deployer's actAs grants", key)
		}
	}
	tok := src("google_service_account_iam_member.pubsub_agent_mints_trigger_tokens")
	for _, want := range []string{"service_account_id = google_service_account.trigger.name", `"roles/iam.serviceAccountTokenCreator"`, "${local.pubsub_agent}"} {
		if !strings.Contains(tok, want) {
			t.Errorf("pubsub_agent_mints_trigger_tokens lacks %q:\n%s", want, tok)
		}
	}
}

// TestTerraformScopeLength evaluates the function service's precondition
// on the scope's length: a scope over Cloud Run's 32,768 bytes for one
// variable fails the plan unless it goes to the secret, and then the
// function reads IAPGUARD_PROJECTS_FILE instead.
func TestTerraformScopeLength(t *testing.T) {
	m := loadModule(t)
	svc := m.resources["google_cloud_run_v2_service.enforcer"]
	var cond hclsyntax.Expression
	_ = hclsyntax.VisitAll(svc.Body, func(n hclsyntax.Node) hcl.Diagnostics {
		if b, ok := n.(*hclsyntax.Block); ok && b.Type == "precondition" {
			if a := b.Body.Attributes["condition"]; a != nil && strings.Contains(string(m.files["run.tf"][a.Expr.Range().Start.Byte:a.Expr.Range().End.Byte]), "scope_value") {
				cond = a.Expr
			}
		}
		return nil
	})
	if cond == nil {
		t.Fatal("no precondition on the scope's length")
	}
	maxV, diags := m.locals["max_env_value"].Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	for _, tc := range []struct {
		n      int
		secret bool
		want   bool
	}{{2000, false, true}, {2600, false, false}, {2600, true, true}} {
		scope := numbers(tc.n)
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{
				"var":   cty.ObjectVal(map[string]cty.Value{"scope_in_secret": cty.BoolVal(tc.secret)}),
				"local": cty.ObjectVal(map[string]cty.Value{"scope_value": cty.StringVal(scope), "max_env_value": maxV}),
			},
			// Terraform's length counts a string's characters (its scope is ASCII).
			Functions: map[string]function.Function{"length": stdlib.StrlenFunc},
		}
		v, diags := cond.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("evaluating the precondition: %s", diags.Error())
		}
		if v.True() != tc.want {
			t.Errorf("%d-byte scope, scope_in_secret=%v: precondition holds = %v, want %v", len(scope), tc.secret, v.True(), tc.want)
		}
	}
	run := string(m.files["run.tf"])
	for _, want := range []string{`IAPGUARD_PROJECTS_FILE = "${local.scope_mount}/projects"`, "mount_path = local.scope_mount", `path    = "projects"`,
		`role      = "roles/secretmanager.secretAccessor"`} {
		if !strings.Contains(run, want) {
			t.Errorf("run.tf lacks %q", want)
		}
	}
}
