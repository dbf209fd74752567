package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// tfModule is the parsed Terraform module in deploy/terraform.
type tfModule struct {
	dir       string
	files     map[string][]byte
	bodies    map[string]*hclsyntax.Body
	variables map[string]*hclsyntax.Block
	locals    map[string]hclsyntax.Expression
	resources map[string]*hclsyntax.Block // "TYPE.NAME"
	data      map[string]*hclsyntax.Block // "TYPE.NAME"
	iterators map[string]bool             // dynamic block names (their iterator)
}

// loadModule parses every .tf file. Terraform itself cannot be installed
// here (Debian has no terraform or opentofu package), so this is the check we
// can run: HCL syntax, terraform fmt's canonical layout (hclwrite.Format is
// the formatter terraform fmt uses), and references to variables, locals,
// resources and data sources that exist. Provider schemas (attribute names
// of google_* resources) are not checked.
func loadModule(t *testing.T) *tfModule {
	t.Helper()
	m := &tfModule{
		dir:       filepath.Join(repoRoot(t), "deploy", "terraform"),
		files:     map[string][]byte{},
		bodies:    map[string]*hclsyntax.Body{},
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]hclsyntax.Expression{},
		resources: map[string]*hclsyntax.Block{},
		data:      map[string]*hclsyntax.Block{},
		iterators: map[string]bool{},
	}
	paths, err := filepath.Glob(filepath.Join(m.dir, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files in %s (%v)", m.dir, err)
	}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("%s does not parse: %s", name, diags.Error())
			continue
		}
		m.files[name] = src
		body := f.Body.(*hclsyntax.Body)
		m.bodies[name] = body
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				m.variables[b.Labels[0]] = b
			case "locals":
				for n, a := range b.Body.Attributes {
					if _, dup := m.locals[n]; dup {
						t.Errorf("local %s defined twice", n)
					}
					m.locals[n] = a.Expr
				}
			case "resource":
				m.resources[b.Labels[0]+"."+b.Labels[1]] = b
			case "data":
				m.data[b.Labels[0]+"."+b.Labels[1]] = b
			}
		}
		_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			if b, ok := n.(*hclsyntax.Block); ok && b.Type == "dynamic" {
				m.iterators[b.Labels[0]] = true
			}
			return nil
		})
	}
	return m
}

// expressions returns every value expression in the module with the file it
// is in; type constraints (a variable's type) are not values and are left
// out.
func (m *tfModule) expressions() map[hclsyntax.Expression]string {
	out := map[hclsyntax.Expression]string{}
	var walk func(file string, body *hclsyntax.Body, blockType string)
	walk = func(file string, body *hclsyntax.Body, blockType string) {
		for name, a := range body.Attributes {
			if blockType == "variable" && name == "type" {
				continue
			}
			out[a.Expr] = file
		}
		for _, b := range body.Blocks {
			walk(file, b.Body, b.Type)
		}
	}
	for name, body := range m.bodies {
		walk(name, body, "")
	}
	return out
}

func TestTerraformFormatted(t *testing.T) {
	m := loadModule(t)
	for name, src := range m.files {
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not in terraform fmt layout; formatted it reads:\n%s", name, got)
		}
	}
}

func TestTerraformReferences(t *testing.T) {
	m := loadModule(t)
	used := map[string]bool{}
	for expr, file := range m.expressions() {
		for _, tr := range expr.Variables() {
			root := tr.RootName()
			attr := func(i int) string {
				if len(tr) <= i {
					return ""
				}
				if a, ok := tr[i].(hcl.TraverseAttr); ok {
					return a.Name
				}
				return ""
			}
			switch {
			case root == "var":
				used[attr(1)] = true
				if m.variables[attr(1)] == nil {
					t.Errorf("%s: var.%s is not declared", file, attr(1))
				}
			case root == "local":
				if _, ok := m.locals[attr(1)]; !ok {
					t.Errorf("%s: local.%s is not defined", file, attr(1))
				}
			case root == "data":
				if m.data[attr(1)+"."+attr(2)] == nil {
					t.Errorf("%s: data.%s.%s does not exist", file, attr(1), attr(2))
				}
			case root == "path" || root == "each" || root == "count" || root == "self" || root == "terraform" || m.iterators[root]:
			default:
				if m.resources[root+"."+attr(1)] == nil {
					t.Errorf("%s: %s.%s is not a resource of the module", file, root, attr(1))
				}
			}
		}
	}
	for name := range m.variables {
		if !used[name] {
			t.Errorf("variable %q is declared but never used", name)
		}
	}
}

