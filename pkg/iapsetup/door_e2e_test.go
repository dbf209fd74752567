package iapsetup_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// agentRefused stands in for IAM refusing a brand-new IAP service agent it
// does not know yet (HTTP 400 on setIamPolicy naming it): any policy write
// that names the agent fails, the others reach the emulator.
type agentRefused struct {
	iapsetup.CloudRun
}

func (a agentRefused) SetIAMPolicy(ctx context.Context, ref iapsetup.ServiceRef, p *iapsetup.Policy) (*iapsetup.Policy, error) {
	for _, b := range p.Bindings {
		if slices.Contains(b.Members, "serviceAccount:"+emulatortest.Agent) {
			return nil, gcp.Classify(status.Error(codes.InvalidArgument, "Service account "+emulatortest.Agent+" does not exist."))
		}
	}
	return a.CloudRun.SetIAMPolicy(ctx, ref, p)
}

// TestReconcileClosesTheDoorFirst (issue #19 item 4): removing allUsers and
// allAuthenticatedUsers from roles/run.invoker needs Cloud Run permissions
// only, so it happens, in a write of its own, whatever else fails — and the
// outcome says so. Before the fix each case left allUsers in place.
func TestReconcileClosesTheDoorFirst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string // fails with PermissionDenied; "" uses agentRefused
	}{
		{"generateServiceIdentity denied", mIdentity},
		{"backend services list denied", mAggBackends},
		{"serverless NEG list denied", mListNEGs},
		{"new agent not yet known to IAM", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envOptions{})
			e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
			e.SeedPolicy(t, "hello", &iampb.Policy{Bindings: []*iampb.Binding{
				{Role: "roles/run.invoker", Members: []string{"allUsers", "user:alice@example.com", "allAuthenticatedUsers"}},
				{Role: "roles/run.admin", Members: []string{"user:owner@example.com"}},
			}})
			d := e.Clients.Deps()
			if tc.method == "" {
				d.CloudRun = agentRefused{d.CloudRun}
			} else if err := e.Core.Faults.FailNext(tc.method, 1, codes.PermissionDenied); err != nil {
				t.Fatal(err)
			}
			r, err := iapsetup.New(d, iapsetup.FastRetries(iapsetup.Options{Scope: scope.New(emulatortest.Project)}))
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Reconcile(t.Context(), ref)
			if err == nil || res.Outcome != outcome.Failed {
				t.Fatalf("Reconcile = %s (%s), %v; want failed with an error", res.Outcome, res.Reason, err)
			}
			checkPolicy(t, e.Policy(t, "hello"), map[string][]string{
				"roles/run.invoker": {"user:alice@example.com"},
				"roles/run.admin":   {"user:owner@example.com"},
			})
			// The outcome says what was done.
			var removed []string
			for _, c := range res.Changes {
				if c.After == "" {
					removed = append(removed, c.Before)
				}
			}
			slices.Sort(removed)
			if !slices.Equal(removed, []string{"allAuthenticatedUsers", "allUsers"}) {
				t.Errorf("changes %+v, want the removal of allUsers and allAuthenticatedUsers", res.Changes)
			}
			auth := stepOf(res, outcome.StepIAMAuth)
			if auth.Result != outcome.StepChanged || !strings.Contains(auth.Message, "removed allAuthenticatedUsers, allUsers from roles/run.invoker in a write of its own") {
				t.Errorf("iam-auth step %+v, want changed: removed ... in a write of its own", auth)
			}
			if !strings.Contains(res.Reason, "removed allAuthenticatedUsers, allUsers from roles/run.invoker in a write of its own") {
				t.Errorf("reason %q does not say public access was removed", res.Reason)
			}
		})
	}
}

// TestReconcileDoorDryRun: a dry run writes nothing, the door included.
func TestReconcileDoorDryRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	f.e.SeedPolicy(t, "hello", publicPolicy())
	if err := f.e.Core.Faults.FailNext(mIdentity, 1, codes.PermissionDenied); err != nil {
		t.Fatal(err)
	}
	_, _, calls := f.reconcile(t, ref, iapsetup.WithDryRun(true))
	if calls[mSetPolicy] != 0 {
		t.Errorf("dry run made %d SetIamPolicy calls", calls[mSetPolicy])
	}
}
