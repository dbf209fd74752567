package iapsetup

import (
	"context"
	"errors"
)

// Diagnosis is what a dry-run reconcile of one service sees and plans, as
// if the service were labelled iap=enabled (its own desired state when it
// is), for operators' diagnoses (iapctl doctor and audience).
type Diagnosis struct {
	// Desired is read from the service's own labels.
	Desired Desired
	Service *Service
	// Plan is the dry-run plan, after the second read round, reported as
	// Reconcile reports a dry run.
	Plan *Result
	// Agent is the email of the project's IAP service agent; AgentErr is
	// why it is unknown (nil: known); a reconcile of a labelled service
	// fails with it.
	Agent    string
	AgentErr error
	// Fronting are the backend services in front of the service (through
	// serverless NEGs naming it), sorted by path. Frontends holds their
	// HTTPS-frontend checks by ResourcePath(selfLink), FrontendErrs the
	// checks that failed, by backend path.
	Fronting     []BackendService
	Frontends    map[string]Frontend
	FrontendErrs map[string]error
	// ProjectNumber is read from the IAP service agent's email ("" when
	// the agent is unknown).
	ProjectNumber string
}

// Diagnose runs the reconciler's own observation and planning for ref in
// dry-run mode, with the who-can-pass check, and returns what it saw and
// planned; unlike a dry-run Reconcile it plans an unlabelled (or invalidly
// labelled) service as if it were labelled iap=enabled, keeps going without
// the IAP service agent (AgentErr), checks the HTTPS frontend of every
// fronting backend service, and stops before apply (it validates nothing).
// Its only write is the one a reconcile also makes: generateServiceIdentity,
// which creates a missing IAP service agent. The error is that of a read a
// plan cannot do without (the service, its IAM policy, the NEGs, the
// backend services) or of the scope check.
func (r *Reconciler) Diagnose(ctx context.Context, ref ServiceRef) (*Diagnosis, error) {
	if err := ref.validate(); err != nil {
		return nil, err
	}
	if in, reason, err := r.o.Scope.Check(ctx, ref.Project); err != nil {
		return nil, err
	} else if !in {
		return nil, errors.New(reason)
	}
	obs, e := r.read(ctx, ref, nil)
	if e.svc != nil {
		return nil, e.svc // the other reads were cancelled
	}
	if err := joinPreferTransient(e.pol, e.neg, e.bs); err != nil {
		return nil, err
	}
	obs.AccessPolicies, obs.CheckAccess = r.o.AccessPolicies, true
	dg := &Diagnosis{Desired: DesiredFor(obs.Service), Service: obs.Service, Agent: obs.Agent, AgentErr: e.agent}
	want := dg.Desired
	if want.Intent != Enforce {
		want = Desired{Intent: Enforce, Label: labelEnabled, LabelSet: true, Managed: want.Managed}
	}
	if want.AccessSet || want.Granted != "" {
		obs.record = r.readRecord(ctx, ref.String(), want.Granted)
	}
	p := planFor(want, obs)
	p.DryRun = true
	dg.Fronting = p.fronting.backends
	extra := make([]*BackendService, len(dg.Fronting))
	for i := range dg.Fronting {
		extra[i] = &dg.Fronting[i]
	}
	p, dg.FrontendErrs = r.complete(ctx, p, obs, extra)
	if dg.FrontendErrs == nil {
		dg.FrontendErrs = map[string]error{}
	}
	dg.Plan = &Result{Ref: ref, Resource: ref.String(), DryRun: true}
	dg.Plan.fill(p, nil)
	dg.Frontends = obs.Frontends
	dg.ProjectNumber, _ = projectNumberFromAgent(obs.Agent)
	return dg, nil
}
