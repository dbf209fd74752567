package iamperm

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestRoleEncodings(t *testing.T) {
	r, err := CustomRole(WhoFunction)
	if err != nil {
		t.Fatal(err)
	}
	y, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML RoleDefinition
	if err := yaml.Unmarshal(y, &fromYAML); err != nil {
		t.Fatalf("YAML() output does not parse: %v", err)
	}
	j, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON RoleDefinition
	if err := json.Unmarshal(j, &fromJSON); err != nil {
		t.Fatalf("JSON() output does not parse: %v", err)
	}
	r.ID = "" // not serialised: gcloud takes the id on the command line
	if diff := cmp.Diff(r, fromYAML); diff != "" {
		t.Errorf("YAML round trip (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(r, fromJSON); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

var update = flag.Bool("update", false, "rewrite golden files")

func TestTableWellFormed(t *testing.T) {
	tab := Table()
	if len(tab) == 0 {
		t.Fatal("Table() is empty")
	}
	if !slices.IsSortedFunc(tab, func(a, b Entry) int {
		switch {
		case a.Method < b.Method:
			return -1
		case a.Method > b.Method:
			return 1
		}
		return 0
	}) {
		t.Error("Table() is not sorted by Method")
	}
	seen := map[string]bool{}
	for _, e := range tab {
		if seen[e.Method] {
			t.Errorf("method %q appears twice", e.Method)
		}
		seen[e.Method] = true
		if e.Who != WhoFunction && e.Who != WhoOperator {
			t.Errorf("%s: Who = %q, want %q or %q", e.Method, e.Who, WhoFunction, WhoOperator)
		}
		switch e.Confidence {
		case Documented, NameOnly, Unverified:
		default:
			t.Errorf("%s: Confidence = %q is not a known level", e.Method, e.Confidence)
		}
		if e.Note == "" {
			t.Errorf("%s: Note is empty; say where the mapping comes from", e.Method)
		}
		if len(e.Permissions) == 0 {
			t.Errorf("%s: no permissions", e.Method)
		}
		if !sort.StringsAreSorted(e.Permissions) {
			t.Errorf("%s: Permissions %v are not sorted", e.Method, e.Permissions)
		}
		for _, p := range e.Permissions {
			if !ValidPermission(p) {
				t.Errorf("%s: permission %q is not service.resource.verb", e.Method, p)
			}
		}
		for p, where := range e.OnResource {
			if !slices.Contains(e.Permissions, p) {
				t.Errorf("%s: OnResource names %q, which is not in Permissions", e.Method, p)
			}
			if where == "" {
				t.Errorf("%s: OnResource[%q] does not say on what it is granted", e.Method, p)
			}
		}
	}
}

func TestValidPermission(t *testing.T) {
	for _, tc := range []struct {
		p    string
		want bool
	}{
		{"run.services.get", true},
		{"iam.serviceAccounts.actAs", true},
		{"compute.regionNetworkEndpointGroups.list", true},
		{"clientauthconfig.clients.getWithSecret", true},
		{"resourcemanager.projects.get", true},
		{"run.services", false},
		{"Run.services.get", false},
		{"run..get", false},
		{"run.services.get ", false},
		{"roles/run.invoker", false},
		{"", false},
	} {
		if got := ValidPermission(tc.p); got != tc.want {
			t.Errorf("ValidPermission(%q) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestTableEntries(t *testing.T) {
	byMethod := map[string]Entry{}
	for _, e := range Table() {
		byMethod[e.Method] = e
	}
	if diff := cmp.Diff([]string{"iam.serviceAccounts.actAs", "run.services.update"}, byMethod["google.cloud.run.v2.Services.UpdateService"].Permissions); diff != "" {
		t.Errorf("UpdateService permissions (-want +got):\n%s", diff)
	}
	if _, ok := byMethod["google.cloud.run.v2.Services.DeleteService"]; ok {
		t.Error("the table lists DeleteService; iapguard never deletes services")
	}
}

// TestTableIsACopy guards the table against callers that modify what Table
// returns.
func TestTableIsACopy(t *testing.T) {
	a := Table()
	a[0].Permissions[0] = "mutated.by.caller"
	for _, e := range a {
		for k := range e.OnResource {
			e.OnResource[k] = "mutated"
		}
	}
	b := Table()
	if b[0].Permissions[0] == "mutated.by.caller" {
		t.Error("modifying Table()'s Permissions changed the table")
	}
	for _, e := range b {
		for k, v := range e.OnResource {
			if v == "mutated" {
				t.Errorf("modifying Table()'s OnResource changed the table (%s %s)", e.Method, k)
			}
		}
	}
}

func TestCustomRoleGolden(t *testing.T) {
	for _, who := range []string{WhoFunction, WhoOperator} {
		t.Run(who, func(t *testing.T) {
			r, err := CustomRole(who)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.YAML()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", who+"-role.golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run go test -update to create it): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("CustomRole(%q) YAML (-golden +got):\n%s", who, diff)
			}
		})
	}
}

func TestCustomRoleContents(t *testing.T) {
	fn, err := CustomRole(WhoFunction)
	if err != nil {
		t.Fatal(err)
	}
	op, err := CustomRole(WhoOperator)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]RoleDefinition{"function": fn, "operator": op} {
		if r.Stage != "GA" || r.Title == "" || r.Description == "" || r.ID == "" {
			t.Errorf("%s role: incomplete definition %+v", name, r)
		}
		if !sort.StringsAreSorted(r.IncludedPermissions) || len(slices.Compact(slices.Clone(r.IncludedPermissions))) != len(r.IncludedPermissions) {
			t.Errorf("%s role: permissions not sorted and unique: %v", name, r.IncludedPermissions)
		}
		// Resource-scoped grants never leak into a project-wide role.
		for _, p := range []string{"iam.serviceAccounts.actAs", "pubsub.topics.publish"} {
			if slices.Contains(r.IncludedPermissions, p) {
				t.Errorf("%s role includes %q, which must be granted on the resource only", name, p)
			}
		}
	}
	for _, p := range fn.IncludedPermissions {
		if !slices.Contains(op.IncludedPermissions, p) {
			t.Errorf("operator role lacks %q; the operator runs the same reconciler as the function", p)
		}
	}
	// What the seed requires for turning IAP on must be in the function's role.
	for _, p := range []string{"compute.backendServices.update", "clientauthconfig.clients.create", "clientauthconfig.clients.getWithSecret", "run.services.update", "run.services.setIamPolicy"} {
		if !slices.Contains(fn.IncludedPermissions, p) {
			t.Errorf("function role lacks %q", p)
		}
	}
	// Operator-only reads stay out of the function's role.
	for _, p := range []string{"logging.logEntries.list"} {
		if slices.Contains(fn.IncludedPermissions, p) {
			t.Errorf("function role includes operator-only %q", p)
		}
	}
	if _, err := CustomRole("everyone"); err == nil {
		t.Error(`CustomRole("everyone") succeeded, want an error`)
	}
}

func TestResourceGrants(t *testing.T) {
	fn := ResourceGrants(WhoFunction)
	want := []string{"iam.serviceAccounts.actAs", "pubsub.topics.publish", "resourcemanager.folders.get", "resourcemanager.projects.get"}
	for _, p := range want {
		if fn[p] == "" {
			t.Errorf("ResourceGrants(function) lacks %q", p)
		}
	}
	if len(fn) != len(want) {
		t.Errorf("ResourceGrants(function) = %v, want exactly %v", fn, want)
	}
	// The function's Resource Manager reads are granted on folders only
	// when the scope lists folders: never in its project-level role.
	fr, err := CustomRole(WhoFunction)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fr.IncludedPermissions {
		if strings.HasPrefix(p, "resourcemanager.") {
			t.Errorf("function role includes %q; it is granted on the scope's folders only", p)
		}
	}
	if op := ResourceGrants(WhoOperator); op["resourcemanager.folders.list"] == "" {
		t.Errorf("ResourceGrants(operator) lacks resourcemanager.folders.list (granted on the folders of --scope)")
	}
}