// TestTerraformContract checks the module against the deployment contract:
// the inputs the issue asks for, the files it reads, the names and the
// locked-down function.
func TestTerraformContract(t *testing.T) {
	m := loadModule(t)

	// Variables for project, region, allowlist and dry-run; dry-run on by default.
	var required []string
	for name, b := range m.variables {
		if _, ok := b.Body.Attributes["default"]; !ok {
			required = append(required, name)
		}
	}
	sort.Strings(required)
	if diff := slices.Compare(required, []string{"image", "project", "region"}); diff != 0 {
		t.Errorf("required variables = %v, want [image project region]", required)
	}
	for _, v := range []string{"projects", "dry_run"} {
		if m.variables[v] == nil {
			t.Errorf("variable %s missing", v)
		}
	}
	if def, ok := m.variables["dry_run"].Body.Attributes["default"]; ok {
		if v, diags := def.Expr.Value(nil); diags.HasErrors() || !v.True() {
			t.Error("dry_run must default to true: roll out in dry-run first")
		}
	}

	// Every file("${path.module}/...") exists.
	fileArgRE := regexp.MustCompile(`file\("\$\{path\.module\}/([^"]+)"\)`)
	all := ""
	for _, src := range m.files {
		all += string(src)
	}
	matches := fileArgRE.FindAllStringSubmatch(all, -1)
	if len(matches) < 3 {
		t.Errorf("expected the module to read triggers.json, enforcer-role.json and outcome.proto, found %v", matches)
	}
	for _, mt := range matches {
		if _, err := os.Stat(filepath.Join(m.dir, mt[1])); err != nil {
			t.Errorf("module reads %s: %v", mt[1], err)
		}
	}

	// The attributes the module reads from the generated JSON exist there.
	tfTags := jsonTags(reflect.TypeOf(TerraformTrigger{}))
	triggerRefs := regexp.MustCompile(`\beach\.value\.([a-z_]+)`).FindAllStringSubmatch(string(m.files["eventarc.tf"]), -1)
	triggerRefs = append(triggerRefs, regexp.MustCompile(`\bt\.([a-z_]+)`).FindAllStringSubmatch(string(m.files["eventarc.tf"])+string(m.files["main.tf"]), -1)...)
	if len(triggerRefs) == 0 {
		t.Error("found no trigger attribute references in eventarc.tf; the check below checks nothing")
	}
	for _, mt := range triggerRefs {
		if !tfTags[mt[1]] {
			t.Errorf("module reads trigger attribute %q, which generated/triggers.json does not have", mt[1])
		}
	}
	var role map[string]any
	if err := json.Unmarshal(readRepoFile(t, "deploy/terraform/generated/enforcer-role.json"), &role); err != nil {
		t.Fatal(err)
	}
	for _, mt := range regexp.MustCompile(`local\.enforcer_role\.([a-z_]+)`).FindAllStringSubmatch(all, -1) {
		if _, ok := role[mt[1]]; !ok {
			t.Errorf("module reads enforcer_role.%s, which generated/enforcer-role.json does not have", mt[1])
		}
	}

	// Names shared with cloudbuild.yaml and the function.
	for _, want := range []string{
		`"` + OutcomesTopic + `"`, `"` + DeadLetterTopic + `"`, `"` + OutcomeSchema + `"`,
		`"` + EnforcerAccount + `"`, `"` + TriggerAccount + `"`, `"` + DefaultService + `"`, `"` + DefaultTriggerPrefix + `"`,
		`FUNCTION_TARGET         = "` + EntryPoint + `"`,
		`ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"`,
		`role     = "roles/run.invoker"`,
		`"roles/iam.serviceAccountUser"`,
		"IAPGUARD_PROJECTS", "IAPGUARD_OUTCOMES_TOPIC", "IAPGUARD_DRY_RUN", "IAPGUARD_LOG_LEVEL", "GOOGLE_CLOUD_PROJECT",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("module lacks %s", want)
		}
	}
	for _, forbidden := range []string{"allUsers", "allAuthenticatedUsers", "roles/owner", "roles/editor", "INGRESS_TRAFFIC_ALL"} {
		if strings.Contains(all, forbidden) {
			t.Errorf("module mentions %s", forbidden)
		}
	}
	// actAs only per account: serviceAccountUser never on a project.
	for key, b := range m.resources {
		if strings.HasPrefix(key, "google_project_iam_") {
			src := string(m.files[filepath.Base(b.Range().Filename)][b.Range().Start.Byte:b.Range().End.Byte])
			if strings.Contains(src, "serviceAccountUser") {
				t.Errorf("%s grants serviceAccountUser project-wide", key)
			}
		}
	}
}

