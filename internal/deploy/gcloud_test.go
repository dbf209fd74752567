package deploy

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iapguard/iapguard/eventarc"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; empty means valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "domain-scoped project", mutate: func(c *Config) { c.Project = "example.com:my-project" }},
		{name: "custom prefix, topic, attempts", mutate: func(c *Config) {
			c.TriggerPrefix, c.DeadLetterTopic, c.MaxDeliveryAttempts = "ig-", "my-dlq", 100
		}},
		{name: "empty project", mutate: func(c *Config) { c.Project = "" }, wantErr: "project"},
		{name: "upper-case project", mutate: func(c *Config) { c.Project = "Demo-Project" }, wantErr: "project"},
		{name: "short project", mutate: func(c *Config) { c.Project = "abc" }, wantErr: "project"},
		{name: "region", mutate: func(c *Config) { c.Region = "global" }, wantErr: "region"},
		{name: "service", mutate: func(c *Config) { c.FunctionService = "Enforcer" }, wantErr: "function service"},
		{name: "service account", mutate: func(c *Config) { c.ServiceAccount = "iapguard-trigger" }, wantErr: "service account"},
		{name: "prefix", mutate: func(c *Config) { c.TriggerPrefix = "-x" }, wantErr: "prefix"},
		{name: "reserved topic", mutate: func(c *Config) { c.DeadLetterTopic = "goog-dlq" }, wantErr: "dead-letter topic"},
		{name: "too few attempts", mutate: func(c *Config) { c.MaxDeliveryAttempts = 4 }, wantErr: "5 to 100"},
		{name: "too many attempts", mutate: func(c *Config) { c.MaxDeliveryAttempts = 101 }, wantErr: "5 to 100"},
		{name: "several at once", mutate: func(c *Config) { c.Project, c.Region = "", "" }, wantErr: "region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"us-central1", "us-central1"},
		{"type=google.cloud.audit.log.v1.written", "type=google.cloud.audit.log.v1.written"},
		{"t@p.iam.gserviceaccount.com", "t@p.iam.gserviceaccount.com"},
		{"resourceName=projects/*/global/backendServices/*", "'resourceName=projects/*/global/backendServices/*'"},
		{"it's", `'it'\''s'`},
		{"", "''"},
		{"$(rm -rf /)", "'$(rm -rf /)'"},
	} {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestGcloudTriggerScriptGolden(t *testing.T) {
	script, err := gcloudTriggerScript(testConfig, syntheticTriggers(t))
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata", "synthetic-triggers.sh.golden"), "the rendered trigger script", []byte(script))
	bashSyntax(t, "rendered trigger script", script)
}

// TestGcloudTriggerCommandsMatchDefinitions renders the real definitions and
// checks each command against its trigger, so eventarc/triggers.yaml stays
// the single source of truth without a golden file to regenerate.
func TestGcloudTriggerCommandsMatchDefinitions(t *testing.T) {
	ts := liveTriggers(t)
	cmds, err := gcloudTriggerCommands(testConfig, ts)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != len(ts) {
		t.Fatalf("%d commands for %d triggers", len(cmds), len(ts))
	}
	ordered := requiredFirst(ts)
	for i, tr := range ordered {
		c := cmds[i]
		if i > 0 && ordered[i-1].Optional && !tr.Optional {
			t.Errorf("required trigger %s rendered after an optional one: a refusal must not stop a required trigger", tr.Name)
		}
		loc := "--location=" + testConfig.Region
		if tr.Location == "global" {
			loc = "--location=global"
		}
		want := []string{
			"gcloud eventarc triggers create iapguard-" + tr.Name + " --project=demo-project " + loc + " ",
			"gcloud eventarc triggers update iapguard-" + tr.Name + " --project=demo-project " + loc + " ",
			"--destination-run-region=us-central1",
			"--event-filters=type=" + tr.EventType,
		}
		if tr.Optional {
			want = []string{
				"gcloud eventarc triggers describe iapguard-" + tr.Name + " --project=demo-project " + loc + " ",
				"gcloud eventarc triggers \"$verb\" iapguard-" + tr.Name + " --project=demo-project " + loc + " ",
				"optional_refused iapguard-" + tr.Name,
				"--destination-run-region=us-central1",
				"--event-filters=type=" + tr.EventType,
			}
		}
		switch tr.EventType {
		case eventarc.AuditLogWritten:
			want = append(want, "--event-filters=serviceName="+tr.ServiceName, "--event-filters=methodName="+tr.MethodName)
			if strings.Contains(c, "--transport-topic") {
				t.Errorf("%s: audit-log trigger with a transport topic", tr.Name)
			}
		case eventarc.MessagePublished:
			want = append(want, "--transport-topic=projects/demo-project/topics/"+tr.Topic)
		}
		if tr.ResourceNamePattern != "" {
			want = append(want, "--event-filters-path-pattern=")
		}
		for _, w := range want {
			if !strings.Contains(c, w) {
				t.Errorf("command for %s lacks %q:\n%s", tr.Name, w, c)
			}
		}
		if tr.Optional {
			continue
		}
		// Filters are updated in place (gcloud eventarc triggers update
		// takes --event-filters); the transport topic cannot be.
		upd := c[strings.Index(c, "triggers update"):strings.Index(c, "else")]
		if !strings.Contains(upd, "--event-filters=type="+tr.EventType) || strings.Contains(upd, "--transport-topic") {
			t.Errorf("%s: update does not set the event filters in place, or passes a transport topic:\n%s", tr.Name, upd)
		}
		if !strings.Contains(c, "retry gcloud eventarc triggers create") {
			t.Errorf("%s: a required trigger's create is not retried:\n%s", tr.Name, c)
		}
	}
	script, err := gcloudTriggerScript(testConfig, ts)
	if err != nil {
		t.Fatal(err)
	}
	bashSyntax(t, "trigger script for eventarc/triggers.yaml", script)
}

func TestGcloudTriggerErrors(t *testing.T) {
	long := testConfig
	long.TriggerPrefix = strings.Repeat("x", 50) + "-"
	if _, err := gcloudTriggerCommands(long, syntheticTriggers(t)); err == nil || !strings.Contains(err.Error(), "63") {
		t.Errorf("a 60+ character trigger id rendered (err %v), want an error", err)
	}
	bad := testConfig
	bad.Region = ""
	if _, err := gcloudTriggerScript(bad, syntheticTriggers(t)); err == nil {
		t.Error("rendered with an empty region, want an error")
	}
	if _, err := gcloudTriggerCommands(testConfig, nil); err == nil {
		t.Error("rendered no triggers without an error")
	}
}

// bashSyntax fails the test when bash -n rejects script.
func bashSyntax(t *testing.T, what, script string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("bash -n rejects the %s: %v\n%s", what, err, out)
	}
}
