package test

// Access end to end: who may pass IAP, declared with the iap-access label
// and a policy file loaded by the function (docs/access.md).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	iap "google.golang.org/api/iap/v1"
	"google.golang.org/api/option"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

const (
	accessor = "roles/iap.httpsResourceAccessor"
	// iapSetMethod is the audit-log method of an IAP policy write.
	iapSetMethod = "google.cloud.iap.v1.IdentityAwareProxyAdminService.SetIamPolicy"
	number       = "123456789012"
)

// accessPolicyFile is the policy file the function loads in these tests.
const accessPolicyFile = `# who may pass IAP, per policy name (label iap-access=NAME)
policies:
  web-users:
    description: everyone who uses the web shop
    members:
      - group:web-team@example.com
      - user:alice@example.com
      - serviceAccount:prober@demo-project.iam.gserviceaccount.com
  admins:
    members:
      - group:web-team@example.com
      - group:admins@example.com
`

func newAccessEnv(t *testing.T) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.yaml")
	if err := os.WriteFile(path, []byte(accessPolicyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	// prober exists: IAM rejects policies naming unknown service accounts.
	return newEnv(t, stack.Options{AccessPolicies: path,
		Emulator: emulator.Options{ServiceAccounts: []string{"prober@demo-project.iam.gserviceaccount.com"}}})
}

func runIAPResource(svc string) string {
	return "projects/" + number + "/iap_web/cloud_run-" + region + "/services/" + svc
}

// iapClient is the official IAP client acting as a user.
func (e *env) iapClient() *iap.Service {
	e.t.Helper()
	c, err := iap.NewService(e.ctx, option.WithEndpoint("http://"+e.st.Emu.Addr()+"/"), option.WithoutAuthentication())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// accessors returns the unconditional holders of the accessor role on res.
func (e *env) accessors(res string) []string {
	e.t.Helper()
	p, err := e.iapClient().V1.GetIamPolicy(res, &iap.GetIamPolicyRequest{}).Context(e.ctx).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, b := range p.Bindings {
		if b.Role == accessor && b.Condition == nil {
			out = append(out, b.Members...)
		}
	}
	sort.Strings(out)
	return out
}

// grantByHand adds member to the accessor role on res, as a person would
// with gcloud iap web add-iam-policy-binding.
func (e *env) grantByHand(res, member string) {
	e.t.Helper()
	c := e.iapClient()
	p, err := c.V1.GetIamPolicy(res, &iap.GetIamPolicyRequest{}).Context(e.ctx).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	p.Bindings = append(p.Bindings, &iap.Binding{Role: accessor, Members: []string{member}})
	if _, err := c.V1.SetIamPolicy(res, &iap.SetIamPolicyRequest{Policy: p}).Context(e.ctx).Do(); err != nil {
		e.t.Fatal(err)
	}
}

func accessStep(m *outcome.Message) outcome.Step {
	for _, s := range m.Steps {
		if s.Name == "access" {
			return s
		}
	}
	return outcome.Step{}
}

// checkQuietAfter requires every outcome after the user's change (those
// caused by iapguard's own writes) to be compliant.
func (e *env) checkQuietAfter(svc string) {
	e.t.Helper()
	for _, m := range e.st.Outcomes.ForService(svc) {
		if m.Trigger.Principal != stack.UserPrincipal && m.Outcome != "compliant" {
			e.t.Errorf("outcome %s for the event of iapguard's own %s (want compliant): %s", m.Outcome, m.Trigger.Method, m.Reason)
		}
	}
}

func TestAccessGrantedFromPolicy(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.create(demo.ServiceSpec{Name: "shop", Public: true})
	e.mark()
	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "web-users"})
	e.settle()

	want := []string{"group:web-team@example.com", "serviceAccount:prober@demo-project.iam.gserviceaccount.com", "user:alice@example.com"}
	if d := cmp.Diff(want, e.accessors(runIAPResource("shop"))); d != "" {
		t.Errorf("who may pass (-want +got):\n%s", d)
	}
	svc := e.service("shop")
	if !svc.IapEnabled {
		t.Error("IAP not on")
	}
	if got := recordedMembers(t, svc.Annotations["iapguard.dev/access-granted"]); got != strings.Join(want, ",") {
		t.Errorf("access annotation = %q, want the members iapguard granted", got)
	}
	// One IAP write, next to the usual IAM write and service update (which
	// confirms the grants), and one service update before it recording the
	// grants as intended; iapguard's own events then find it compliant.
	wantWrites := map[string]int{
		"google.cloud.run.v2.Services.SetIamPolicy":  1,
		"google.cloud.run.v2.Services.UpdateService": 2,
		iapSetMethod: 1,
	}
	if d := cmp.Diff(wantWrites, e.iapguardWrites()); d != "" {
		t.Errorf("iapguard's writes (-want +got):\n%s", d)
	}
	m := e.byUser("shop")
	if s := accessStep(m); s.Result != "changed" || s.Resource != runIAPResource("shop") {
		t.Errorf("access step = %+v", s)
	}
	e.checkQuietAfter("shop")
	golden(t, "access-granted", m)
	t.Logf("API calls: %v", e.calls())
}