func jsonTags(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out[name] = true
	}
	return out
}

// TestTerraformOrgPath checks the module's organisation-wide path against
// org.sh: off by default; on, one organisation-level role granted at the
// sink's parent (no per-project roles), an aggregated sink with its
// children routing the generated filter to the replay topic, and the
// writer's publish permission there; the scope's patterns reach the
// function.
func TestTerraformOrgPath(t *testing.T) {
	m := loadModule(t)
	for _, r := range []string{
		"google_organization_iam_custom_role.enforcer", "google_folder_iam_member.enforcer", "google_organization_iam_member.enforcer",
		"google_logging_folder_sink.audit", "google_logging_organization_sink.audit", "google_pubsub_topic_iam_member.sink_writer_publishes",
	} {
		b := m.resources[r]
		if b == nil {
			t.Errorf("resource %s missing", r)
			continue
		}
		if _, ok := b.Body.Attributes["count"]; !ok {
			t.Errorf("%s has no count: it must exist only on the organisation-wide path", r)
		}
	}
	for _, v := range []string{"organization_id", "sink_parent"} {
		b := m.variables[v]
		if b == nil {
			t.Fatalf("variable %s missing", v)
		}
		def, ok := b.Body.Attributes["default"]
		if !ok {
			t.Errorf("variable %s is required; the organisation-wide path must be optional", v)
			continue
		}
		if val, diags := def.Expr.Value(nil); diags.HasErrors() || val.AsString() != "" {
			t.Errorf("variable %s defaults to %v, want \"\" (off)", v, val)
		}
	}
	org := string(m.files["org.tf"])
	for _, want := range []string{
		`name             = "` + LogSinkName + `"`, "include_children = true", `file("${path.module}/generated/log-filter.txt")`,
		`destination      = "pubsub.googleapis.com/${google_pubsub_topic.replay.id}"`, `"roles/pubsub.publisher"`, "writer_identity",
	} {
		if !strings.Contains(org, want) {
			t.Errorf("org.tf lacks %s", want)
		}
	}
	if n := strings.Count(org, "include_children = true"); n != 2 {
		t.Errorf("include_children set on %d sinks, want both", n)
	}
	main := string(m.files["main.tf"])
	if !strings.Contains(main, "for_each    = local.org_mode ? toset([]) : toset(local.allowlist)") {
		t.Error("per-project custom roles are not turned off on the organisation-wide path")
	}
	if !strings.Contains(string(m.files["run.tf"]), "local.scope_patterns") {
		t.Error("the scope's patterns do not reach the function's IAPGUARD_PROJECTS")
	}
}

