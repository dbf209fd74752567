package deploy

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/iamperm"
)

// TestGeneratedFilesUpToDate is what keeps eventarc/triggers.yaml and
// internal/iamperm the single sources of truth: every committed file
// rendered from them must equal a fresh rendering. After changing either,
// run go test ./internal/deploy -update (or the iapctl deploy command named
// in each file).
func TestGeneratedFilesUpToDate(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		path   string
		render func() ([]byte, error)
	}{
		{"deploy/terraform/generated/triggers.json", TerraformTriggersJSON},
		{"deploy/terraform/generated/enforcer-role.json", func() ([]byte, error) { return TerraformRoleJSON(iamperm.WhoFunction) }},
		// The Terraform module's organisation-wide sink reads it.
		{"deploy/terraform/generated/log-filter.txt", func() ([]byte, error) { f, err := LogSinkFilter(); return []byte(f + "\n"), err }},
		{"deploy/iam/iapguard-enforcer.yaml", func() ([]byte, error) { return roleYAML(iamperm.WhoFunction) }},
		{"deploy/iam/iapguard-operator.yaml", func() ([]byte, error) { return roleYAML(iamperm.WhoOperator) }},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := tc.render()
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join(root, tc.path), "its sources (eventarc/triggers.yaml, internal/iamperm)", got)
		})
	}
}

func roleYAML(who string) ([]byte, error) {
	r, err := iamperm.CustomRole(who)
	if err != nil {
		return nil, err
	}
	y, err := r.YAML()
	if err != nil {
		return nil, err
	}
	header := "# Generated from internal/iamperm by `iapctl deploy role --who=" + who + "`; do not edit.\n" +
		"# gcloud iam roles create " + r.ID + " --project=PROJECT --file=THIS_FILE\n"
	return append([]byte(header), y...), nil
}

func TestTerraformTriggers(t *testing.T) {
	ts := syntheticTriggers(t)
	m, err := TerraformTriggers(ts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]TerraformTrigger{
		"run-v2-update": {Location: "region", EventType: eventarc.AuditLogWritten, ServiceName: "run.googleapis.com",
			MethodName: "google.cloud.run.v2.Services.UpdateService", Description: "Cloud Run Admin API v2 UpdateService"},
		"lb-patch": {Location: "global", EventType: eventarc.AuditLogWritten, ServiceName: "compute.googleapis.com",
			MethodName: "v1.compute.backendServices.patch", ResourceNamePattern: "projects/*/global/backendServices/*",
			Description: "global backend service patch (path pattern)"},
		"alpha-patch": {Location: "global", Optional: true, EventType: eventarc.AuditLogWritten, ServiceName: "compute.googleapis.com",
			MethodName: "alpha.compute.backendServices.patch", Description: "global backend service patch (alpha API, optional)"},
		"replay": {Location: "region", EventType: eventarc.MessagePublished, Topic: "iapguard-replay", Description: "replay messages"},
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("TerraformTriggers (-want +got):\n%s", diff)
	}

	// Every attribute is present in the JSON: Terraform object types need them.
	b, err := terraformTriggersJSON(ts)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Triggers map[string]map[string]any `json:"triggers"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Triggers) != len(want) {
		t.Errorf("the JSON has %d triggers, want %d", len(doc.Triggers), len(want))
	}
	for name, attrs := range doc.Triggers {
		for _, k := range []string{"location", "optional", "event_type", "service_name", "method_name", "resource_name_pattern", "topic", "description"} {
			if _, ok := attrs[k]; !ok {
				t.Errorf("trigger %s lacks %q in the JSON", name, k)
			}
		}
	}

	dup := append(ts[:1:1], ts[0])
	if _, err := TerraformTriggers(dup); err == nil {
		t.Error("duplicate trigger names accepted")
	}
	if _, err := TerraformTriggers(nil); err == nil {
		t.Error("no triggers accepted")
	}
}

func TestTerraformRoleJSON(t *testing.T) {
	b, err := TerraformRoleJSON(iamperm.WhoFunction)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		RoleID      string   `json:"role_id"`
		Stage       string   `json:"stage"`
		Permissions []string `json:"permissions"`
		Resource    []string `json:"resource_scoped_permissions"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	r, err := iamperm.CustomRole(iamperm.WhoFunction)
	if err != nil {
		t.Fatal(err)
	}
	if got.RoleID != iamperm.FunctionRoleID || got.Stage != "GA" {
		t.Errorf("role id %q stage %q", got.RoleID, got.Stage)
	}
	if diff := cmp.Diff(r.IncludedPermissions, got.Permissions); diff != "" {
		t.Errorf("permissions (-role +json):\n%s", diff)
	}
	// The Resource Manager reads of folder scopes are granted on the listed
	// folders, never in the role.
	want := []string{"iam.serviceAccounts.actAs", "pubsub.topics.publish", "resourcemanager.folders.get", "resourcemanager.projects.get"}
	if diff := cmp.Diff(want, got.Resource); diff != "" {
		t.Errorf("resource-scoped permissions (-want +got):\n%s", diff)
	}
	if _, err := TerraformRoleJSON("root"); err == nil {
		t.Error(`TerraformRoleJSON("root") succeeded`)
	}
}

func TestLogSinkFilter(t *testing.T) {
	got, err := logSinkFilter(syntheticTriggers(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `logName:"cloudaudit.googleapis.com%2Factivity" AND (` +
		`(protoPayload.serviceName="compute.googleapis.com" AND protoPayload.methodName=("alpha.compute.backendServices.patch" OR "v1.compute.backendServices.patch")) OR ` +
		`(protoPayload.serviceName="run.googleapis.com" AND protoPayload.methodName=("google.cloud.run.v2.Services.UpdateService")))`
	if got != want {
		t.Errorf("logSinkFilter =\n%s\nwant\n%s", got, want)
	}
	live, err := LogSinkFilter()
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range eventarc.AuditLogTriggers(liveTriggers(t)) {
		if !strings.Contains(live, `"`+tr.MethodName+`"`) {
			t.Errorf("log sink filter misses %s", tr.MethodName)
		}
	}
	if _, err := logSinkFilter(nil); err == nil {
		t.Error("filter rendered without audit-log triggers")
	}
}
