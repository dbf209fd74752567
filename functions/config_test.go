package functions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/logx"
)

func TestConfigFromEnv(t *testing.T) {
	base := map[string]string{EnvProject: "p", EnvOutcomesTopic: "iapguard-outcomes"}
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{
			name: "defaults",
			env:  base,
			want: Config{Project: "p", ReplayTopic: DefaultReplayTopic, Discovery: "auto", Projects: []string{"p"}, OutcomesTopic: "iapguard-outcomes", LogLevel: slog.LevelInfo, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour, MaxConcurrent: DefaultMaxConcurrent},
		},
		{
			name: "everything set",
			env: map[string]string{
				EnvProject: "p", EnvOutcomesTopic: "projects/p/topics/outcomes", EnvProjects: " a, b ,,123 ", EnvDryRun: "true",
				EnvLogLevel: "debug", EnvTimeout: "10s", EnvMaxEventAge: "1h", EnvEmulatorHost: "127.0.0.1:1", EnvPrincipal: "me@example.com",
				EnvMaxConcurrent: " 7 ", EnvReplayTopic: "projects/p/topics/replays", EnvDiscovery: "regions",
			},
			want: Config{
				Project: "p", ReplayTopic: "projects/p/topics/replays", Discovery: "regions", Projects: []string{"a", "b", "123"}, OutcomesTopic: "projects/p/topics/outcomes", DryRun: true,
				LogLevel: slog.LevelDebug, Timeout: 10 * time.Second, MaxEventAge: time.Hour, EmulatorHost: "127.0.0.1:1", Principal: "me@example.com",
				MaxConcurrent: 7,
			},
		},
		{
			name: "patterns in the allowlist",
			env:  with(base, EnvProjects, "team-*, 123456789012,legacy"),
			want: Config{Project: "p", ReplayTopic: DefaultReplayTopic, Discovery: "auto", Projects: []string{"team-*", "123456789012", "legacy"}, OutcomesTopic: "iapguard-outcomes", LogLevel: slog.LevelInfo, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour, MaxConcurrent: DefaultMaxConcurrent},
		},
		{
			name: "no admission cap",
			env:  with(base, EnvMaxConcurrent, "0"),
			want: Config{Project: "p", ReplayTopic: DefaultReplayTopic, Discovery: "auto", Projects: []string{"p"}, OutcomesTopic: "iapguard-outcomes", LogLevel: slog.LevelInfo, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour},
		},
		{name: "organization in the allowlist", env: with(base, EnvProjects, "organizations/123"), wantErr: EnvProjects},
		{name: "malformed folder in the allowlist", env: with(base, EnvProjects, "folders/abc"), wantErr: EnvProjects},
		{name: "glob syntax other than *", env: with(base, EnvProjects, "team-?"), wantErr: "only '*' is a wildcard"},
		{name: "no project", env: map[string]string{EnvOutcomesTopic: "iapguard-outcomes"}, wantErr: EnvProject},
		{name: "log level not a level", env: with(base, EnvLogLevel, "loud"), wantErr: EnvLogLevel + `="loud": want debug, info, warning or error`},
		{name: "allowlist of commas", env: with(base, EnvProjects, ","), wantErr: EnvProjects + `="," names no project`},
		{name: "topic path of the wrong shape", env: with(base, EnvOutcomesTopic, "projects/x/y"), wantErr: EnvOutcomesTopic + `="projects/x/y"`},
		{name: "topic id with a space", env: with(base, EnvOutcomesTopic, "my topic"), wantErr: EnvOutcomesTopic},
		{name: "project with a slash", env: with(base, EnvProject, "projects/p"), wantErr: EnvProject + `="projects/p"`},
		{name: "emulator host without a port", env: with(base, EnvEmulatorHost, "localhost"), wantErr: EnvEmulatorHost},
		{name: "no topic", env: map[string]string{EnvProject: "p"}, wantErr: EnvOutcomesTopic},
		{name: "bad dry run", env: with(base, EnvDryRun, "maybe"), wantErr: EnvDryRun},
		{name: "bad timeout", env: with(base, EnvTimeout, "soon"), wantErr: EnvTimeout},
		{name: "negative age", env: with(base, EnvMaxEventAge, "-1h"), wantErr: EnvMaxEventAge},
		{name: "negative cap", env: with(base, EnvMaxConcurrent, "-1"), wantErr: EnvMaxConcurrent},
		{name: "unknown discovery mode", env: with(base, EnvDiscovery, "guess"), wantErr: EnvDiscovery},
		{name: "bad replay topic", env: with(base, EnvReplayTopic, "projects/x/y"), wantErr: EnvReplayTopic},
		{name: "cap not a number", env: with(base, EnvMaxConcurrent, "lots"), wantErr: EnvMaxConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ConfigFromEnv() error = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ConfigFromEnv() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// TestConfigFromEnvReportsEveryProblem: a deployment with several mistakes
// learns all of them from one start, not one per redeploy.
func TestConfigFromEnvReportsEveryProblem(t *testing.T) {
	env := map[string]string{
		EnvLogLevel: "loud", EnvProjects: ",", EnvDryRun: "maybe", EnvTimeout: "soon",
		EnvMaxConcurrent: "lots", EnvAccessPolicies: "/nonexistent/policies.yaml",
	}
	_, err := ConfigFromEnv(func(k string) string { return env[k] })
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("ConfigFromEnv() error = %v, want a *ConfigError", err)
	}
	want := []string{EnvProject, EnvProjects, EnvOutcomesTopic, EnvDryRun, EnvLogLevel, EnvTimeout, EnvMaxConcurrent, EnvAccessPolicies}
	if len(ce.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d (one per variable):\n%s", len(ce.Problems), len(want), strings.Join(ce.Problems, "\n"))
	}
	for i, name := range want {
		if !strings.HasPrefix(ce.Problems[i], name) {
			t.Errorf("problem %d = %q, want one about %s", i, ce.Problems[i], name)
		}
	}
	if !strings.Contains(err.Error(), "8 problems") {
		t.Errorf("error = %q, want it to count the problems", err)
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for kk, vv := range m {
		if kk != k {
			out[kk] = vv
		}
	}
	return out
}

// TestLogConfigLogsOneJSONEntry: the start-up check writes exactly one
// JSON entry with Cloud Logging's field names: ERROR with every problem, or
// INFO with the settings.
func TestLogConfigLogsOneJSONEntry(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantSeverity string
		wantProblems int
	}{
		{"nothing set", map[string]string{}, "ERROR", 2},
		{"three mistakes", map[string]string{EnvProject: "p", EnvOutcomesTopic: "projects/x/y", EnvLogLevel: "loud", EnvProjects: ","}, "ERROR", 3},
		{"valid", map[string]string{EnvProject: "p", EnvOutcomesTopic: "iapguard-outcomes"}, "INFO", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			cfg, err := ConfigFromEnv(func(k string) string { return tt.env[k] })
			if lerr := logConfig(logx.New(&buf, slog.LevelDebug), cfg, err); lerr != err || (err != nil) != (tt.wantProblems > 0) {
				t.Fatalf("logConfig() = %v, ConfigFromEnv error = %v", lerr, err)
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("got %d log lines, want 1:\n%s", len(lines), buf.String())
			}
			var entry struct {
				Severity string   `json:"severity"`
				Message  string   `json:"message"`
				Problems []string `json:"problems"`
			}
			if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, lines[0])
			}
			if entry.Severity != tt.wantSeverity || len(entry.Problems) != tt.wantProblems {
				t.Errorf("severity %q with %d problems, want %q with %d: %s", entry.Severity, len(entry.Problems), tt.wantSeverity, tt.wantProblems, lines[0])
			}
			for _, p := range entry.Problems {
				if !strings.Contains(entry.Message, p) {
					t.Errorf("message %q does not name problem %q", entry.Message, p)
				}
			}
		})
	}
}

