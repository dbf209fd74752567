package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/iapguard/iapguard/functions"
)

// The Cloud Build config schema (cloudbuild.yaml reference); decoding with
// KnownFields rejects misspelt keys, which Cloud Build would reject too.
type cbStep struct {
	ID                   string     `yaml:"id"`
	Name                 string     `yaml:"name"`
	Entrypoint           string     `yaml:"entrypoint"`
	Args                 []string   `yaml:"args"`
	Env                  []string   `yaml:"env"`
	Dir                  string     `yaml:"dir"`
	WaitFor              []string   `yaml:"waitFor"`
	SecretEnv            []string   `yaml:"secretEnv"`
	Timeout              string     `yaml:"timeout"`
	Script               string     `yaml:"script"`
	AllowFailure         bool       `yaml:"allowFailure"`
	AllowExitCodes       []int      `yaml:"allowExitCodes"`
	Volumes              []cbVolume `yaml:"volumes"`
	AutomapSubstitutions *bool      `yaml:"automapSubstitutions"`
}

type cbVolume struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"`
}

type cbOptions struct {
	Env                       []string   `yaml:"env"`
	SecretEnv                 []string   `yaml:"secretEnv"`
	Volumes                   []cbVolume `yaml:"volumes"`
	SourceProvenanceHash      []string   `yaml:"sourceProvenanceHash"`
	MachineType               string     `yaml:"machineType"`
	DiskSizeGb                int64      `yaml:"diskSizeGb"`
	SubstitutionOption        string     `yaml:"substitutionOption"`
	DynamicSubstitutions      bool       `yaml:"dynamicSubstitutions"`
	AutomapSubstitutions      bool       `yaml:"automapSubstitutions"`
	LogStreamingOption        string     `yaml:"logStreamingOption"`
	Logging                   string     `yaml:"logging"`
	DefaultLogsBucketBehavior string     `yaml:"defaultLogsBucketBehavior"`
	Pool                      *struct {
		Name string `yaml:"name"`
	} `yaml:"pool"`
	RequestedVerifyOption string `yaml:"requestedVerifyOption"`
}

type cbBuild struct {
	Steps            []cbStep          `yaml:"steps"`
	Timeout          string            `yaml:"timeout"`
	QueueTTL         string            `yaml:"queueTtl"`
	LogsBucket       string            `yaml:"logsBucket"`
	Options          cbOptions         `yaml:"options"`
	Substitutions    map[string]string `yaml:"substitutions"`
	Tags             []string          `yaml:"tags"`
	Images           []string          `yaml:"images"`
	ServiceAccount   string            `yaml:"serviceAccount"`
	AvailableSecrets yaml.Node         `yaml:"availableSecrets"`
	Artifacts        yaml.Node         `yaml:"artifacts"`
}

// builtinSubstitutions are the substitutions Cloud Build provides.
var builtinSubstitutions = []string{
	"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "REVISION_ID",
	"SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME",
	"TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
}

var (
	userSubstitutionRE = regexp.MustCompile(`^_[A-Z0-9_]+$`)
	// substitutionRefRE finds Cloud Build substitution syntax: $$ (an
	// escaped $), ${NAME...} and $NAME.
	substitutionRefRE = regexp.MustCompile(`\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))`)
)

func loadCloudBuild(t *testing.T) cbBuild {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readRepoFile(t, "cloudbuild.yaml")))
	dec.KnownFields(true)
	var b cbBuild
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("cloudbuild.yaml: %v", err)
	}
	if len(b.Steps) == 0 {
		t.Fatal("cloudbuild.yaml has no steps")
	}
	return b
}

// stepStrings is every string of a step Cloud Build substitutes into.
func stepStrings(s cbStep) []string {
	out := append([]string{s.Name, s.Entrypoint, s.Dir, s.Script}, s.Args...)
	return append(out, s.Env...)
}

// substitute applies Cloud Build's substitution to s: $$ becomes $, known
// substitutions their value.
func substitute(s string, values map[string]string) string {
	return substitutionRefRE.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := substitutionRefRE.FindStringSubmatch(m)
		name := sub[2] + sub[3]
		if v, ok := values[name]; ok {
			return v
		}
		return "BUILTIN_" + name
	})
}

