package iapsetup_test

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// deleteBeforeUpdate deletes the service just before iapguard's update of
// it reaches the API, as its owner might.
type deleteBeforeUpdate struct {
	iapsetup.CloudRun
	del func(ctx context.Context) error
}

func (d deleteBeforeUpdate) UpdateService(ctx context.Context, u *iapsetup.ServiceUpdate) (*iapsetup.Service, error) {
	if err := d.del(ctx); err != nil {
		return nil, err
	}
	return d.CloudRun.UpdateService(ctx, u)
}

// Issue #19 item 10: a service deleted while iapguard writes to it ends
// skipped, not failed with a gcloud fix for a service that no longer
// exists.
func TestReconcileServiceDeletedDuringWrite(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	d := e.Clients.Deps()
	d.CloudRun = deleteBeforeUpdate{CloudRun: d.CloudRun, del: func(ctx context.Context) error {
		op, err := e.User.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: ref.String()})
		if err != nil {
			return err
		}
		_, err = op.Wait(ctx)
		return err
	}}
	r, err := iapsetup.New(d, iapsetup.FastRetries(iapsetup.Options{Scope: scope.New(emulatortest.Project)}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(t.Context(), ref)
	if err != nil || res.Outcome != outcome.Skipped {
		t.Fatalf("Reconcile = %s (%s), %v; want skipped with no error", res.Outcome, res.Reason, err)
	}
}

// Issue #19 item 10: when turning IAP on fails, the access step must not
// claim "IAP is on".
func TestReconcileAccessStepWhenIAPFailed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
	if err := f.e.Core.Faults.FailNext(mUpdateService, 1, codes.PermissionDenied); err != nil {
		t.Fatal(err)
	}
	res, err, _ := f.reconcile(t, ref)
	if err == nil || res.Outcome != outcome.Failed {
		t.Fatalf("Reconcile = %s, %v; want failed", res.Outcome, err)
	}
	s := stepOf(res, outcome.StepAccess)
	if strings.Contains(s.Message, "IAP is on") || !strings.Contains(s.Message, "turning IAP on failed") {
		t.Errorf("access step %q, want it to say turning IAP on failed", s.Message)
	}
}
