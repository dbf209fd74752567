package deploy

import (
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/iapguard/iapguard/internal/iamperm"
)

var gcloudVerbs = []string{"describe", "create", "delete", "list", "update", "undelete", "deploy", "enable", "commit",
	"validate-message", "add-iam-policy-binding", "add", "get-value"}

// commandPath is the gcloud command a call runs: its words up to and
// including the verb ("iam roles create"), without names and flags.
func commandPath(args []string) string {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		words = append(words, a)
		if slices.Contains(gcloudVerbs, a) {
			return strings.Join(words, " ")
		}
	}
	return strings.Join(words, " ")
}

func TestDeployerTableWellFormed(t *testing.T) {
	tab := DeployerTable()
	// gcloud commands first, then Terraform types; each group sorted.
	group := func(c string) int {
		if strings.HasPrefix(c, "resource ") || strings.HasPrefix(c, "data ") {
			return 1
		}
		return 0
	}
	if !slices.IsSortedFunc(tab, func(a, b DeployerNeed) int {
		if g := group(a.Command) - group(b.Command); g != 0 {
			return g
		}
		return strings.Compare(a.Command, b.Command)
	}) {
		t.Error("the deployer table is not sorted: gcloud commands, then Terraform types, each by name")
	}
	seen := map[string]bool{}
	for _, n := range tab {
		if seen[n.Command] {
			t.Errorf("%s appears twice", n.Command)
		}
		seen[n.Command] = true
		if len(n.Permissions) == 0 && n.Note == "" {
			t.Errorf("%s needs no permission: say why in Note", n.Command)
		}
		for where, perms := range n.Permissions {
			if !slices.Contains([]string{InHost, InHostSecret, InProject, InOrganization, InFolder}, where) {
				t.Errorf("%s: unknown place %q", n.Command, where)
			}
			if len(perms) == 0 || !sort.StringsAreSorted(perms) {
				t.Errorf("%s in %s: permissions %v empty or not sorted", n.Command, where, perms)
			}
			for _, p := range perms {
				if !iamperm.ValidPermission(p) {
					t.Errorf("%s: %q is not a permission", n.Command, p)
				}
			}
		}
	}
	for role, perms := range RolePermissions {
		if !strings.HasPrefix(role, "roles/") || !sort.StringsAreSorted(perms) {
			t.Errorf("role facts for %s: not a predefined role, or permissions not sorted", role)
		}
	}
	for _, g := range DeployerSelfGrants {
		if !slices.Contains(RolePermissions[g.Role], g.Permission) {
			t.Errorf("self-grant %s: %s does not include %s", g.On, g.Role, g.Permission)
		}
	}
}