func TestCloudBuildSubstitutions(t *testing.T) {
	b := loadCloudBuild(t)
	for name := range b.Substitutions {
		if !userSubstitutionRE.MatchString(name) {
			t.Errorf("substitution %q: user-defined substitutions start with _ and use A-Z, 0-9, _", name)
		}
	}
	for _, want := range []string{"_PROJECT", "_REGION", "_PROJECTS", "_DRY_RUN"} {
		if _, ok := b.Substitutions[want]; !ok {
			t.Errorf("substitution %s is missing", want)
		}
	}
	if b.Substitutions["_DRY_RUN"] != "true" {
		t.Errorf("_DRY_RUN defaults to %q, want true: roll out in dry-run first", b.Substitutions["_DRY_RUN"])
	}
	// Cloud Build fails a build whose template names an undefined
	// substitution, and one that defines a substitution the template does not
	// use (unless substitutionOption is ALLOW_LOOSE).
	if b.Options.SubstitutionOption == "ALLOW_LOOSE" {
		t.Error("substitutionOption ALLOW_LOOSE hides mistakes; keep the default")
	}
	used := map[string]bool{}
	check := func(where, s string) {
		for _, m := range substitutionRefRE.FindAllStringSubmatch(s, -1) {
			if m[1] == "$" {
				continue
			}
			name := m[2] + m[3]
			used[name] = true
			_, declared := b.Substitutions[name]
			if !declared && !slices.Contains(builtinSubstitutions, name) {
				t.Errorf("%s: $%s is neither a declared nor a built-in substitution (a shell variable must be written $$%s)", where, name, name)
			}
		}
	}
	for _, s := range b.Steps {
		for _, str := range stepStrings(s) {
			check("step "+s.ID, str)
		}
	}
	for name, v := range b.Substitutions {
		if strings.Contains(v, "$") && !b.Options.DynamicSubstitutions {
			t.Errorf("substitution %s refers to another (%q) but dynamicSubstitutions is off", name, v)
		}
		check("substitution "+name, v)
	}
	for name := range b.Substitutions {
		if !used[name] {
			t.Errorf("substitution %s is declared but unused; Cloud Build rejects that", name)
		}
	}
}

func TestCloudBuildSteps(t *testing.T) {
	b := loadCloudBuild(t)
	root := repoRoot(t)
	ids := map[string]int{}
	deps := map[string][]string{}
	for i, s := range b.Steps {
		if s.ID == "" || s.Name == "" {
			t.Errorf("step %d: id and name are required", i)
		}
		if _, dup := ids[s.ID]; dup {
			t.Errorf("step id %q is used twice", s.ID)
		}
		for _, w := range s.WaitFor {
			if w == "-" {
				continue
			}
			if j, ok := ids[w]; !ok || j >= i {
				t.Errorf("step %s waits for %q, which is not an earlier step", s.ID, w)
			}
		}
		ids[s.ID] = i
		switch {
		case s.WaitFor == nil && i > 0: // Cloud Build's default: every earlier step
			for _, p := range b.Steps[:i] {
				deps[s.ID] = append(deps[s.ID], p.ID)
			}
		default:
			deps[s.ID] = slices.DeleteFunc(slices.Clone(s.WaitFor), func(w string) bool { return w == "-" })
		}
	}
	var dependsOn func(id, target string, seen map[string]bool) bool
	dependsOn = func(id, target string, seen map[string]bool) bool {
		for _, d := range deps[id] {
			if d == target || (!seen[d] && func() bool { seen[d] = true; return dependsOn(d, target, seen) }()) {
				return true
			}
		}
		return false
	}

	values := map[string]string{}
	for k, v := range b.Substitutions {
		values[k] = v
	}
	values["_PROJECT"] = "demo-project"
	var produced []string // files under /workspace written by inline scripts
	for _, s := range b.Steps {
		if s.ID != "test" && !dependsOn(s.ID, "test", map[string]bool{}) {
			t.Errorf("step %s does not wait for the tests", s.ID)
		}
		if s.Entrypoint != "bash" || len(s.Args) == 0 {
			continue
		}
		if s.Args[0] == "-c" {
			if len(s.Args) != 2 {
				t.Errorf("step %s: bash -c takes one script argument, got %d", s.ID, len(s.Args)-1)
				continue
			}
			script := substitute(s.Args[1], values)
			bashSyntax(t, "inline script of step "+s.ID, script)
			for _, m := range regexp.MustCompile(`>\s*(/workspace/\S+)`).FindAllStringSubmatch(script, -1) {
				produced = append(produced, m[1]+" "+s.ID)
			}
			continue
		}
		path := s.Args[0]
		if strings.HasPrefix(path, "/workspace/") {
			var producer string
			for _, p := range produced {
				if f, id, _ := strings.Cut(p, " "); f == path {
					producer = id
				}
			}
			if producer == "" {
				t.Errorf("step %s runs %s, which no earlier step writes", s.ID, path)
			} else if !dependsOn(s.ID, producer, map[string]bool{}) {
				t.Errorf("step %s runs %s without waiting for step %s, which writes it", s.ID, path, producer)
			}
			continue
		}
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("step %s runs %s: %v", s.ID, path, err)
		} else if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("step %s runs %s, which is not executable", s.ID, path)
		}
	}
}

