package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// inspection is a service's live state and the plan iapguard would follow
// if the service were labelled iap=enabled: the reconciler's own dry run
// (iapsetup.Reconciler.Diagnose), so doctor and audience cannot drift from
// what the function does.
type inspection struct {
	Ref iapsetup.ServiceRef
	*iapsetup.Diagnosis
}

// inspectService resolves the flags (--region is required) and inspects
// service of --project (session.inspect); withAccess: with the access
// policies of --access-policies, else none (and the file is not read).
func (f *opFlags) inspectService(ctx context.Context, service string, withAccess bool) (*inspection, error) {
	if !validName(service) {
		return nil, fmt.Errorf("service %q is not a Cloud Run service name", service)
	}
	if err := f.resolve(ctx, regionRequired, true); err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	var sess *session
	var err error
	if withAccess {
		sess, err = f.connect(ctx, scope.New(f.project), true)
	} else {
		sess, err = connect(ctx, f.project, iapsetup.Options{Scope: scope.New(f.project), DryRun: true})
	}
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	return sess.inspect(ctx, iapsetup.ServiceRef{Project: f.project, Region: f.region, Name: service})
}

// inspect diagnoses ref with the reconciler's dry run (Diagnose: its own
// observation, as if the service were labelled iap=enabled, with the
// who-can-pass check) and words the failed reads for people. It makes no
// write except the one the reconciler also makes: Service Usage
// generateServiceIdentity, which creates the IAP service agent if it is
// missing (idempotent). Needs run.services.get,
// run.services.getIamPolicy, serviceusage.services.use,
// compute.networkEndpointGroups.list, compute.backendServices.list,
// compute.targetHttpsProxies.list, compute.globalForwardingRules.list and
// iap.webServices.getIamPolicy.
func (s *session) inspect(ctx context.Context, ref iapsetup.ServiceRef) (*inspection, error) {
	dg, err := s.rec.Diagnose(ctx, ref)
	if err != nil {
		return nil, s.serviceError(ctx, ref, err)
	}
	if dg.AgentErr != nil && (errors.Is(dg.AgentErr, context.DeadlineExceeded) || errors.Is(dg.AgentErr, context.Canceled)) {
		return nil, explain(dg.AgentErr, s.emulator)
	}
	return &inspection{Ref: ref, Diagnosis: dg}, nil
}

// projectNumber returns the project number: the project itself when it is
// numeric, else the number in the IAP service agent's email.
func (in *inspection) projectNumber() (int64, error) {
	if n, err := strconv.ParseInt(in.Ref.Project, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	if n, err := strconv.ParseInt(in.ProjectNumber, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	if in.AgentErr != nil {
		return 0, fmt.Errorf("finding the number of project %s through its IAP service agent: %w", in.Ref.Project, in.AgentErr)
	}
	return 0, fmt.Errorf("finding the number of project %s: the IAP service agent %q names none; pass the project number as --project", in.Ref.Project, in.Agent)
}
