package cli

import (
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/genproto/googleapis/type/expr"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/demo"
)

// The sandbox makes a service public again with a read-modify-write of its
// IAM policy. The read asks for version 3: a conditional binding survives
// the write with its condition, and allUsers joins the unconditional
// invoker binding. (Read as version 1, the conditional binding comes back
// as ROLE_withcond_HASH without its condition, and Google refuses the
// version-1 write of a policy that holds conditions.)
func TestMakePublicKeepsConditionalBindings(t *testing.T) {
	emu, err := emulator.New(emulator.Options{Projects: []core.Project{{ID: testProject, Number: 123456789012}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	ctx := t.Context()
	c, err := demo.Dial(ctx, emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.CreateService(ctx, testProject, testRegion, demo.ServiceSpec{Name: "reports"}); err != nil {
		t.Fatal(err)
	}
	name := "projects/" + testProject + "/locations/" + testRegion + "/services/reports"
	cond := &expr.Expr{Title: "until 2030", Expression: `request.time < timestamp("2030-01-01T00:00:00Z")`}
	if _, err := c.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: &iampb.Policy{Version: 3,
		Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"user:alice@example.com"}, Condition: cond}}}}); err != nil {
		t.Fatal(err)
	}
	if err := makePublic(ctx, c, testProject, testRegion, "reports"); err != nil {
		t.Fatalf("makePublic of a service with a conditional binding: %v", err)
	}
	p, err := c.Run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name, Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}})
	if err != nil {
		t.Fatal(err)
	}
	var condKept, public bool
	for _, b := range p.GetBindings() {
		switch {
		case b.Role == "roles/run.invoker" && b.Condition != nil:
			condKept = len(b.Members) == 1 && b.Members[0] == "user:alice@example.com" && b.Condition.GetExpression() == cond.Expression
		case b.Role == "roles/run.invoker":
			public = len(b.Members) == 1 && b.Members[0] == "allUsers"
		}
	}
	if !condKept || !public {
		t.Errorf("policy after makePublic = %v; want alice's conditional binding intact and allUsers unconditional", p)
	}
}
