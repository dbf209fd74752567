package test

import (
	"slices"
	"strings"
	"testing"

	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/iamperm"
	"github.com/iapguard/iapguard/internal/stack"
)

// TestEveryCallIsInThePermissionTable checks, at the transport seam, that
// every Google API method the function calls while converging the demo
// project (all modes, conflicts, drift) is in internal/iamperm's table, from
// which the deployed custom role is generated. A new call without a table
// entry would otherwise fail only in production, with PERMISSION_DENIED.
func TestEveryCallIsInThePermissionTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stack.Options{})
	sc := demo.DefaultScenario()
	if err := e.cl.Build(e.ctx, e.p, region, sc); err != nil {
		t.Fatal(err)
	}
	e.settle()
	if err := e.cl.SetBackendIAP(e.ctx, e.p, "storefront-backend", false); err != nil {
		t.Fatal(err)
	}
	e.label("reports", map[string]string{"team": "x"})
	e.settle()

	calls := e.st.Emu.Core.Stats.ByPrincipal(stack.FunctionPrincipal)
	var methods []string
	for m := range calls {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	if len(methods) < 8 {
		t.Fatalf("the function made only %v; the scenario should exercise reads and writes of every API", methods)
	}
	for _, want := range []string{"google.cloud.run.v2.Services.SetIamPolicy", "compute.backendServices.patch", "serviceusage.services.generateServiceIdentity"} {
		if !slices.Contains(methods, want) {
			t.Errorf("the scenario did not exercise %s (calls: %v)", want, methods)
		}
	}
	table := map[string]iamperm.Entry{}
	for _, en := range iamperm.Table() {
		table[en.Method] = en
	}
	var missing []string
	for _, m := range methods {
		switch en, ok := table[m]; {
		case !ok:
			missing = append(missing, m)
		case en.Who != iamperm.WhoFunction && !strings.HasPrefix(m, "google.pubsub."):
			t.Errorf("method %s is listed for %q, but the function calls it", m, en.Who)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the function called methods that internal/iamperm does not list (add them, regenerate the role with go test ./internal/deploy -update): %v", missing)
	}
	t.Logf("methods the function called: %v", methods)
}