// TestDeployerTableMatchesScripts runs every deploy script, in the
// configurations that reach each of its branches, against the fake gcloud
// and checks the table both ways: every command a script runs has a row,
// and every gcloud row is a command some script runs.
func TestDeployerTableMatchesScripts(t *testing.T) {
	base := map[string]string{"DEPLOY_PROJECT": "demo-project", "DEPLOY_REGION": "us-central1", "IAPGUARD_PROJECTS": "demo-project, other-project",
		"DEPLOY_IMAGE": "img", "DEPLOY_RETRY_DELAY": "0"}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(base)
		maps.Copy(m, extra)
		return m
	}
	orgFolders := with(orgEnv(t, "folders/10"))
	orgFolders["IAPGUARD_PROJECTS"] = folderScope
	triggers, err := gcloudTriggerScript(testConfig, liveTriggers(t))
	if err != nil {
		t.Fatal(err)
	}
	deletedRole := append(slices.Clone(existingWorld[:2]), "iam roles|demo-project|-|iapguardEnforcer|deleted")
	runs := []struct {
		script, stdin string
		env           map[string]string
		seed          []string
	}{
		{script: "enable-apis.sh", env: with(map[string]string{"DEPLOY_SCOPE_SECRET": "s"})},
		{script: "registry.sh", env: base},
		{script: "registry.sh", env: base, seed: existingWorld},
		{script: "identity.sh", env: base},
		{script: "identity.sh", env: base, seed: existingWorld},
		{script: "identity.sh", env: base, seed: deletedRole},
		{script: "enable-apis.sh", env: with(map[string]string{"IAPGUARD_PROJECTS": folderScope, "DEPLOY_ORGANIZATION": "42"}), seed: folderWorld},
		{script: "pubsub.sh", env: base},
		{script: "pubsub.sh", env: base, seed: existingWorld},
		{script: "service.sh", env: base},
		{script: "service.sh", env: with(map[string]string{"DEPLOY_SCOPE_SECRET": "iapguard-scope"})},
		{script: "sweep.sh", env: base, seed: existingWorld},
		{script: "sweep.sh", env: with(map[string]string{"IAPGUARD_PROJECTS": folderScope, "DEPLOY_ORGANIZATION": "42"}), seed: folderWorld},
		{script: "dead-letter.sh", env: base, seed: existingWorld},
		{script: "org.sh", env: orgFolders, seed: folderWorld},
		{script: "org.sh", env: with(orgEnv(t, "")), seed: []string{"iam roles|organizations/42|-|iapguardEnforcer", "logging sinks|organizations/42|-|iapguard-audit"}},
		{script: "-", stdin: triggers, env: base},
		{script: "-", stdin: triggers, env: base, seed: existingWorld},
	}
	ran := map[string]bool{}
	for _, r := range runs {
		script := r.script
		if script != "-" {
			script = scriptPath(t, script)
		}
		res := runScript(t, script, r.stdin, r.env, r.seed)
		if res.code != 0 {
			t.Fatalf("%s (%v): exit %d\n%s", r.script, r.env, res.code, res.stderr)
		}
		for _, c := range res.calls {
			ran[commandPath(c)] = true
		}
	}
	rows := map[string]bool{}
	for _, n := range DeployerTable() {
		if !strings.HasPrefix(n.Command, "resource ") && !strings.HasPrefix(n.Command, "data ") {
			rows[n.Command] = true
		}
	}
	for _, c := range slices.Sorted(maps.Keys(ran)) {
		if !rows[c] {
			t.Errorf("the scripts run `gcloud %s`, which the deployer table does not list", c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(rows)) {
		if !ran[c] {
			t.Errorf("the deployer table lists `gcloud %s`, which no script runs", c)
		}
	}
}

// TestDeployerTableMatchesTerraform: every resource and data source type in
// the module has a row, and every Terraform row is a type the module uses.
func TestDeployerTableMatchesTerraform(t *testing.T) {
	m := loadModule(t)
	used := map[string]bool{}
	for key := range m.resources {
		typ, _, _ := strings.Cut(key, ".")
		used["resource "+typ] = true
	}
	for key := range m.data {
		typ, _, _ := strings.Cut(key, ".")
		used["data "+typ] = true
	}
	rows := map[string]bool{}
	for _, n := range DeployerTable() {
		if strings.HasPrefix(n.Command, "resource ") || strings.HasPrefix(n.Command, "data ") {
			rows[n.Command] = true
		}
	}
	for _, c := range slices.Sorted(maps.Keys(used)) {
		if !rows[c] {
			t.Errorf("the module uses %s, which the deployer table does not list", c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(rows)) {
		if !used[c] {
			t.Errorf("the deployer table lists %s, which the module does not use", c)
		}
	}
}

// deployerRoleRows maps the first column of docs/deploy.md's deployer role
// table to the places of the deployer table.
var deployerRoleRows = map[string]string{
	"host project":                                         InHost,
	"host project, with a scope secret":                    InHostSecret,
	"each other project in scope":                          InProject,
	"the organisation":                                     InOrganization,
	"each folder: the sink's parent and each folder entry": InFolder,
}

// docsDeployerRoles reads the roles docs/deploy.md tells the deployer to
// hold, per place.
func docsDeployerRoles(t *testing.T) map[string][]string {
	doc := string(readRepoFile(t, "docs/deploy.md"))
	rowRE := regexp.MustCompile("(?m)^\\| ([^|`]+?) \\| ((?:`roles/[A-Za-z.]+`(?:, )?)+) \\|$")
	roleRE := regexp.MustCompile("`(roles/[A-Za-z.]+)`")
	out := map[string][]string{}
	for _, m := range rowRE.FindAllStringSubmatch(doc, -1) {
		where, ok := deployerRoleRows[m[1]]
		if !ok {
			continue
		}
		for _, r := range roleRE.FindAllStringSubmatch(m[2], -1) {
			out[where] = append(out[where], r[1])
		}
	}
	if len(out) != len(deployerRoleRows) {
		t.Fatalf("docs/deploy.md's deployer role table has rows for %v; want one for each of %v", slices.Sorted(maps.Keys(out)), slices.Sorted(maps.Keys(deployerRoleRows)))
	}
	return out
}

// TestDeployerRolesCover: the roles docs/deploy.md tells the deployer to
// hold in each place include every permission the deployer table needs
// there (role facts: RolePermissions, from RoleFactsSource), except the
// self-grants the deployment makes on exactly two accounts, which identity
// .sh must make.
func TestDeployerRolesCover(t *testing.T) {
	docs := docsDeployerRoles(t)
	self := map[string]bool{}
	for _, g := range DeployerSelfGrants {
		self[g.Permission] = true
	}
	for where, roles := range docs {
		held := map[string]bool{}
		for _, r := range roles {
			perms, ok := RolePermissions[r]
			if !ok {
				t.Errorf("docs/deploy.md names %s (%s), for which no role facts are recorded", r, where)
			}
			for _, p := range perms {
				held[p] = true
			}
		}
		for _, n := range DeployerTable() {
			for _, p := range n.Permissions[where] {
				if held[p] || (where == InHost && self[p]) {
					continue
				}
				t.Errorf("%s: %s needs %s, which none of the documented roles %v holds", where, n.Command, p, roles)
			}
		}
	}
	// The self-grant is made, on exactly the two accounts.
	r := runScript(t, scriptPath(t, "identity.sh"), "", map[string]string{"DEPLOY_PROJECT": "demo-project"}, nil)
	for _, g := range DeployerSelfGrants {
		for _, sa := range []string{EnforcerAccount, TriggerAccount} {
			if !r.hasCall("iam service-accounts add-iam-policy-binding "+sa+"@demo-project.iam.gserviceaccount.com", "--member=user:deployer@example.com", "--role="+g.Role) {
				t.Errorf("identity.sh does not grant the deployer %s on %s", g.Role, sa)
			}
		}
	}
}

// TestFirstDeployGrantsTheHostRoles: the commands of "First deploy on a
// new project" grant the deployer exactly the host roles of the table.
func TestFirstDeployGrantsTheHostRoles(t *testing.T) {
	doc := string(readRepoFile(t, "docs/deploy.md"))
	start := strings.Index(doc, "## First deploy on a new project")
	end := strings.Index(doc, "## Step by step with Cloud Build")
	if start < 0 || end < start {
		t.Fatal("docs/deploy.md has no \"First deploy on a new project\" section before the step-by-step one")
	}
	loop := regexp.MustCompile(`for role in ([^;]+); do`).FindStringSubmatch(strings.ReplaceAll(doc[start:end], "\\\n", " "))
	if loop == nil {
		t.Fatal("the first deploy section has no `for role in …` loop")
	}
	got := strings.Fields(loop[1])
	slices.Sort(got)
	want := slices.Clone(docsDeployerRoles(t)[InHost])
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("first deploy grants %v; the deployer role table says %v", got, want)
	}
}