// TestTerraformFolderEntries checks the module's handling of folders/N in
// var.projects against org.sh and sweep.sh: accepted by the validation,
// refused outside the organisation-wide path, the role and roles/browser
// granted on each folder entry (the role not twice on the sink's parent),
// the folder entries passed to the function as written, and sweep jobs for
// the projects found under them.
func TestTerraformFolderEntries(t *testing.T) {
	m := loadModule(t)
	src := func(b *hclsyntax.Block) string {
		return string(m.files[filepath.Base(b.Range().Filename)][b.Range().Start.Byte:b.Range().End.Byte])
	}

	// The validation's regular expression, run with Go's regexp (the engine
	// Terraform's regex function uses).
	v := m.variables["projects"]
	var pattern string
	for _, b := range v.Body.Blocks {
		if b.Type != "validation" {
			continue
		}
		_ = hclsyntax.VisitAll(b.Body.Attributes["condition"].Expr, func(n hclsyntax.Node) hcl.Diagnostics {
			if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name == "regex" && len(call.Args) == 2 {
				if val, diags := call.Args[0].Value(nil); !diags.HasErrors() {
					pattern = val.AsString()
				}
			}
			return nil
		})
	}
	re, err := regexp.Compile(pattern)
	if pattern == "" || err != nil {
		t.Fatalf("no usable regex in the validation of var.projects (%q, %v)", pattern, err)
	}
	for entry, want := range map[string]bool{
		"team-a-prod": true, "example.com:legacy": true, "123456789012": true, "team-*": true, "folders/123456789012": true,
		"folders/team": false, "organizations/1": false, "team-[ab]": false, "folders/": false, "projects/p": false,
	} {
		if got := re.MatchString(entry); got != want {
			t.Errorf("var.projects validation accepts %q = %v, want %v", entry, got, want)
		}
	}

	// Outside the organisation-wide path folder entries are refused.
	svc := src(m.resources["google_cloud_run_v2_service.enforcer"])
	if !strings.Contains(svc, "condition     = local.org_mode || length(local.scope_folder_entries) == 0") {
		t.Error("no precondition refusing folder entries without organization_id on the function's service")
	}
	if !strings.Contains(string(m.files["run.tf"]), "local.scope_patterns, local.scope_folder_entries))") {
		t.Error("the folder entries do not reach the function's IAPGUARD_PROJECTS as written")
	}

	for key, want := range map[string][]string{
		"google_folder_iam_member.enforcer_on_scope_folders": {
			"for_each = local.org_mode ? toset([for f in local.scope_folder_entries : f if f != local.sink_parent]) : toset([])",
			"role     = google_organization_iam_custom_role.enforcer[0].name",
		},
		"google_folder_iam_member.browser_on_scope_folders": {
			"for_each = local.org_mode ? toset(local.scope_folder_entries) : toset([])", `role     = "roles/browser"`,
		},
	} {
		b := m.resources[key]
		if b == nil {
			t.Errorf("resource %s missing", key)
			continue
		}
		for _, w := range append(want, `member   = "serviceAccount:${google_service_account.enforcer.email}"`) {
			if !strings.Contains(src(b), w) {
				t.Errorf("%s lacks %s", key, w)
			}
		}
		if !strings.Contains(svc, key) {
			t.Errorf("the function's service does not depend on %s", key)
		}
	}

	// The IAP API and the default actAs grants cover the projects found
	// under the folders; the sweep has one job per folder entry (issue #18).
	for key, want := range map[string]string{
		"data.google_folders.scope":               `parent_id = "folders/${each.value}"`,
		"data.google_projects.in_folder":          `filter   = "parent.type:folder parent.id:${each.value} lifecycleState:ACTIVE"`,
		"google_cloud_scheduler_job.sweep":        "for_each  = toset(local.allowlist)",
		"google_cloud_scheduler_job.sweep_folder": "for_each  = toset(local.scope_folders)",
		"google_project_service.iap":              "local.scope_projects",
	} {
		typ, name, _ := strings.Cut(key, ".")
		var b *hclsyntax.Block
		if typ == "data" {
			b = m.data[name]
		} else {
			b = m.resources[key]
		}
		if b == nil {
			t.Errorf("%s missing", key)
		} else if !strings.Contains(src(b), want) {
			t.Errorf("%s lacks %s", key, want)
		}
	}
	if !strings.Contains(string(m.files["main.tf"]), "local.folder_project_numbers[p]}-compute@developer.gserviceaccount.com") {
		t.Error("the Compute default accounts of the folders' projects get no actAs grant by default")
	}
}