// TestCloudBuildDeploysWhatTheCodeExpects ties the steps to the code: the
// trigger script is rendered from eventarc/, the image built from
// functions/cmd/enforcer is the one deployed, the function is configured from the
// substitutions, and the Go version matches go.mod.
func TestCloudBuildDeploysWhatTheCodeExpects(t *testing.T) {
	b := loadCloudBuild(t)
	raw := string(readRepoFile(t, "cloudbuild.yaml"))
	if !strings.Contains(raw, "https://cloud.google.com/functions/docs/writing") {
		t.Error("cloudbuild.yaml does not cite the source-layout page it follows")
	}
	step := func(id string) cbStep {
		for _, s := range b.Steps {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no step %q", id)
		return cbStep{}
	}
	env := func(s cbStep, key string) string {
		for _, e := range s.Env {
			if k, v, _ := strings.Cut(e, "="); k == key {
				return v
			}
		}
		return ""
	}

	render := strings.Join(step("render-triggers").Args, " ")
	for _, want := range []string{"./cmd/iapctl deploy triggers", "--format=gcloud", "--project=${_PROJECT}", "--region=${_REGION}", "--function-service=${_SERVICE}", "> /workspace/triggers.sh"} {
		if !strings.Contains(render, want) {
			t.Errorf("render-triggers step lacks %q", want)
		}
	}
	if got := step("triggers").Args; len(got) != 1 || got[0] != "/workspace/triggers.sh" {
		t.Errorf("triggers step runs %v, want the rendered script", got)
	}

	image := "${_REGION}-docker.pkg.dev/${_PROJECT}/${_REPOSITORY}/enforcer:${BUILD_ID}"
	build := step("build").Args
	if !slices.Contains(build, "--tag="+image) || !slices.Contains(build, "--file=deploy/enforcer/Dockerfile") {
		t.Errorf("build step %v does not build deploy/enforcer/Dockerfile as %s", build, image)
	}
	if !slices.Contains(step("push").Args, image) {
		t.Errorf("push step does not push %s", image)
	}
	svc := step("service")
	if svc.Args[0] != "deploy/scripts/service.sh" || env(svc, "DEPLOY_IMAGE") != image {
		t.Errorf("service step deploys %q with %v, want %s via deploy/scripts/service.sh", env(svc, "DEPLOY_IMAGE"), svc.Args, image)
	}
	for key, want := range map[string]string{
		"DEPLOY_PROJECT": "${_PROJECT}", "DEPLOY_REGION": "${_REGION}", "DEPLOY_SERVICE": "${_SERVICE}",
		"IAPGUARD_PROJECTS": "${_PROJECTS}", "IAPGUARD_DRY_RUN": "${_DRY_RUN}", "IAPGUARD_LOG_LEVEL": "${_LOG_LEVEL}",
	} {
		if got := env(svc, key); got != want {
			t.Errorf("service step %s = %q, want %q", key, got, want)
		}
	}
	if b.Substitutions["_SERVICE"] != DefaultService {
		t.Errorf("_SERVICE defaults to %q, want %q", b.Substitutions["_SERVICE"], DefaultService)
	}

	// Go versions: go.mod, the build image and the Dockerfile agree.
	goMod := string(readRepoFile(t, "go.mod"))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	wantImage := "golang:" + m[1]
	if b.Substitutions["_GO_IMAGE"] != wantImage {
		t.Errorf("_GO_IMAGE = %q, want %q (go.mod says go %s)", b.Substitutions["_GO_IMAGE"], wantImage, m[1])
	}
	if functions.FunctionName != EntryPoint {
		t.Errorf("the function registers as %q, the deployment serves %q", functions.FunctionName, EntryPoint)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), "functions", "cmd", "enforcer", "main.go")); err != nil {
		t.Errorf("the image's main package: %v", err)
	}
	dockerfile := string(readRepoFile(t, "deploy/enforcer/Dockerfile"))
	for _, want := range []string{"ARG GO_IMAGE=" + wantImage + "\n", "./functions/cmd/enforcer\n", "ENV FUNCTION_TARGET=" + EntryPoint + "\n", "USER nonroot"} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
}

