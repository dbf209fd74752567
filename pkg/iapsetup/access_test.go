package iapsetup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/pkg/outcome"
)

func TestParseAccessPolicies(t *testing.T) {
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
			got, err := ParseAccessPolicies("policies.yaml", []byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "policies.yaml") {
					t.Fatalf("ParseAccessPolicies() error = %v, want one naming the file and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAccessPolicies(): %v", err)
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

func TestParseAccessPoliciesReportsEveryError(t *testing.T) {
	t.Parallel()
	_, err := ParseAccessPolicies("f", []byte("policies:\n  a:\n    members: [allUsers, bob]\n  B:\n    members: []\n"))
	for _, want := range []string{"allUsers", `"bob"`, `"B"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestAccessPolicyMemberLimit(t *testing.T) {
	t.Parallel()
	var ms []string
	for i := range MaxAccessMembers + 1 {
		ms = append(ms, fmt.Sprintf("user:u%d@example.com", i))
	}
	if _, err := NewAccessPolicies("code", map[string][]string{"big": ms}); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("NewAccessPolicies(%d members) = %v, want a limit error", len(ms), err)
	}
	if _, err := NewAccessPolicies("code", map[string][]string{"ok": ms[:MaxAccessMembers]}); err != nil {
		t.Errorf("NewAccessPolicies(%d members) = %v", MaxAccessMembers, err)
	}
}

func TestLoadAccessPolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "access.yaml")
	if err := os.WriteFile(path, []byte("policies:\n  a:\n    members: [user:a@example.com]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAccessPolicies(path)
	if err != nil || a.Len() != 1 || a.Source != path {
		t.Fatalf("LoadAccessPolicies = %+v, %v", a, err)
	}
	if _, err := LoadAccessPolicies(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("LoadAccessPolicies(missing file) = nil error")
	}
	var none *AccessPolicies
	if _, ok := none.Lookup("a"); ok || none.Len() != 0 || none.Names() != nil {
		t.Error("a nil *AccessPolicies is not empty")
	}
}

func TestGrantedAnnotationRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"user:b@example.com,group:a@example.com", []string{"group:a@example.com", "user:b@example.com"}},
		{" user:a@example.com , ,USER:x@example.com,allUsers,user:A@example.com,bob", []string{"user:a@example.com"}},
	}
	for _, tc := range tests {
		got := parseGranted(tc.in)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parseGranted(%q) (-want +got):\n%s", tc.in, diff)
		}
		if v := formatRecord("s", map[string][]string{"projects/1/iap_web/compute/services/web": got}, nil); len(got) > 0 && checkGrantedAnnotation(v) != nil {
			t.Errorf("formatRecord(%v) = %q fails the guard: %v", got, v, checkGrantedAnnotation(v))
		}
	}
}

func TestIAPResourceNames(t *testing.T) {
	t.Parallel()
	n, ok := projectNumberFromAgent("service-123456789012@gcp-sa-iap.iam.gserviceaccount.com")
	if !ok || n != "123456789012" {
		t.Errorf("projectNumberFromAgent = %q, %v", n, ok)
	}
	for _, bad := range []string{"", "service-12@gcp-sa-iap.iam.gserviceaccount.com.evil", "x-12@gcp-sa-iap.iam.gserviceaccount.com", "service-@gcp-sa-iap.iam.gserviceaccount.com"} {
		if _, ok := projectNumberFromAgent(bad); ok {
			t.Errorf("projectNumberFromAgent(%q) accepted", bad)
		}
	}
	ref := ServiceRef{Project: "p1", Region: "europe-west1", Name: "hello"}
	got := []string{
		ProjectIAPResource("42"),
		CloudRunIAPResource("42", ref).Name,
		BackendIAPResource("42", BackendService{Ref: BackendRef{Project: "p1", Name: "web"}, ID: "777"}).Name,
		BackendIAPResource("42", BackendService{Ref: BackendRef{Project: "p1", Region: "europe-west1", Name: "web"}}).Name,
	}
	want := []string{
		"projects/42/iap_web",
		"projects/42/iap_web/cloud_run-europe-west1/services/hello",
		"projects/42/iap_web/compute/services/777",
		"projects/42/iap_web/compute-europe-west1/services/web",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IAP resource names (-want +got):\n%s", diff)
	}
}

// Issue #19 item 2: a policy in the access file may name the projects or
// services allowed to use it; any other service naming it is rejected and
// nothing is granted.
func TestAccessPolicyAllowed(t *testing.T) {
	a, err := ParseAccessPolicies("f.yaml", []byte(`policies:
  shop-users:
    members: [domain:example.com]
    allowed: ["team-shop-*", "shared/shop"]
  anyone:
    members: [group:all@example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	shop, _ := a.Lookup("shop-users")
	for ref, want := range map[ServiceRef]bool{
		{Project: "team-shop-prod", Region: "r", Name: "x"}:  true,
		{Project: "shared", Region: "r", Name: "shop"}:       true,
		{Project: "shared", Region: "r", Name: "billing"}:    false,
		{Project: "team-billing", Region: "r", Name: "shop"}: false,
	} {
		if got := shop.Allows(ref); got != want {
			t.Errorf("shop-users.Allows(%s/%s) = %v, want %v", ref.Project, ref.Name, got, want)
		}
	}
	if anyone, _ := a.Lookup("anyone"); !anyone.Allows(ServiceRef{Project: "p", Name: "s"}) {
		t.Error("a policy without allowed entries refused a service")
	}
	// The plan rejects a service the policy does not allow.
	s := tService(accessLabel("shop-users"))
	obs := &Observed{Service: s, Policy: tPolicy(agentBinding), Agent: tAgent, AccessPolicies: a, IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy())}
	s.IAPEnabled = true
	p := PlanFor(DesiredFor(s), withRecord(obs))
	if p.Outcome != outcome.Rejected || !strings.Contains(p.Reason, "may be used only by") || p.access.writes() != 0 {
		t.Errorf("plan for a service the policy does not allow: %s (%s), %d access writes", p.Outcome, p.Reason, p.access.writes())
	}
	if _, err := ParseAccessPolicies("f.yaml", []byte("policies:\n  p:\n    members: [domain:example.com]\n    allowed: [\"Bad Entry\"]\n")); err == nil {
		t.Error("an invalid allowed entry was accepted")
	}
}
