package functions

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
			want: Config{Project: "p", Projects: []string{"p"}, OutcomesTopic: "iapguard-outcomes", LogLevel: slog.LevelInfo, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour, MaxConcurrent: DefaultMaxConcurrent},
		},
		{
			name: "everything set",
			env: map[string]string{
				EnvProject: "p", EnvOutcomesTopic: "projects/p/topics/o", EnvProjects: " a, b ,,123 ", EnvDryRun: "true",
				EnvLogLevel: "debug", EnvTimeout: "10s", EnvMaxEventAge: "1h", EnvEmulatorHost: "127.0.0.1:1", EnvPrincipal: "me@example.com",
				EnvMaxConcurrent: " 7 ",
			},
			want: Config{
				Project: "p", Projects: []string{"a", "b", "123"}, OutcomesTopic: "projects/p/topics/o", DryRun: true,
				LogLevel: slog.LevelDebug, Timeout: 10 * time.Second, MaxEventAge: time.Hour, EmulatorHost: "127.0.0.1:1", Principal: "me@example.com",
				MaxConcurrent: 7,
			},
		},
		{
			name: "patterns in the allowlist",
			env:  with(base, EnvProjects, "team-*, 123456789012,legacy"),
			want: Config{Project: "p", Projects: []string{"team-*", "123456789012", "legacy"}, OutcomesTopic: "iapguard-outcomes", LogLevel: slog.LevelInfo, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour, MaxConcurrent: DefaultMaxConcurrent},
		},
		{
			name: "no admission cap",
			env:  with(base, EnvMaxConcurrent, "0"),
			want: Config{Project: "p", Projects: []string{"p"}, OutcomesTopic: "iapguard-outcomes", LogLevel: slog.LevelInfo, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour},
		},
		{name: "organization in the allowlist", env: with(base, EnvProjects, "organizations/123"), wantErr: EnvProjects},
		{name: "malformed folder in the allowlist", env: with(base, EnvProjects, "folders/abc"), wantErr: EnvProjects},
		{name: "glob syntax other than *", env: with(base, EnvProjects, "team-?"), wantErr: "only '*' is a wildcard"},
		{name: "no project", env: map[string]string{EnvOutcomesTopic: "t"}, wantErr: EnvProject},
		{name: "no topic", env: map[string]string{EnvProject: "p"}, wantErr: EnvOutcomesTopic},
		{name: "bad dry run", env: with(base, EnvDryRun, "maybe"), wantErr: EnvDryRun},
		{name: "bad timeout", env: with(base, EnvTimeout, "soon"), wantErr: EnvTimeout},
		{name: "negative age", env: with(base, EnvMaxEventAge, "-1h"), wantErr: EnvMaxEventAge},
		{name: "negative cap", env: with(base, EnvMaxConcurrent, "-1"), wantErr: EnvMaxConcurrent},
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

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for kk, vv := range m {
		if kk != k {
			out[kk] = vv
		}
	}
	return out
}
