package deploy

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
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
		v, diags := expr.(hclsyntax.Expression).Value(ctx)
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