// The validators' length limits, checked apart from their expressions.
func TestValidProjectAndTopicLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{strings.Repeat("p", 30), true},
		{strings.Repeat("p", 31), false},
		{"example.com:" + strings.Repeat("p", 30), true},
		{"example.com:" + strings.Repeat("p", 31), false},
		{"123456789012", true},
		{"-p", false},
		{"p-", false}, // Google refuses a trailing hyphen (event.ValidProject)
		{"p", true},
		{"", false},
		{":p", false},
		{"Pp", false},
		{"a:b:c", false},
	} {
		if got := event.ValidProject(tc.s); got != tc.want {
			t.Errorf("event.ValidProject(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"abc", true},
		{"ab", false},
		{"a" + strings.Repeat("b", 254), true},
		{"a" + strings.Repeat("b", 255), false},
		{"projects/p/topics/a" + strings.Repeat("b", 254), true},
		{"projects/p/topics/a" + strings.Repeat("b", 255), false},
		{"projects/p/topics/ab", false},
		{"1abc", false},
		{"goog-x", false},
		{"a-._~+%b", true},
		{"a/b", false},
	} {
		if got := validTopic(tc.s); got != tc.want {
			t.Errorf("validTopic(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestConfigScopeFile: the scope can come from a file (a mounted secret),
// for scopes longer than Cloud Run allows an environment variable.
func TestConfigScopeFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Over the Cloud Run limit as a variable: 1,500 projects.
	var long strings.Builder
	long.WriteString("# the scope\n")
	for i := range 1500 {
		fmt.Fprintf(&long, "team-%04d-production-project, %d\n", i, 100000000000+i)
	}
	good := write("projects", long.String())
	base := map[string]string{"GOOGLE_CLOUD_PROJECT": "host", "IAPGUARD_OUTCOMES_TOPIC": "outcomes"}
	env := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		}
	}
	c, err := ConfigFromEnv(env(map[string]string{EnvProjectsFile: good}))
	if err != nil {
		t.Fatalf("scope file refused: %v", err)
	}
	if len(long.String()) <= 32768 || len(c.Projects) != 3000 || c.Projects[0] != "team-0000-production-project" || c.Projects[1] != "100000000000" {
		t.Errorf("scope from a %d-byte file: %d entries, first %v", len(long.String()), len(c.Projects), c.Projects[:2])
	}
	for _, tc := range []struct {
		name  string
		extra map[string]string
		want  string
	}{
		{"both", map[string]string{EnvProjectsFile: good, EnvProjects: "a"}, "IAPGUARD_PROJECTS and IAPGUARD_PROJECTS_FILE are both set"},
		{"missing", map[string]string{EnvProjectsFile: filepath.Join(dir, "nope")}, "IAPGUARD_PROJECTS_FILE: reading the scope"},
		{"bad entry", map[string]string{EnvProjectsFile: write("bad", "team-[ab]\n")}, "IAPGUARD_PROJECTS_FILE " + filepath.Join(dir, "bad")},
		{"empty", map[string]string{EnvProjectsFile: write("empty", "# nothing\n")}, "names no project"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ConfigFromEnv(env(tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestConfigReadOnceAtStart: on Cloud Run the configuration is read and
// validated once, at start (ReportConfig), and the instance built on the
// first event uses that reading: a scope file removed after start does not
// turn the first event into a configuration error. The only test that
// touches the process-wide start-up state (fromEnv, enforceIAP).
func TestConfigReadOnceAtStart(t *testing.T) {
	scope := filepath.Join(t.TempDir(), "scope")
	if err := os.WriteFile(scope, []byte("p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		EnvProject: "p", EnvOutcomesTopic: "iapguard-outcomes", EnvProjectsFile: scope, EnvProjects: "",
		EnvEmulatorHost: "127.0.0.1:1", EnvPubSubHost: "", EnvAccessPolicies: "", EnvRecordKey: "", EnvLogLevel: "error",
	} {
		t.Setenv(k, v)
	}
	if err := ReportConfig(); err != nil {
		t.Fatalf("ReportConfig() = %v", err)
	}
	if err := os.Remove(scope); err != nil {
		t.Fatal(err)
	}
	// Not a CloudEvent: answered 400 once the handler is built, 500 if
	// building it fails.
	w := httptest.NewRecorder()
	EnforceIAP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")))
	if w.Code != http.StatusBadRequest {
		t.Errorf("first request answered %d (%s), want 400: the handler was not built from the configuration read at start", w.Code, strings.TrimSpace(w.Body.String()))
	}
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "WARNING": slog.LevelWarn, "warn": slog.LevelWarn, "Error": slog.LevelError, " info ": slog.LevelInfo} {
		if got, ok := parseLogLevel(in); !ok || got != want {
			t.Errorf("parseLogLevel(%q) = %v, %v, want %v", in, got, ok, want)
		}
	}
	if _, ok := parseLogLevel("bogus"); ok {
		t.Error(`parseLogLevel("bogus") accepted`)
	}
}