// TestAccessPolicyChange switches the service to another policy: members
// only the new policy lists are granted, members iapguard granted for the
// old one are revoked, members both list stay, and a member a person
// granted by hand is kept.
func TestAccessPolicyChange(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.create(demo.ServiceSpec{Name: "shop", Public: true})
	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "web-users"})
	e.settle()
	res := runIAPResource("shop")
	e.grantByHand(res, "user:boss@example.com")
	e.mark()

	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "admins"})
	e.settle()
	want := []string{"group:admins@example.com", "group:web-team@example.com", "user:boss@example.com"}
	if d := cmp.Diff(want, e.accessors(res)); d != "" {
		t.Errorf("who may pass after the policy change (-want +got):\n%s", d)
	}
	if got := recordedMembers(t, e.service("shop").Annotations["iapguard.dev/access-granted"]); got != "group:admins@example.com,group:web-team@example.com" {
		t.Errorf("access annotation = %q", got)
	}
	m := e.byUser("shop")
	s := accessStep(m)
	for _, w := range []string{"group:admins@example.com", "revoked it from serviceAccount:prober@demo-project.iam.gserviceaccount.com, user:alice@example.com", "user:boss@example.com"} {
		if !strings.Contains(s.Message, w) {
			t.Errorf("access step message %q does not mention %q", s.Message, w)
		}
	}
	e.checkQuietAfter("shop")
	golden(t, "access-policy-changed", m)
}

// TestAccessForeignMembersKept: a member someone else granted stays, even
// when the policy lists it and the service later drops the policy's
// members; so do grants others made on the project.
func TestAccessForeignMembersKept(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.create(demo.ServiceSpec{Name: "shop", Public: true})
	res := runIAPResource("shop")
	// Granted by hand before iapguard ever saw the service: alice (whom the
	// policy lists too) and carol.
	e.grantByHand(res, "user:alice@example.com")
	e.grantByHand(res, "user:carol@example.com")
	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "web-users"})
	e.settle()
	// alice held the role already: iapguard does not record her as its own.
	if got := recordedMembers(t, e.service("shop").Annotations["iapguard.dev/access-granted"]); got != "group:web-team@example.com,serviceAccount:prober@demo-project.iam.gserviceaccount.com" {
		t.Errorf("access annotation = %q", got)
	}
	e.mark()
	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "admins"})
	e.settle()
	want := []string{"group:admins@example.com", "group:web-team@example.com", "user:alice@example.com", "user:carol@example.com"}
	if d := cmp.Diff(want, e.accessors(res)); d != "" {
		t.Errorf("who may pass (-want +got):\n%s", d)
	}
	// Removing the iap-access label revokes nothing.
	e.mark()
	e.label("shop", enabled)
	e.settle()
	if d := cmp.Diff(want, e.accessors(res)); d != "" {
		t.Errorf("who may pass after removing the label (-want +got):\n%s", d)
	}
	if w := e.iapguardWrites(); len(w) != 0 {
		t.Errorf("iapguard wrote %v after the iap-access label was removed", w)
	}
}

func TestAccessNobodyCanPassWarning(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.create(demo.ServiceSpec{Name: "api", Public: true})
	e.mark()
	e.label("api", enabled)
	e.settle()
	// Security first: IAP is on although nobody may pass.
	if !e.service("api").IapEnabled {
		t.Error("IAP not on")
	}
	m := e.byUser("api")
	s := accessStep(m)
	if m.Outcome != "remediated" || s.Result != "warning" || !strings.Contains(s.Message, "IAP is on and nobody holds roles/iap.httpsResourceAccessor") ||
		!strings.Contains(s.Message, "iap-access=POLICY (policies: admins, web-users)") {
		t.Errorf("outcome %s, access step %+v; want remediated with the nobody-can-pass warning", m.Outcome, s)
	}
	golden(t, "access-nobody-can-pass", m)
}

