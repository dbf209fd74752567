package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/deploy"
	"github.com/iapguard/iapguard/internal/iamperm"
)

// runIapctl runs iapctl in-process and returns the exit code and outputs.
func runIapctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(t.Context(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDeployRole(t *testing.T) {
	fnRole, err := iamperm.CustomRole(iamperm.WhoFunction)
	if err != nil {
		t.Fatal(err)
	}
	wantYAML, err := fnRole.YAML()
	if err != nil {
		t.Fatal(err)
	}
	wantTF, err := deploy.TerraformRoleJSON(iamperm.WhoOperator)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // exact stdout, when set
		wantErr  string // substring of stderr
		check    func(t *testing.T, out string)
	}{
		{name: "default is the function role as YAML", args: []string{"deploy", "role"}, wantOut: string(wantYAML)},
		{
			name: "operator as JSON",
			args: []string{"deploy", "role", "--who=operator", "--format=json"},
			check: func(t *testing.T, out string) {
				var r iamperm.RoleDefinition
				if err := json.Unmarshal([]byte(out), &r); err != nil {
					t.Fatalf("output is not JSON: %v\n%s", err, out)
				}
				if r.Stage != "GA" || !strings.Contains(strings.Join(r.IncludedPermissions, " "), "logging.logEntries.list") {
					t.Errorf("operator role = %+v, want GA with logging.logEntries.list", r)
				}
			},
		},
		{name: "terraform", args: []string{"deploy", "role", "--who", "operator", "--format", "terraform"}, wantOut: string(wantTF)},
		{name: "unknown principal", args: []string{"deploy", "role", "--who=everyone"}, wantCode: ExitError, wantErr: "--who"},
		{name: "unknown format", args: []string{"deploy", "role", "--format=xml"}, wantCode: ExitError, wantErr: `--format "xml"`},
		{name: "no positional arguments", args: []string{"deploy", "role", "extra"}, wantCode: ExitError, wantErr: "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runIapctl(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("iapctl %v exit code = %d, want %d (stderr %q)", tc.args, code, tc.wantCode, errOut)
			}
			if tc.wantOut != "" {
				if diff := cmp.Diff(tc.wantOut, out); diff != "" {
					t.Errorf("iapctl %v stdout (-want +got):\n%s", tc.args, diff)
				}
			}
			if tc.wantErr != "" && !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("iapctl %v stderr = %q, want it to mention %q", tc.args, errOut, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

func TestDeployRoleYAMLIsGcloudInput(t *testing.T) {
	code, out, errOut := runIapctl(t, "deploy", "role", "--who=function")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not YAML: %v", err)
	}
	for _, k := range []string{"title", "description", "stage", "includedPermissions"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("role YAML lacks %q, which gcloud iam roles create --file reads", k)
		}
	}
	if len(doc) != 4 {
		t.Errorf("role YAML has keys %v, want exactly title, description, stage, includedPermissions", doc)
	}
}

func TestDeployTriggers(t *testing.T) {
	ts, err := eventarc.Load()
	if err != nil {
		t.Fatal(err)
	}
	wantTF, err := deploy.TerraformTriggersJSON()
	if err != nil {
		t.Fatal(err)
	}
	wantFilter, err := deploy.LogSinkFilter()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
		check    func(t *testing.T, out string)
	}{
		{
			name: "gcloud script with defaults",
			args: []string{"deploy", "triggers", "--project=my-project", "--region=europe-west1"},
			check: func(t *testing.T, out string) {
				// Required triggers are created with a retry; optional ones
				// with "$verb" (create or update), a refusal tolerated.
				if n := strings.Count(out, "gcloud eventarc triggers create ") + strings.Count(out, `gcloud eventarc triggers "$verb" `); n != len(ts) {
					t.Errorf("script creates %d triggers, want %d (one per definition)", n, len(ts))
				}
				for _, want := range []string{
					"--service-account=iapguard-trigger@my-project.iam.gserviceaccount.com",
					"--destination-run-service=iapguard-enforcer",
					"--destination-run-region=europe-west1",
					"--dead-letter-topic=projects/my-project/topics/iapguard-dead-letter",
					"--max-delivery-attempts=10",
				} {
					if !strings.Contains(out, want) {
						t.Errorf("script lacks %q", want)
					}
				}
			},
		},
		{
			name: "gcloud script with every flag",
			args: []string{"deploy", "triggers", "--project=p-123456", "--region=us-east4", "--function-service=enf",
				"--service-account=t@p-123456.iam.gserviceaccount.com", "--prefix=ig-", "--dead-letter-topic=dlq", "--max-delivery-attempts=20"},
			check: func(t *testing.T, out string) {
				for _, want := range []string{"--service-account=t@p-123456.iam.gserviceaccount.com", "--destination-run-service=enf",
					"triggers create ig-", "topics/dlq", "--max-delivery-attempts=20", "--location=us-east4"} {
					if !strings.Contains(out, want) {
						t.Errorf("script lacks %q", want)
					}
				}
				if strings.Contains(out, "iapguard-run-") {
					t.Error("script still uses the default prefix")
				}
			},
		},
		{name: "gcloud needs a project", args: []string{"deploy", "triggers", "--region=us-central1"}, wantCode: ExitError, wantErr: "project"},
		{name: "gcloud needs a region", args: []string{"deploy", "triggers", "--project=my-project"}, wantCode: ExitError, wantErr: "region"},
		{
			name: "bad attempts", args: []string{"deploy", "triggers", "--project=my-project", "--region=us-central1", "--max-delivery-attempts=3"},
			wantCode: ExitError, wantErr: "5 to 100",
		},
		{name: "terraform", args: []string{"deploy", "triggers", "--format=terraform"}, wantOut: string(wantTF)},
		{name: "log filter", args: []string{"deploy", "triggers", "--format=log-filter"}, wantOut: wantFilter + "\n"},
		{name: "unknown format", args: []string{"deploy", "triggers", "--format=yaml"}, wantCode: ExitError, wantErr: `--format "yaml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runIapctl(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("iapctl %v exit code = %d, want %d (stderr %q)", tc.args, code, tc.wantCode, errOut)
			}
			if tc.wantOut != "" {
				if diff := cmp.Diff(tc.wantOut, out); diff != "" {
					t.Errorf("iapctl %v stdout (-want +got):\n%s", tc.args, diff)
				}
			}
			if tc.wantErr != "" && !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("iapctl %v stderr = %q, want it to mention %q", tc.args, errOut, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

func TestDeployPermissions(t *testing.T) {
	code, out, errOut := runIapctl(t, "deploy", "permissions")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got, want := len(lines), len(iamperm.Table())+1; got != want {
		t.Errorf("table has %d lines, want %d (header + one per method)", got, want)
	}
	if !strings.HasPrefix(lines[0], "METHOD") || !strings.Contains(out, "iam.serviceAccounts.actAs (on each runtime service account") {
		t.Errorf("unexpected table:\n%s", out)
	}

	code, out, errOut = runIapctl(t, "deploy", "permissions", "--who=operator", "--format=json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rows []struct {
		Method, Who string
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if len(rows) == 0 {
		t.Fatal("no operator rows")
	}
	for _, r := range rows {
		if r.Who != iamperm.WhoOperator {
			t.Errorf("--who=operator printed %s for %s", r.Who, r.Method)
		}
	}

	if code, _, errOut = runIapctl(t, "deploy", "permissions", "--who=root"); code != ExitError || !strings.Contains(errOut, "--who") {
		t.Errorf("--who=root: exit %d stderr %q, want %d mentioning --who", code, errOut, ExitError)
	}
}
