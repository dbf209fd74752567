package access

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want map[string][]string // policy → members; nil with wantErr
		// wantErr is a substring of the error; "" means no error.
		wantErr string
	}{
		{
			name: "yaml with every member kind",
			data: `
policies:
  web-users:
    description: people who use the web app
    members:
      - group:Web@Example.com
      - domain:example.com
      - user:a@example.com
      - serviceAccount:ci@p1.iam.gserviceaccount.com
  admins:
    members: [group:admins@example.com]
`,
			want: map[string][]string{
				"admins":    {"group:admins@example.com"},
				"web-users": {"domain:example.com", "group:web@example.com", "serviceAccount:ci@p1.iam.gserviceaccount.com", "user:a@example.com"},
			},
		},
		{
			name: "json",
			data: `{"policies": {"web-users": {"members": ["user:a@example.com", "group:g@example.com"]}}}`,
			want: map[string][]string{"web-users": {"group:g@example.com", "user:a@example.com"}},
		},
		{
			name: "a policy with no members (revokes what iapguard granted)",
			data: "policies:\n  none:\n    members: []\n",
			want: map[string][]string{"none": nil},
		},
		{name: "empty file", data: "", wantErr: "the file is empty"},
		{name: "no policies", data: "policies: {}\n", wantErr: "no policies defined"},
		{name: "unknown top-level field", data: "policy:\n  a:\n    members: [user:a@example.com]\n", wantErr: "field policy not found"},
		{name: "unknown policy field", data: "policies:\n  a:\n    member: [user:a@example.com]\n", wantErr: "field member not found"},
		{name: "duplicate policy", data: "policies:\n  a:\n    members: [user:a@example.com]\n  a:\n    members: [user:b@example.com]\n", wantErr: "already defined"},
		{name: "two documents", data: "policies:\n  a:\n    members: [user:a@example.com]\n---\npolicies: {}\n", wantErr: "more than one YAML document"},
		{name: "not yaml", data: "policies: [", wantErr: "parsing"},
		{name: "policy name not a label value", data: "policies:\n  Web_Users:\n    members: [user:a@example.com]\n", wantErr: `policy name "Web_Users"`},
		{name: "policy name too long", data: "policies:\n  " + strings.Repeat("a", 64) + ":\n    members: [user:a@example.com]\n", wantErr: "policy name"},
		{name: "policy name of 63 characters", data: "policies:\n  " + strings.Repeat("a", 63) + ":\n    members: [user:a@example.com]\n",
			want: map[string][]string{strings.Repeat("a", 63): {"user:a@example.com"}}},
		{name: "domain label of 63 characters", data: "policies:\n  a:\n    members: ['domain:" + strings.Repeat("b", 63) + ".example.com']\n",
			want: map[string][]string{"a": {"domain:" + strings.Repeat("b", 63) + ".example.com"}}},
		{name: "domain label too long", data: "policies:\n  a:\n    members: ['domain:" + strings.Repeat("b", 64) + ".example.com']\n", wantErr: "not a domain name"},
		{name: "domain label ending in a hyphen", data: "policies:\n  a:\n    members: ['domain:b-.example.com']\n", wantErr: "not a domain name"},
		{name: "allUsers", data: "policies:\n  a:\n    members: [allUsers]\n", wantErr: "would make IAP public"},
		{name: "allAuthenticatedUsers", data: "policies:\n  a:\n    members: [allAuthenticatedUsers]\n", wantErr: "would make IAP public"},
		{name: "member without kind", data: "policies:\n  a:\n    members: [a@example.com]\n", wantErr: "want one of the kinds"},
		{name: "unsupported kind", data: "policies:\n  a:\n    members: ['principalSet://goog/public:all']\n", wantErr: "want one of the kinds"},
		{name: "wrong kind case", data: "policies:\n  a:\n    members: ['User:a@example.com']\n", wantErr: "want one of the kinds"},
		{name: "user without email", data: "policies:\n  a:\n    members: ['user:alice']\n", wantErr: "exactly one '@'"},
		{name: "service account outside gserviceaccount.com", data: "policies:\n  a:\n    members: ['serviceAccount:x@example.com']\n", wantErr: "gserviceaccount.com"},
		{name: "domain with an email", data: "policies:\n  a:\n    members: ['domain:a@example.com']\n", wantErr: "not a domain name"},
		{name: "space in a member", data: "policies:\n  a:\n    members: ['user:a b@example.com']\n", wantErr: "local part"},
		{name: "duplicate member ignoring case", data: "policies:\n  a:\n    members: [user:a@example.com, user:A@example.com]\n", wantErr: "listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse("policies.yaml", []byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "policies.yaml") {
					t.Fatalf("Parse() error = %v, want one naming the file and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(): %v", err)
			}
			have := map[string][]string{}
			for _, n := range got.Names() {
				p, _ := got.Lookup(n)
				have[n] = p.Members
			}
			if diff := cmp.Diff(tc.want, have); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	t.Parallel()
	_, err := Parse("f", []byte("policies:\n  a:\n    members: [allUsers, bob]\n  B:\n    members: []\n"))
	for _, want := range []string{"allUsers", `"bob"`, `"B"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestPolicyMemberLimit(t *testing.T) {
	t.Parallel()
	var ms []string
	for i := range MaxMembers + 1 {
		ms = append(ms, fmt.Sprintf("user:u%d@example.com", i))
	}
	if _, err := New("code", map[string][]string{"big": ms}); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("New(%d members) = %v, want a limit error", len(ms), err)
	}
	if _, err := New("code", map[string][]string{"ok": ms[:MaxMembers]}); err != nil {
		t.Errorf("New(%d members) = %v", MaxMembers, err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "access.yaml")
	if err := os.WriteFile(path, []byte("policies:\n  a:\n    members: [user:a@example.com]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Load(path)
	if err != nil || len(a.Names()) != 1 || a.Source != path {
		t.Fatalf("Load = %+v, %v", a, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load(missing file) = nil error")
	}
	var none *Policies
	if _, ok := none.Lookup("a"); ok || none.Names() != nil {
		t.Error("a nil *Policies is not empty")
	}
}

// TestParseAllowedErrorsInStableOrder: the allowed-entry errors of several
// policies come in policy-name order, whatever the map's iteration order.
func TestParseAllowedErrorsInStableOrder(t *testing.T) {
	t.Parallel()
	doc := "policies:\n"
	for _, name := range []string{"zeta", "alpha", "mid", "beta", "omega"} {
		doc += "  " + name + ":\n    members: [user:a@example.com]\n    allowed: [Bad/Entry]\n"
	}
	var first string
	for i := range 20 {
		_, err := Parse("f", []byte(doc))
		if err == nil {
			t.Fatal("Parse accepted invalid allowed entries")
		}
		msg := err.Error()
		if i == 0 {
			first = msg
			if a, z := strings.Index(msg, "policy alpha"), strings.Index(msg, "policy zeta"); a < 0 || z < 0 || a > z {
				t.Fatalf("errors not in policy-name order: %s", msg)
			}
		} else if msg != first {
			t.Fatalf("error message changed between parses:\n%s\n%s", first, msg)
		}
	}
}