// TestAccessProjectWideGrantCounts: a grant on the project's iap_web lets
// someone through every IAP resource of the project; no warning.
func TestAccessProjectWideGrantCounts(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.grantByHand("projects/"+number+"/iap_web", "domain:example.com")
	e.create(demo.ServiceSpec{Name: "api", Public: true})
	e.mark()
	e.label("api", enabled)
	e.settle()
	s := accessStep(e.byUser("api"))
	if s.Result != "ok" || !strings.Contains(s.Message, "project-wide on projects/"+number+"/iap_web: domain:example.com") {
		t.Errorf("access step = %+v, want ok naming the project-wide grant", s)
	}
}

func TestAccessUnknownPolicyRejected(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.create(demo.ServiceSpec{Name: "shop", Public: true})
	e.mark()
	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "web-user"})
	e.settle()
	m := e.byUser("shop")
	s := accessStep(m)
	if m.Outcome != "rejected" || s.Result != "rejected" || !strings.Contains(s.Message, `iap-access="web-user" names no access policy; known policies: admins, web-users`) {
		t.Errorf("outcome %s, access step %+v; want rejected naming the known policies", m.Outcome, s)
	}
	if n := e.iapguardWrites()[iapSetMethod]; n != 0 || len(e.accessors(runIAPResource("shop"))) != 0 {
		t.Errorf("something was granted for an unknown policy (%d IAP writes)", n)
	}
	// IAP is enforced all the same.
	svc := e.service("shop")
	if !svc.IapEnabled || slices.Contains(e.policy("shop")["roles/run.invoker"], "allUsers") {
		t.Errorf("IAP not enforced: iapEnabled %v, invokers %v", svc.IapEnabled, e.policy("shop")["roles/run.invoker"])
	}
	golden(t, "access-unknown-policy", m)
}

// TestBuiltInIAPKeptWhenALoadBalancerAppears: a service guarded by Cloud
// Run's built-in IAP that is later put behind a load balancer keeps it; IAP
// is not enabled on the backend service as well.
func TestBuiltInIAPKeptWhenALoadBalancerAppears(t *testing.T) {
	t.Parallel()
	e := newAccessEnv(t)
	e.create(demo.ServiceSpec{Name: "shop", Public: true})
	e.label("shop", map[string]string{"iap": "enabled", "iap-access": "admins"})
	e.settle()
	e.mark()
	lb := e.lb(demo.LBSpec{Service: "shop"})
	e.settle()
	if b := e.backend(lb.BackendService); b.Iap != nil && b.Iap.Enabled {
		t.Error("IAP enabled on the backend service although Cloud Run's built-in IAP is on")
	}
	svc := e.service("shop")
	if !svc.IapEnabled || svc.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
		t.Errorf("service iapEnabled %v ingress %v; want built-in IAP kept and ingress left", svc.IapEnabled, svc.Ingress)
	}
	if w := e.iapguardWrites(); len(w) != 0 {
		t.Errorf("iapguard wrote %v when the load balancer appeared", w)
	}
	// Access stays on the Cloud Run resource, which guards the LB path.
	if d := cmp.Diff([]string{"group:admins@example.com", "group:web-team@example.com"}, e.accessors(runIAPResource("shop"))); d != "" {
		t.Errorf("who may pass (-want +got):\n%s", d)
	}
	for _, m := range e.st.Outcomes.ForService("shop") {
		if m.Outcome != "compliant" || m.Mode != "direct" {
			t.Errorf("outcome %s mode %s after the load balancer appeared, want compliant direct: %s", m.Outcome, m.Mode, m.Reason)
		}
	}
}

// recordedMembers returns the members a signed access record lists (every
// IAP resource), sorted and joined with commas.
func recordedMembers(t *testing.T, v string) string {
	t.Helper()
	if v == "" {
		return ""
	}
	var rec struct {
		Granted map[string][]string `json:"granted"`
		MAC     string              `json:"mac"`
	}
	if err := json.Unmarshal([]byte(v), &rec); err != nil || rec.MAC == "" {
		t.Errorf("access record %q is not a signed record (%v)", v, err)
	}
	var all []string
	for _, ms := range rec.Granted {
		for _, m := range ms {
			if !slices.Contains(all, m) {
				all = append(all, m)
			}
		}
	}
	slices.Sort(all)
	return strings.Join(all, ",")
}
