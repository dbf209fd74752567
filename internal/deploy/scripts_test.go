package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/iamperm"
)

// scriptRun is the result of running a deploy script against the fake gcloud
// (testdata/fake-gcloud.sh).
type scriptRun struct {
	calls  [][]string // every gcloud invocation's arguments
	state  []string   // resources that exist afterwards
	stderr string
	code   int
}

// runScript runs bash script (a path, or "-" to read it from stdin) with
// env and a fake gcloud whose world starts with the resources in seed
// ("GROUP|PROJECT|LOCATION|NAME" lines).
func runScript(t *testing.T, script, stdin string, env map[string]string, seed []string) scriptRun {
	t.Helper()
	dir := t.TempDir()
	fake, err := os.ReadFile(filepath.Join("testdata", "fake-gcloud.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gcloud"), fake, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath, statePath := filepath.Join(dir, "calls.log"), filepath.Join(dir, "state")
	seedText := strings.Join(seed, "\n")
	if seedText != "" {
		seedText += "\n"
	}
	if err := os.WriteFile(statePath, []byte(seedText), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{script}
	if script == "-" {
		args = nil
	}
	cmd := exec.CommandContext(t.Context(), "bash", args...)
	cmd.Stdin = strings.NewReader(stdin)
	// A clean environment: nothing from the developer's shell leaks in.
	cmd.Env = []string{
		"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + dir,
		"LC_ALL=C",
		"FAKE_GCLOUD_LOG=" + logPath,
		"FAKE_GCLOUD_STATE=" + statePath,
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	run := scriptRun{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running %s: %v", script, err)
		}
		run.code = ee.ExitCode()
	}
	run.stderr = stderr.String()
	logged, err := os.ReadFile(logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, rec := range strings.Split(string(logged), "\x1e") {
		if rec != "" {
			run.calls = append(run.calls, strings.Split(rec, "\x1f"))
		}
	}
	st, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if line != "" {
			run.state = append(run.state, line)
		}
	}
	return run
}

var plainArgRE = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_*~^|{}()-]*$`)

// transcript renders the calls one per line, with $REPO for the repository
// root and a placeholder for the example outcome message, for golden files.
func (r scriptRun) transcript(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	sample := string(readRepoFile(t, "pkg/outcome/testdata/remediated.golden.json"))
	var b strings.Builder
	for _, c := range r.calls {
		b.WriteString("gcloud")
		for _, a := range c {
			a = strings.ReplaceAll(a, root, "$REPO")
			if strings.TrimSuffix(strings.TrimPrefix(a, "--message="), "\n") == strings.TrimSuffix(sample, "\n") {
				a = "--message=<pkg/outcome/testdata/remediated.golden.json>"
			}
			if !plainArgRE.MatchString(a) {
				a = strconv.Quote(a)
			}
			b.WriteString(" " + a)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "exit %d\n", r.code)
	return b.String()
}

// joined is every call as one space-separated string.
func (r scriptRun) joined() []string {
	out := make([]string, len(r.calls))
	for i, c := range r.calls {
		out[i] = strings.Join(c, " ")
	}
	return out
}

func (r scriptRun) hasCall(substrs ...string) bool {
	for _, c := range r.joined() {
		all := true
		for _, s := range substrs {
			if !strings.Contains(c, s) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func scriptPath(t *testing.T, name string) string {
	return filepath.Join(repoRoot(t), "deploy", "scripts", name)
}

// existingWorld is what a completed earlier deployment left behind, plus a
// sweep job and a trigger that are no longer wanted.
var existingWorld = []string{
	"iam service-accounts|demo-project|-|iapguard-enforcer@demo-project.iam.gserviceaccount.com",
	"iam service-accounts|demo-project|-|iapguard-trigger@demo-project.iam.gserviceaccount.com",
	"iam roles|demo-project|-|iapguardEnforcer",
	"iam roles|other-project|-|iapguardEnforcer",
	"pubsub schemas|demo-project|-|iapguard-outcome-v1",
	"pubsub topics|demo-project|-|iapguard-outcomes",
	"pubsub topics|demo-project|-|iapguard-replay",
	"pubsub topics|demo-project|-|iapguard-dead-letter",
	"pubsub subscriptions|demo-project|-|iapguard-dead-letter-hold",
	"scheduler jobs|demo-project|us-central1|iapguard-sweep-demo-project",
	"scheduler jobs|demo-project|us-central1|iapguard-sweep-retired-project",
	"artifacts repositories|demo-project|us-central1|iapguard",
	"eventarc triggers|demo-project|us-central1|iapguard-run-v2-update",
	"eventarc triggers|demo-project|global|iapguard-lb-patch",
	"eventarc triggers|demo-project|us-central1|iapguard-lb-patch", // its copy from before it moved to global
	"eventarc triggers|demo-project|us-central1|iapguard-replay",
	"eventarc triggers|demo-project|global|iapguard-retired-trigger",
	"eventarc triggers|demo-project|us-central1|someone-elses-trigger",
}

// projectsWorld holds the projects `gcloud projects list` shows.
var projectsWorld = []string{"projects|-|-|team-a", "projects|-|-|legacy", "projects|-|-|team-b"}

// folderWorld is a folder tree for the scope's folder entries, with the
// projects `gcloud projects list` shows (their parent, their number):
//
//	folders/10: team-a, ops-tools; sub-folder 20
//	folders/20: deep-one, numbered; sub-folder 30
//	folders/30: deeper-two
//	folders/11 (not in scope): sub-folder 21 with outside
//	legacy (no folder)
var folderWorld = []string{
	"resource-manager folders|folders/10|-|20",
	"resource-manager folders|folders/20|-|30",
	"resource-manager folders|folders/11|-|21",
	"projects|folders/10|100000000001|team-a",
	"projects|folders/10|100000000002|ops-tools",
	"projects|folders/20|100000000003|deep-one",
	"projects|folders/20|100000000006|numbered",
	"projects|folders/30|100000000004|deeper-two",
	"projects|folders/21|100000000005|outside",
	"projects|-|-|legacy",
}

// folderScope lists a project, a pattern, a project by number (numbered,
// under folders/20) and two folder entries, the second inside the first.
const folderScope = "demo-project, team-*, 100000000006, folders/10, folders/20"

// orgEnv is the environment of org.sh: organisation 42, parent (empty: the
// organisation) and a synthetic filter.
func orgEnv(t *testing.T, parent string) map[string]string {
	env := map[string]string{
		"DEPLOY_ORGANIZATION":    "42",
		"DEPLOY_LOG_FILTER_FILE": filepath.Join(repoRoot(t), "internal", "deploy", "testdata", "synthetic-log-filter.txt"),
	}
	if parent != "" {
		env["DEPLOY_SINK_PARENT"] = parent
	}
	return env
}

// numbers returns n distinct project numbers, comma-separated.
func numbers(n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(100000000000 + i)
	}
	return strings.Join(out, ",")
}

func TestScriptsAgainstFakeGcloud(t *testing.T) {
	base := map[string]string{
		"DEPLOY_PROJECT":    "demo-project",
		"DEPLOY_REGION":     "us-central1",
		"IAPGUARD_PROJECTS": "demo-project, other-project",
	}
	// merge returns a new map: a, overridden by b.
	merge := func(a, b map[string]string) map[string]string {
		m := map[string]string{}
		maps.Copy(m, a)
		maps.Copy(m, b)
		return m
	}
	with := func(extra map[string]string) map[string]string { return merge(base, extra) }
	triggerScript, err := gcloudTriggerScript(testConfig, syntheticTriggers(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, script, stdin string
		env                 map[string]string
		seed                []string
		wantCode            int
		check               func(t *testing.T, r scriptRun)
	}{
		{name: "enable-apis", script: "enable-apis.sh", env: base},
		{name: "registry.fresh", script: "registry.sh", env: base},
		{name: "registry.existing", script: "registry.sh", env: base, seed: existingWorld},
		{
			name: "identity.fresh", script: "identity.sh", env: base,
			check: func(t *testing.T, r scriptRun) {
				for _, p := range []string{"demo-project", "other-project"} {
					if !r.hasCall("iam roles create "+iamperm.FunctionRoleID, "--project="+p, "deploy/iam/iapguard-enforcer.yaml") {
						t.Errorf("no custom role created in %s", p)
					}
					if !r.hasCall("projects add-iam-policy-binding "+p, "--role=projects/"+p+"/roles/"+iamperm.FunctionRoleID,
						"--member=serviceAccount:iapguard-enforcer@demo-project.iam.gserviceaccount.com") {
						t.Errorf("custom role not granted to the enforcer in %s", p)
					}
				}
				if !r.hasCall("iam service-accounts add-iam-policy-binding 123456789012-compute@developer.gserviceaccount.com", "--role=roles/iam.serviceAccountUser") {
					t.Error("no actAs grant on the default runtime service account")
				}
				// The deployer (gcloud's active account) acts as exactly
				// the two accounts it deploys with.
				for _, sa := range []string{"iapguard-enforcer", "iapguard-trigger"} {
					if !r.hasCall("iam service-accounts add-iam-policy-binding "+sa+"@demo-project.iam.gserviceaccount.com",
						"--member=user:deployer@example.com", "--role=roles/iam.serviceAccountUser") {
						t.Errorf("the deployer cannot act as %s: run deploy / triggers create --service-account would be refused", sa)
					}
				}
				if !r.hasCall("iam service-accounts add-iam-policy-binding iapguard-trigger@demo-project.iam.gserviceaccount.com",
					"--member=serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com", "--role=roles/iam.serviceAccountTokenCreator") {
					t.Error("the Pub/Sub service agent cannot mint tokens for the trigger identity (agents created before 2021-04-08)")
				}
			},
		},
		{
			name: "identity.build-account", script: "identity.sh",
			env: with(map[string]string{"FAKE_GCLOUD_ACCOUNT": "123-compute@developer.gserviceaccount.com"}),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("iam service-accounts add-iam-policy-binding iapguard-enforcer@", "--member=serviceAccount:123-compute@developer.gserviceaccount.com", "--role=roles/iam.serviceAccountUser") {
					t.Error("a service-account deployer (Cloud Build) is not granted as serviceAccount:")
				}
			},
		},
		{
			name: "identity.existing", script: "identity.sh", seed: existingWorld,
			env: with(map[string]string{"DEPLOY_RUNTIME_SERVICE_ACCOUNTS": "web@demo-project.iam.gserviceaccount.com,api@other-project.iam.gserviceaccount.com"}),
			check: func(t *testing.T, r scriptRun) {
				if r.hasCall("iam roles create") || r.hasCall("iam service-accounts create") {
					t.Error("existing role or account created again")
				}
				if r.hasCall("compute@developer.gserviceaccount.com") {
					t.Error("default runtime account granted although DEPLOY_RUNTIME_SERVICE_ACCOUNTS names the accounts")
				}
			},
		},
		{
			name: "pubsub.fresh", script: "pubsub.sh", env: base,
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("pubsub topics create "+OutcomesTopic, "--schema="+OutcomeSchema, "--message-encoding=json") {
					t.Error("outcomes topic not created with the schema")
				}
				if !r.hasCall("pubsub topics add-iam-policy-binding "+OutcomesTopic, "iapguard-enforcer@", "roles/pubsub.publisher") {
					t.Error("enforcer cannot publish outcomes")
				}
			},
		},
		{
			name: "pubsub.existing", script: "pubsub.sh", env: base, seed: existingWorld,
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("pubsub schemas commit " + OutcomeSchema) {
					t.Error("changed schema definition not committed as a new revision")
				}
			},
		},
		{
			name: "service", script: "service.sh",
			env: with(map[string]string{"DEPLOY_IMAGE": "us-central1-docker.pkg.dev/demo-project/iapguard/enforcer:b1", "IAPGUARD_DRY_RUN": "true"}),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("run deploy iapguard-enforcer", "--no-allow-unauthenticated", "--ingress=internal",
					"--service-account=iapguard-enforcer@demo-project.iam.gserviceaccount.com",
					"FUNCTION_TARGET="+EntryPoint, "IAPGUARD_DRY_RUN=true", "IAPGUARD_PROJECTS=demo-project,123456789012,other-project,123456789012",
					"IAPGUARD_OUTCOMES_TOPIC=projects/demo-project/topics/"+OutcomesTopic, "GOOGLE_CLOUD_PROJECT=demo-project") {
					t.Errorf("run deploy is not locked down and configured:\n%s", strings.Join(r.joined(), "\n"))
				}
				if !r.hasCall("run services add-iam-policy-binding iapguard-enforcer", "serviceAccount:iapguard-trigger@", "roles/run.invoker") {
					t.Error("trigger identity cannot invoke the function")
				}
			},
		},
		{
			// 2,600 projects by number: 33,800 bytes, over Cloud Run's
			// 32,768 for one variable. Refused before the deploy.
			name: "service.scope-too-long", script: "service.sh", wantCode: 1,
			env: with(map[string]string{"DEPLOY_IMAGE": "img", "IAPGUARD_PROJECTS": numbers(2600)}),
			check: func(t *testing.T, r scriptRun) {
				if r.hasCall("run deploy") || !strings.Contains(r.stderr, "IAPGUARD_PROJECTS would be 33799 bytes; Cloud Run allows an environment variable at most 32768") ||
					!strings.Contains(r.stderr, "DEPLOY_SCOPE_SECRET") {
					t.Errorf("a scope too long for an environment variable was not refused with the way out: %s", r.stderr)
				}
			},
		},
		{
			name: "service.scope-secret", script: "service.sh",
			env: with(map[string]string{"DEPLOY_IMAGE": "img", "IAPGUARD_PROJECTS": numbers(2600), "DEPLOY_SCOPE_SECRET": "iapguard-scope"}),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("secrets create iapguard-scope") || !r.hasCall("secrets versions add iapguard-scope", "--data-file=-") ||
					!r.hasCall("secrets add-iam-policy-binding iapguard-scope", "--member=serviceAccount:iapguard-enforcer@demo-project.iam.gserviceaccount.com", "--role=roles/secretmanager.secretAccessor") {
					t.Errorf("the scope is not written to the secret, readable by the enforcer:\n%s", strings.Join(r.joined(), "\n"))
				}
				if !r.hasCall("run deploy", "--set-secrets=/etc/iapguard/scope/projects=iapguard-scope:latest", "|IAPGUARD_PROJECTS_FILE=/etc/iapguard/scope/projects") ||
					r.hasCall("run deploy", "IAPGUARD_PROJECTS=") {
					t.Error("the function does not read its scope from the mounted secret")
				}
			},
		},
		{
			name: "service.bad-dry-run", script: "service.sh", wantCode: 1,
			env: with(map[string]string{"DEPLOY_IMAGE": "img", "IAPGUARD_DRY_RUN": "yes"}),
			check: func(t *testing.T, r scriptRun) {
				if !strings.Contains(r.stderr, "IAPGUARD_DRY_RUN=yes") || r.hasCall("run deploy") {
					t.Errorf("bad IAPGUARD_DRY_RUN not rejected before deploying: %s", r.stderr)
				}
			},
		},
		{
			name: "sweep.fresh", script: "sweep.sh", env: base,
			check: func(t *testing.T, r scriptRun) {
				for _, p := range []string{"demo-project", "other-project"} {
					if !r.hasCall("scheduler jobs create pubsub iapguard-sweep-"+p, "--topic=projects/demo-project/topics/iapguard-replay",
						`--message-body={"version":1,"scope":"projects/`+p+`","requestedBy":"scheduler"}`) {
						t.Errorf("no sweep job for %s", p)
					}
				}
			},
		},
		{
			// Domain-scoped project ids hold '.' and ':', which job ids
			// do not allow: escaped reversibly (lib.sh sweep_job_id).
			name: "sweep.domain-scoped", script: "sweep.sh",
			env:  with(map[string]string{"IAPGUARD_PROJECTS": "example.com:p, demo-project"}),
			seed: []string{"scheduler jobs|demo-project|us-central1|iapguard-sweep-example_dcom_cold"},
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("scheduler jobs create pubsub iapguard-sweep-example_dcom_cp ", `"scope":"projects/example.com:p"`) {
					t.Errorf("no sweep job with a valid id for example.com:p:\n%s", strings.Join(r.joined(), "\n"))
				}
				if !r.hasCall("scheduler jobs delete iapguard-sweep-example_dcom_cold") || !strings.Contains(r.stderr, "projects/example.com:old no longer in scope") {
					t.Errorf("the job of a domain-scoped project left the scope is not pruned by its decoded id: %s", r.stderr)
				}
			},
		},
		{
			name: "sweep.existing", script: "sweep.sh", env: base, seed: existingWorld,
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("scheduler jobs delete iapguard-sweep-retired-project") || r.hasCall("scheduler jobs delete iapguard-sweep-demo-project") {
					t.Error("sweep jobs not pruned to the allowlist")
				}
			},
		},
		{
			name: "identity.org", script: "identity.sh", env: with(map[string]string{"DEPLOY_ORGANIZATION": "42"}),
			check: func(t *testing.T, r scriptRun) {
				if r.hasCall("iam roles") || r.hasCall("projects add-iam-policy-binding other-project") {
					t.Error("per-project roles made although the organisation-wide path grants one role at the sink's parent")
				}
				if !r.hasCall("iam service-accounts add-iam-policy-binding 123456789012-compute@developer.gserviceaccount.com", "--role=roles/iam.serviceAccountUser") {
					t.Error("no actAs grant on the default runtime service account")
				}
			},
		},
		{
			name: "service.patterns", script: "service.sh", seed: projectsWorld,
			env: with(map[string]string{"DEPLOY_IMAGE": "img", "IAPGUARD_PROJECTS": "demo-project, team-*"}),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("run deploy", "IAPGUARD_PROJECTS=demo-project,123456789012,team-a,123456789012,team-b,123456789012,team-*|") {
					t.Errorf("the function's scope is not the listed project, the matching ones with their numbers, and the pattern:\n%s", strings.Join(r.joined(), "\n"))
				}
				if r.hasCall("projects describe team-") {
					t.Error("numbers of listed projects looked up one by one; projects list gave them")
				}
			},
		},
		{
			name: "sweep.patterns", script: "sweep.sh", seed: projectsWorld,
			env: with(map[string]string{"IAPGUARD_PROJECTS": "team-*"}),
			check: func(t *testing.T, r scriptRun) {
				for _, p := range []string{"team-a", "team-b"} {
					if !r.hasCall("scheduler jobs create pubsub iapguard-sweep-"+p, `"scope":"projects/`+p+`"`) {
						t.Errorf("no sweep job for %s, which the pattern matches", p)
					}
				}
				if r.hasCall("iapguard-sweep-legacy") || r.hasCall("iapguard-sweep-team-*") {
					t.Error("sweep job for a project the pattern does not match, or for the pattern itself")
				}
			},
		},
		{
			// A project listed by number whose id a pattern also matches is
			// one project: one sweep job, under the listed number.
			name: "sweep.pattern-and-number", script: "sweep.sh", seed: folderWorld,
			env: with(map[string]string{"IAPGUARD_PROJECTS": "team-*, 100000000001"}),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("scheduler jobs create pubsub iapguard-sweep-100000000001", `"scope":"projects/100000000001"`) {
					t.Errorf("no sweep job for the listed number:\n%s", strings.Join(r.joined(), "\n"))
				}
				if r.hasCall("iapguard-sweep-team-a") {
					t.Error("a second sweep job for team-a, which is listed by its number 100000000001")
				}
			},
		},
		{
			name: "sweep.folder-entry", script: "sweep.sh", seed: folderWorld,
			env: with(map[string]string{"IAPGUARD_PROJECTS": folderScope, "DEPLOY_ORGANIZATION": "42"}),
			check: func(t *testing.T, r scriptRun) {
				var jobs []string
				for _, c := range r.calls {
					if len(c) > 4 && c[0] == "scheduler" && c[2] == "create" {
						jobs = append(jobs, strings.TrimPrefix(c[4], "iapguard-sweep-"))
					}
				}
				// One job per scope (issue #18): each folder entry (its
				// projects, however deep, are found by the function's Cloud
				// Asset search, so the folders are not walked here), then the
				// listed project and number and the pattern's match; team-a
				// (pattern) and numbered (listed by number) once.
				want := []string{"_f10", "_f20", "demo-project", "100000000006", "team-a"}
				if diff := cmp.Diff(want, jobs); diff != "" {
					t.Errorf("sweep jobs (-want +got):\n%s", diff)
				}
				if !r.hasCall("scheduler jobs create pubsub iapguard-sweep-_f10", `"scope":"folders/10"`) {
					t.Error("the folder's job does not publish a sweep request for folders/10")
				}
				if r.hasCall("resource-manager folders list") || r.hasCall("iapguard-sweep-ops-tools") || r.hasCall("iapguard-sweep-deep-one") {
					t.Error("walked the folders, or made a job for a project under a folder entry")
				}
			},
		},
		{
			name: "sweep.folder-entry.single-project", script: "sweep.sh", wantCode: 1, seed: folderWorld,
			env: with(map[string]string{"IAPGUARD_PROJECTS": "team-*,folders/10"}),
			check: func(t *testing.T, r scriptRun) {
				if !strings.Contains(r.stderr, "'folders/10': folder entries need the organisation-wide path (DEPLOY_ORGANIZATION") || len(r.calls) != 0 {
					t.Errorf("a folder entry was not refused on the single-project path, with the way out, before any call: %s", r.stderr)
				}
			},
		},
		{
			name: "service.folder-entry", script: "service.sh", seed: folderWorld,
			env: with(map[string]string{"DEPLOY_IMAGE": "img", "IAPGUARD_PROJECTS": folderScope, "DEPLOY_ORGANIZATION": "42"}),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("run deploy", "|IAPGUARD_PROJECTS=demo-project,123456789012,100000000006,team-a,100000000001,team-*,folders/10,folders/20|") {
					t.Errorf("the function's scope is not the listed entries with numbers, the pattern and the folder entries as written:\n%s", strings.Join(r.joined(), "\n"))
				}
				if r.hasCall("resource-manager folders list") || r.hasCall("parent.id:") {
					t.Error("the function's deployment expanded the folders; the function resolves them itself")
				}
			},
		},
		{
			name: "identity.folder-entry", script: "identity.sh", seed: folderWorld,
			env: with(map[string]string{"IAPGUARD_PROJECTS": folderScope, "DEPLOY_ORGANIZATION": "42"}),
			check: func(t *testing.T, r scriptRun) {
				for _, n := range []string{"100000000002", "100000000003", "100000000004"} {
					if !r.hasCall("iam service-accounts add-iam-policy-binding "+n+"-compute@developer.gserviceaccount.com", "--role=roles/iam.serviceAccountUser") {
						t.Errorf("no actAs grant on the default runtime account of the folder project numbered %s", n)
					}
				}
				if r.hasCall("100000000005-compute") || r.hasCall("iam roles") {
					t.Error("actAs on a project outside the folders, or a per-project role on the organisation-wide path")
				}
			},
		},
		{
			name: "enable-apis.folder-entry", script: "enable-apis.sh", seed: folderWorld,
			env: with(map[string]string{"IAPGUARD_PROJECTS": "folders/20", "DEPLOY_ORGANIZATION": "42"}),
			check: func(t *testing.T, r scriptRun) {
				for _, p := range []string{"deep-one", "numbered", "deeper-two"} {
					if !r.hasCall("services enable --project=" + p + " iap.googleapis.com") {
						t.Errorf("IAP API not enabled in %s, under folders/20", p)
					}
				}
				if r.hasCall("--project=team-a") {
					t.Error("IAP API enabled in a project above the folder entry")
				}
			},
		},
		{
			name: "enable-apis.bad-entry", script: "enable-apis.sh", wantCode: 1,
			env: with(map[string]string{"IAPGUARD_PROJECTS": "team-[ab]"}),
			check: func(t *testing.T, r scriptRun) {
				if !strings.Contains(r.stderr, "only * is a wildcard") || len(r.calls) != 0 {
					t.Errorf("an entry the function refuses was not refused before any call: %s", r.stderr)
				}
			},
		},
		{
			name: "org.single-project", script: "org.sh", env: base,
			check: func(t *testing.T, r scriptRun) {
				if len(r.calls) != 0 {
					t.Errorf("single-project deployment made %d calls", len(r.calls))
				}
			},
		},
		{
			name: "org.folder.fresh", script: "org.sh", env: with(orgEnv(t, "folders/987")),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("iam roles create "+iamperm.FunctionRoleID, "--organization=42", "deploy/iam/iapguard-enforcer.yaml") {
					t.Error("no organisation-level role")
				}
				if !r.hasCall("resource-manager folders add-iam-policy-binding 987", "--role=organizations/42/roles/"+iamperm.FunctionRoleID,
					"--member=serviceAccount:iapguard-enforcer@demo-project.iam.gserviceaccount.com") {
					t.Error("role not granted to the enforcer on the folder")
				}
				if !r.hasCall("logging sinks create "+LogSinkName+" pubsub.googleapis.com/projects/demo-project/topics/iapguard-replay",
					"--folder=987", "--include-children", `--log-filter=logName:"cloudaudit.googleapis.com%2Factivity" AND`) {
					t.Error("no folder sink with children and the filter to the replay topic")
				}
				if !r.hasCall("pubsub topics add-iam-policy-binding iapguard-replay", "--member=serviceAccount:service-org-42@gcp-sa-logging", "roles/pubsub.publisher") {
					t.Error("the sink's writer cannot publish to the replay topic")
				}
			},
		},
		{
			name: "org.folder-entries", script: "org.sh", seed: folderWorld,
			env: with(merge(orgEnv(t, "folders/10"), map[string]string{"IAPGUARD_PROJECTS": "team-*, folders/10, folders/20"})),
			check: func(t *testing.T, r scriptRun) {
				type grant struct{ Folder, Role string }
				var got []grant
				for _, c := range r.calls {
					if strings.HasPrefix(strings.Join(c, " "), "resource-manager folders add-iam-policy-binding ") {
						if !slices.Contains(c, "--member=serviceAccount:iapguard-enforcer@demo-project.iam.gserviceaccount.com") || !slices.Contains(c, "--condition=None") {
							t.Errorf("folder grant not to the enforcer, or not unconditional: %v", c)
						}
						for _, a := range c {
							if role, ok := strings.CutPrefix(a, "--role="); ok {
								got = append(got, grant{c[3], role})
							}
						}
					}
				}
				role := "organizations/42/roles/" + iamperm.FunctionRoleID
				// The sink's parent gets the role once; each folder entry
				// roles/browser, and the role unless it is the parent.
				want := []grant{{"10", role}, {"10", "roles/browser"}, {"20", role}, {"20", "roles/browser"}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("folder grants (-want +got):\n%s", diff)
				}
				if r.hasCall(" list") {
					t.Error("org.sh listed folders or projects; it grants on the folder entries as written")
				}
			},
		},
		{
			name: "org.organization.folder-entry", script: "org.sh",
			env: with(merge(orgEnv(t, ""), map[string]string{"IAPGUARD_PROJECTS": "folders/20"})),
			check: func(t *testing.T, r scriptRun) {
				if !r.hasCall("organizations add-iam-policy-binding 42", "--role=organizations/42/roles/"+iamperm.FunctionRoleID) ||
					!r.hasCall("resource-manager folders add-iam-policy-binding 20", "--role=organizations/42/roles/"+iamperm.FunctionRoleID) ||
					!r.hasCall("resource-manager folders add-iam-policy-binding 20", "--role=roles/browser") {
					t.Errorf("role not granted on the organisation and on the folder entry, or no roles/browser there:\n%s", strings.Join(r.joined(), "\n"))
				}
			},
		},
		{
			name: "org.bad-folder-entry", script: "org.sh", wantCode: 1,
			env: with(merge(orgEnv(t, ""), map[string]string{"IAPGUARD_PROJECTS": "folders/team"})),
			check: func(t *testing.T, r scriptRun) {
				if len(r.calls) != 0 || !strings.Contains(r.stderr, "'folders/team' is not a folder entry (want folders/NUMERIC_ID)") {
					t.Errorf("bad folder entry not refused before any call: %s", r.stderr)
				}
			},
		},
		{
			name: "org.organization.existing", script: "org.sh", env: with(orgEnv(t, "")),
			seed: []string{"iam roles|organizations/42|-|iapguardEnforcer", "logging sinks|organizations/42|-|iapguard-audit"},
			check: func(t *testing.T, r scriptRun) {
				if r.hasCall("create") {
					t.Error("existing role or sink created again")
				}
				if !r.hasCall("logging sinks update "+LogSinkName, "--organization=42", "--log-filter=") ||
					!r.hasCall("organizations add-iam-policy-binding 42", "--role=organizations/42/roles/"+iamperm.FunctionRoleID) {
					t.Error("organisation sink not updated or role not granted on the organisation")
				}
			},
		},
		{
			name: "org.bad-parent", script: "org.sh", wantCode: 1, env: with(orgEnv(t, "projects/demo-project")),
			check: func(t *testing.T, r scriptRun) {
				if len(r.calls) != 0 || !strings.Contains(r.stderr, "want folders/ID") {
					t.Errorf("bad parent not refused before any call: %s", r.stderr)
				}
			},
		},
		{
			name: "org.no-filter", script: "org.sh", wantCode: 1,
			env: with(map[string]string{"DEPLOY_ORGANIZATION": "42", "DEPLOY_LOG_FILTER_FILE": "/nonexistent/log-filter.txt"}),
			check: func(t *testing.T, r scriptRun) {
				if len(r.calls) != 0 || !strings.Contains(r.stderr, "--format=log-filter") {
					t.Errorf("missing filter not refused before any call: %s", r.stderr)
				}
			},
		},
		{name: "dead-letter.existing", script: "dead-letter.sh", env: base, seed: existingWorld},
		{name: "dead-letter.none", script: "dead-letter.sh", env: base, wantCode: 1},
		{
			name: "missing-project", script: "identity.sh", env: map[string]string{}, wantCode: 1,
			check: func(t *testing.T, r scriptRun) {
				if !strings.Contains(r.stderr, "DEPLOY_PROJECT is not set") || len(r.calls) != 0 {
					t.Errorf("stderr %q, %d gcloud calls; want a refusal before any call", r.stderr, len(r.calls))
				}
			},
		},
		{
			name: "triggers.fresh", script: "-", stdin: triggerScript, env: base,
			check: func(t *testing.T, r scriptRun) {
				if n := strings.Count(strings.Join(r.joined(), "\n"), "eventarc triggers create"); n != 4 {
					t.Errorf("%d triggers created, want 4", n)
				}
			},
		},
		{
			// A fresh project's Eventarc service agent refuses the first
			// creations (terraform-provider-google issue 14584): retried.
			name: "triggers.agent-race", script: "-", stdin: triggerScript,
			env: with(map[string]string{"DEPLOY_RETRY_DELAY": "0", "FAKE_GCLOUD_FAIL": "eventarc triggers create iapguard-run-v2-update=2"}),
			check: func(t *testing.T, r scriptRun) {
				if n := strings.Count(strings.Join(r.joined(), "\n"), "eventarc triggers create iapguard-run-v2-update "); n != 3 {
					t.Errorf("the refused trigger was tried %d times, want 3 (two refusals, then success)", n)
				}
				if !slices.Contains(r.state, "eventarc triggers|demo-project|us-central1|iapguard-run-v2-update") {
					t.Error("trigger not created after the retries")
				}
			},
		},
		{
			name: "triggers.agent-race.gives-up", script: "-", stdin: triggerScript, wantCode: 1,
			env: with(map[string]string{"DEPLOY_RETRY_DELAY": "0", "DEPLOY_RETRY_ATTEMPTS": "2", "FAKE_GCLOUD_FAIL": "eventarc triggers create iapguard-run-v2-update=always"}),
			check: func(t *testing.T, r scriptRun) {
				if !strings.Contains(r.stderr, "failed 2 times") || r.hasCall("eventarc triggers create iapguard-lb-patch") {
					t.Errorf("a required trigger that keeps failing did not stop the script after 2 attempts: %s", r.stderr)
				}
			},
		},
		{
			// Eventarc refuses a method outside its catalog: a warning, and
			// every required trigger (the replay one included) exists.
			name: "triggers.optional-refused", script: "-", stdin: triggerScript,
			env: with(map[string]string{"FAKE_GCLOUD_FAIL": "alpha.compute=always"}),
			check: func(t *testing.T, r scriptRun) {
				for _, want := range []string{"us-central1|iapguard-run-v2-update", "global|iapguard-lb-patch", "us-central1|iapguard-replay"} {
					if !slices.Contains(r.state, "eventarc triggers|demo-project|"+want) {
						t.Errorf("required trigger %s missing after an optional one was refused", want)
					}
				}
				if !strings.Contains(r.stderr, "warning: Eventarc refused optional trigger iapguard-alpha-patch") {
					t.Errorf("no warning for the refused optional trigger: %s", r.stderr)
				}
				if r.hasCall("describe iapguard-alpha-patch", "transport.pubsub.subscription") {
					t.Error("dead-letter policy looked up for a trigger that was not created")
				}
			},
		},
		{
			name: "triggers.existing", script: "-", stdin: triggerScript, env: base, seed: existingWorld,
			check: func(t *testing.T, r scriptRun) {
				if r.hasCall("eventarc triggers create iapguard-run-v2-update") || r.hasCall("eventarc triggers create iapguard-replay") {
					t.Error("existing triggers created again")
				}
				if !r.hasCall("eventarc triggers update iapguard-run-v2-update", "--event-filters=methodName=google.cloud.run.v2.Services.UpdateService") {
					t.Error("an existing trigger's filters are not updated in place")
				}
				if !r.hasCall("eventarc triggers delete iapguard-retired-trigger", "--location=global") {
					t.Error("retired trigger not pruned")
				}
				// Moved from the region to global: the regional copy goes.
				if !r.hasCall("eventarc triggers delete iapguard-lb-patch", "--location=us-central1") ||
					r.hasCall("eventarc triggers delete iapguard-run-v2-update") {
					t.Errorf("the old location's copy of a moved trigger is not pruned, or a current trigger was:\n%s", strings.Join(r.joined(), "\n"))
				}
				if r.hasCall("delete someone-elses-trigger") {
					t.Error("pruned a trigger iapguard does not own")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := tc.script
			if script != "-" {
				script = scriptPath(t, script)
			}
			r := runScript(t, script, tc.stdin, tc.env, tc.seed)
			if r.code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; output:\n%s", r.code, tc.wantCode, r.stderr)
			}
			for _, c := range r.joined() {
				for _, forbidden := range []string{"allUsers", "allAuthenticatedUsers", "roles/owner", "roles/editor"} {
					if strings.Contains(c, forbidden) {
						t.Errorf("call grants %s: %s", forbidden, c)
					}
				}
				if strings.HasPrefix(c, "projects add-iam-policy-binding") && strings.Contains(c, "serviceAccountUser") {
					t.Errorf("actAs granted project-wide: %s", c)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			checkGolden(t, filepath.Join("testdata", "scripts", tc.name+".golden"), "the gcloud calls the script makes", []byte(r.transcript(t)))
		})
	}
}

// TestTriggerScriptForRealDefinitions runs the script rendered from
// eventarc/triggers.yaml against the fake gcloud: every trigger is created
// in the location its definition asks for.
func TestTriggerScriptForRealDefinitions(t *testing.T) {
	ts := liveTriggers(t)
	script, err := gcloudTriggerScript(testConfig, ts)
	if err != nil {
		t.Fatal(err)
	}
	r := runScript(t, "-", script, nil, nil)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	for _, tr := range ts {
		loc := testConfig.Region
		if tr.Location == "global" {
			loc = "global"
		}
		if !slices.Contains(r.state, "eventarc triggers|demo-project|"+loc+"|iapguard-"+tr.Name) {
			t.Errorf("trigger %s not created in %s", tr.Name, loc)
		}
	}
	if n := strings.Count(strings.Join(r.joined(), "\n"), "--dead-letter-topic=projects/demo-project/topics/"+DeadLetterTopic); n != len(ts) {
		t.Errorf("dead-letter policy set %d times, want %d", n, len(ts))
	}
}

// TestScriptConstants keeps deploy/scripts/lib.sh in step with the Go
// constants, the role id and eventarc/triggers.yaml.
func TestScriptConstants(t *testing.T) {
	lib := string(readRepoFile(t, "deploy/scripts/lib.sh"))
	var replay string
	for _, tr := range liveTriggers(t) {
		if tr.EventType == eventarc.MessagePublished {
			replay = tr.Topic
		}
	}
	for name, want := range map[string]string{
		"ENTRY_POINT":       EntryPoint,
		"OUTCOMES_TOPIC":    OutcomesTopic,
		"REPLAY_TOPIC":      replay,
		"DEAD_LETTER_TOPIC": DeadLetterTopic,
		"OUTCOME_SCHEMA":    OutcomeSchema,
		"ENFORCER_ACCOUNT":  EnforcerAccount,
		"TRIGGER_ACCOUNT":   TriggerAccount,
		"ENFORCER_ROLE":     iamperm.FunctionRoleID,
		"SINK_NAME":         LogSinkName,
	} {
		if line := "readonly " + name + "=" + want + "\n"; !strings.Contains(lib, line) {
			t.Errorf("lib.sh lacks %q", strings.TrimSpace(line))
		}
	}
	for _, s := range []string{"identity.sh", "pubsub.sh", "service.sh", "sweep.sh", "dead-letter.sh", "registry.sh", "enable-apis.sh", "go-test.sh", "org.sh"} {
		fi, err := os.Stat(scriptPath(t, s))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("deploy/scripts/%s is not executable", s)
		}
	}
}
