package iapsetup

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

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
		if v := formatRecord("s", map[string][]string{"projects/1/iap_web/compute/services/web": got}, nil, nil); len(got) > 0 && checkGrantedAnnotation(v) != nil {
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
		projectIAPResource("42"),
		cloudRunIAPResource("42", ref).Name,
		backendIAPResource("42", BackendService{Ref: BackendRef{Project: "p1", Name: "web"}, ID: "777"}).Name,
		backendIAPResource("42", BackendService{Ref: BackendRef{Project: "p1", Region: "europe-west1", Name: "web"}}).Name,
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
	a, err := access.Parse("f.yaml", []byte(`policies:
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
		if got := shop.Allows(ref.Project, ref.Name); got != want {
			t.Errorf("shop-users.Allows(%s/%s) = %v, want %v", ref.Project, ref.Name, got, want)
		}
	}
	if anyone, _ := a.Lookup("anyone"); !anyone.Allows("p", "s") {
		t.Error("a policy without allowed entries refused a service")
	}
	// The plan rejects a service the policy does not allow.
	s := tService(accessLabel("shop-users"))
	obs := &observed{Service: s, Policy: tPolicy(agentBinding), Agent: tAgent, AccessPolicies: a, IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy())}
	s.IAPEnabled = true
	p := planFor(DesiredFor(s), withRecord(obs))
	if p.Outcome != outcome.Rejected || !strings.Contains(p.Reason, "may be used only by") || p.access.writes() != 0 {
		t.Errorf("plan for a service the policy does not allow: %s (%s), %d access writes", p.Outcome, p.Reason, p.access.writes())
	}
	if _, err := access.Parse("f.yaml", []byte("policies:\n  p:\n    members: [domain:example.com]\n    allowed: [\"Bad Entry\"]\n")); err == nil {
		t.Error("an invalid allowed entry was accepted")
	}
}
