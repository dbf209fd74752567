package iapsetup

import (
	"context"
	"errors"
	"fmt"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// The resolvers below are the reconciler's mapper: they turn what an event
// or a replay names — a backend service, a serverless NEG, a project's
// region — into the Cloud Run services behind it, which the caller then
// reconciles one by one with Reconcile (the shape of controller-runtime's
// EnqueueRequestsFromMapFunc). They read, never write, and check the
// project against the Scope before any read: a project outside it is
// refused with a *ScopeError.

// Candidate is a service a resolver or a discovery found: Listed is the
// copy Cloud Run just listed (pass it to Reconcile with Listed, which saves
// a read), or nil when the service must be read (it was found through a
// NEG, or in Cloud Asset Inventory's index, which lags behind changes).
type Candidate struct {
	Ref    ServiceRef
	Listed *Service
}

// ScopeError is a resolve refused by the project scope before any read:
// the project is outside it (Err nil: the resource is rejected), or the
// check could not decide (Err says why; the resolve failed, transient or
// not as Err is).
type ScopeError struct {
	// Resource is what was named; Reason says why it was refused.
	Resource, Reason string
	Err              error
}

func (e *ScopeError) Error() string { return e.Resource + ": " + e.Reason }

// Unwrap returns the cause and the class sentinel.
func (e *ScopeError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrPermanent}
	}
	return newError(e.Resource, e.Err).Unwrap()
}

// Result is the outcome to report for the refused resource: rejected, or
// failed when the check could not decide.
func (e *ScopeError) Result(dryRun bool) *Result {
	res := &Result{Resource: e.Resource, Outcome: outcome.Rejected, Reason: e.Reason, DryRun: dryRun}
	if e.Err != nil {
		res.Outcome = outcome.Failed
	}
	return res
}

// checkScope returns nil when project is in scope (Scope.Check), else a
// *ScopeError for resource.
func (r *Reconciler) checkScope(ctx context.Context, project, resource string) error {
	in, reason, err := r.o.Scope.Check(ctx, project)
	switch {
	case err != nil:
		return &ScopeError{Resource: resource, Reason: err.Error(), Err: err}
	case !in:
		return &ScopeError{Resource: resource, Reason: reason}
	}
	return nil
}

// ResolveRegion lists the services of project in region (a region: Cloud
// Run v2 refuses the "-" wildcard; discovery across regions is
// internal/gcp's Discovery): one ListServices call, each service returned
// with its listed copy. Reconciling those with Listed decides the ones not
// labelled iap=enabled from the copy alone.
func (r *Reconciler) ResolveRegion(ctx context.Context, project, region string) ([]Candidate, error) {
	where := "projects/" + project + "/locations/" + region
	if err := r.checkScope(ctx, project, where); err != nil {
		return nil, err
	}
	return r.listRegion(ctx, project, region)
}

func (r *Reconciler) listRegion(ctx context.Context, project, region string) ([]Candidate, error) {
	svcs, err := r.d.CloudRun.ListServices(ctx, project, region)
	if err != nil {
		return nil, newError("projects/"+project+"/locations/"+region, fmt.Errorf("listing services: %w", err))
	}
	cs := make([]Candidate, len(svcs))
	for i, s := range svcs {
		cs[i] = Candidate{Ref: s.Ref, Listed: s}
	}
	return cs, nil
}

// ResolveBackend finds the Cloud Run services behind a backend service
// (for Compute events): it reads the backend service and follows each
// backends[].group that is a regional NEG to its cloudRun.service (see
// ResolveNEG). A missing backend service or NEG yields nothing and no
// error; a NEG that could not be read is reported in the joined error,
// the others still resolved.
func (r *Reconciler) ResolveBackend(ctx context.Context, ref BackendRef) ([]Candidate, error) {
	if err := r.checkScope(ctx, ref.Project, ref.String()); err != nil {
		return nil, err
	}
	b, err := r.d.Compute.GetBackendService(ctx, ref)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, newError(ref.String(), fmt.Errorf("reading backend service: %w", err))
	}
	var negs []NEG
	var errs []error
	for _, grp := range b.Groups {
		nr, perr := parseNEGRef(grp)
		if perr != nil {
			continue // an instance group or a global NEG: not Cloud Run
		}
		n, gerr := r.d.Compute.GetNEG(ctx, nr)
		switch {
		case errors.Is(gerr, ErrNotFound):
			continue
		case gerr != nil:
			errs = append(errs, newError(ref.String(), fmt.Errorf("reading network endpoint group %s: %w", nr, gerr)))
			continue
		}
		negs = append(negs, *n)
	}
	cs, err := r.behindNEGs(ctx, ref.Project, negs)
	return cs, errors.Join(append(errs, err)...)
}

// ResolveNEG finds the Cloud Run service a serverless NEG points at (for
// NEG insert events); a NEG that selects services by URL mask or tag makes
// every service of its region a candidate (listed, as ResolveRegion
// returns them). A missing NEG yields nothing and no error.
func (r *Reconciler) ResolveNEG(ctx context.Context, ref NEGRef) ([]Candidate, error) {
	if err := r.checkScope(ctx, ref.Project, ref.String()); err != nil {
		return nil, err
	}
	n, err := r.d.Compute.GetNEG(ctx, ref)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, newError(ref.String(), fmt.Errorf("reading network endpoint group: %w", err))
	}
	return r.behindNEGs(ctx, ref.Project, []NEG{*n})
}

// behindNEGs maps NEGs to services: the regions of URL-mask NEGs listed
// first, then each named service not in those listings, each once.
// project is in scope already; a listing in another is checked first.
func (r *Reconciler) behindNEGs(ctx context.Context, project string, negs []NEG) ([]Candidate, error) {
	type region struct{ project, region string }
	var (
		named   []ServiceRef
		sweeps  []region
		seen    = map[any]bool{}
		out     []Candidate
		errs    []error
		inSweep = map[ServiceRef]bool{}
	)
	for _, n := range negs {
		nr, err := parseNEGRef(n.SelfLink)
		if n.CloudRun == nil || err != nil {
			continue
		}
		if n.CloudRun.Service == "" {
			if rg := (region{nr.Project, nr.Region}); !seen[rg] {
				seen[rg] = true
				sweeps = append(sweeps, rg)
			}
			continue
		}
		if ref := (ServiceRef{Project: nr.Project, Region: nr.Region, Name: n.CloudRun.Service}); !seen[ref] {
			seen[ref] = true
			named = append(named, ref)
		}
	}
	for _, sw := range sweeps {
		list := r.listRegion
		if sw.project != project {
			list = r.ResolveRegion
		}
		cs, err := list(ctx, sw.project, sw.region)
		for _, c := range cs {
			inSweep[c.Ref] = true
		}
		out = append(out, cs...)
		errs = append(errs, err)
	}
	for _, ref := range named {
		if !inSweep[ref] {
			out = append(out, Candidate{Ref: ref})
		}
	}
	return out, errors.Join(errs...)
}
