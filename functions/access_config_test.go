package functions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigAccessPolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "policies:\n  web-users:\n    members: [group:web@example.com, domain:example.com]\n")
	goodJSON := write("good.json", `{"policies": {"admins": {"members": ["user:a@example.com"]}}}`)
	public := write("public.yaml", "policies:\n  web-users:\n    members: [allUsers]\n")
	malformed := write("malformed.yaml", "policies:\n  web-users:\n    members: [alice]\n")
	tests := []struct {
		name      string
		file      string
		wantNames []string
		wantErr   []string // substrings of the error
	}{
		{name: "no file", file: ""},
		{name: "yaml", file: good, wantNames: []string{"web-users"}},
		{name: "json", file: goodJSON, wantNames: []string{"admins"}},
		{name: "public member", file: public, wantErr: []string{EnvAccessPolicies, public, "would make IAP public"}},
		{name: "malformed member", file: malformed, wantErr: []string{EnvAccessPolicies, malformed, `member "alice"`}},
		{name: "missing file", file: filepath.Join(dir, "missing.yaml"), wantErr: []string{EnvAccessPolicies, "missing.yaml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{EnvProject: "p", EnvOutcomesTopic: "iapguard-outcomes", EnvAccessPolicies: tc.file}
			cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
			if len(tc.wantErr) > 0 {
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("ConfigFromEnv() error = %v, want one containing %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ConfigFromEnv(): %v", err)
			}
			if cfg.AccessPoliciesFile != tc.file {
				t.Errorf("AccessPoliciesFile = %q, want %q", cfg.AccessPoliciesFile, tc.file)
			}
			if diff := cmp.Diff(tc.wantNames, cfg.AccessPolicies.Names()); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNewInstanceLoadsAccessPolicyFile covers configurations built in code
// (the local stack): the file is loaded and validated by NewInstanceFromConfig.
func TestNewInstanceLoadsAccessPolicyFile(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("policies:\n  Bad Name:\n    members: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewInstanceFromConfig(t.Context(), Config{Project: "p", OutcomesTopic: "t", AccessPoliciesFile: bad}, nil)
	if err == nil || !strings.Contains(err.Error(), EnvAccessPolicies) || !strings.Contains(err.Error(), `policy name "Bad Name"`) {
		t.Errorf("NewInstanceFromConfig(bad access policy file) = %v, want a configuration error", err)
	}
}