// TestCloudBuildOrgPath ties the organisation-wide path together: the
// filter is rendered from eventarc/ before org.sh reads it, org.sh gets the
// organisation and the sink's parent, identity.sh knows not to make
// per-project roles, and by default (no organisation) nothing of it runs.
func TestCloudBuildOrgPath(t *testing.T) {
	b := loadCloudBuild(t)
	step := map[string]cbStep{}
	for _, s := range b.Steps {
		step[s.ID] = s
	}
	env := func(s cbStep) map[string]string {
		out := map[string]string{}
		for _, e := range s.Env {
			k, v, _ := strings.Cut(e, "=")
			out[k] = v
		}
		return out
	}
	render := strings.Join(step["render-triggers"].Args, " ")
	if !strings.Contains(render, "./cmd/iapctl deploy triggers --format=log-filter") || !strings.Contains(render, "> /workspace/log-filter.txt") {
		t.Errorf("render-triggers does not render the log sink filter to /workspace/log-filter.txt: %s", render)
	}
	org, ok := step["org"]
	if !ok {
		t.Fatal("no org step")
	}
	if len(org.Args) != 1 || org.Args[0] != "deploy/scripts/org.sh" {
		t.Errorf("org step runs %v, want deploy/scripts/org.sh", org.Args)
	}
	for _, w := range []string{"render-triggers", "identity", "pubsub"} {
		if !slices.Contains(org.WaitFor, w) {
			t.Errorf("org step does not wait for %s", w)
		}
	}
	if diff := cmp.Diff(map[string]string{
		"DEPLOY_PROJECT": "${_PROJECT}", "DEPLOY_ORGANIZATION": "${_ORGANIZATION}", "IAPGUARD_PROJECTS": "${_PROJECTS}",
		"DEPLOY_SINK_PARENT": "${_SINK_PARENT}", "DEPLOY_LOG_FILTER_FILE": "/workspace/log-filter.txt",
	}, env(org)); diff != "" {
		t.Errorf("org step environment (-want +got):\n%s", diff)
	}
	// Folder entries in _PROJECTS are accepted only on the organisation-wide
	// path (lib.sh parse_scope): every step that reads the scope must know
	// whether it is on.
	for _, s := range b.Steps {
		e := env(s)
		if _, ok := e["IAPGUARD_PROJECTS"]; ok && e["DEPLOY_ORGANIZATION"] != "${_ORGANIZATION}" {
			t.Errorf("step %s reads IAPGUARD_PROJECTS without DEPLOY_ORGANIZATION=${_ORGANIZATION}: it would refuse folder entries on the organisation-wide path", s.ID)
		}
	}
	// The function is deployed after org.sh has granted what folder entries
	// need on the folders.
	if !slices.Contains(step["service"].WaitFor, "org") {
		t.Error("service step does not wait for the org step (the folder grants)")
	}
	if got := env(step["identity"])["DEPLOY_ORGANIZATION"]; got != "${_ORGANIZATION}" {
		t.Errorf("identity step DEPLOY_ORGANIZATION = %q, want ${_ORGANIZATION}", got)
	}
	if b.Substitutions["_ORGANIZATION"] != "" || b.Substitutions["_SINK_PARENT"] != "" {
		t.Error("the organisation-wide path must be off by default (_ORGANIZATION and _SINK_PARENT empty)")
	}
}
