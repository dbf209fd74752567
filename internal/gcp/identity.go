package gcp

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	serviceusage "google.golang.org/api/serviceusage/v1beta1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// IAPService is the service whose agent fronts Cloud Run for IAP.
const IAPService = "iap.googleapis.com"

// IdentityAdapter implements iapsetup.AgentIdentity over Service Usage
// v1beta1.
type IdentityAdapter struct {
	c         *serviceusage.APIService
	opTimeout time.Duration
	poll      time.Duration
	pace      *pacer
}

var _ iapsetup.AgentIdentity = (*IdentityAdapter)(nil)

// IAPServiceAgent calls services.generateServiceIdentity for
// iap.googleapis.com (idempotent: it creates the agent only if missing) and
// returns the agent's email, polling operations.get if the operation is not
// done at once (Google usually answers done). Needs serviceusage.services.use
// on the project (and serviceusage.operations.get to poll).
func (a *IdentityAdapter) IAPServiceAgent(ctx context.Context, project string) (_ string, err error) {
	defer classify(&err)
	parent := "projects/" + project + "/services/" + IAPService
	op, err := paced(ctx, a.pace, writeCall, func() (*serviceusage.Operation, error) {
		return a.c.Services.GenerateServiceIdentity(parent).Context(ctx).Do()
	})
	if err != nil {
		return "", fmt.Errorf("generating service identity %s: %w", parent, err)
	}
	wctx, cancel := context.WithTimeout(ctx, a.opTimeout)
	defer cancel()
	pause := a.poll
	for !op.Done {
		t := time.NewTimer(pause)
		select {
		case <-wctx.Done():
			t.Stop()
			return "", fmt.Errorf("waiting for operation %s generating service identity %s: %w", op.Name, parent, wctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, 10*time.Second)
		name := op.Name
		if op, err = paced(wctx, a.pace, readCall, func() (*serviceusage.Operation, error) {
			return a.c.Operations.Get(name).Context(wctx).Do()
		}); err != nil {
			return "", fmt.Errorf("polling operation generating service identity %s: %w", parent, err)
		}
	}
	if op.Error != nil {
		// google.rpc.Status: keep the code so the error classifies.
		return "", fmt.Errorf("generating service identity %s: operation %s failed: %w", parent, op.Name,
			status.Error(codes.Code(op.Error.Code), op.Error.Message))
	}
	var id serviceusage.ServiceIdentity
	if err := json.Unmarshal(op.Response, &id); err != nil {
		return "", fmt.Errorf("decoding service identity %s: %w", parent, err)
	}
	if id.Email == "" {
		return "", fmt.Errorf("generating service identity %s: the response names no email", parent)
	}
	return id.Email, nil
}
