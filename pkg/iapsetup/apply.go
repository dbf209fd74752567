package iapsetup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcperr"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// writeError adds to a failed write how often it was attempted and the
// permission it needs.
type writeError struct {
	permission string
	attempts   int
	err        error
}

func (e *writeError) Error() string {
	msg := e.err.Error()
	if e.attempts > 1 {
		msg = fmt.Sprintf("%s (after %d attempts)", msg, e.attempts)
	}
	if e.permission != "" && gcperr.IsPermissionDenied(e.err) {
		msg += "; iapguard's service account needs " + e.permission
	}
	return msg
}

func (e *writeError) Unwrap() error { return e.err }

// apply performs the plan's writes, one per resource, each a bounded
// read-modify-write: the IAM policy first (so IAP's agent can invoke the
// service before IAP is switched on; enforce may have written it already,
// concurrently with the second read round), then the access grants on the IAP
// resources concurrently (so someone may pass once IAP is on; a failed
// grant does not stop enforcement), then the backend services and the
// service concurrently — the service update records the grants that
// succeeded in AccessAnnotation. Every write passes the guard in guard.go
// first.
//
// In a dry run the IAM, IAP and Compute writes are skipped (those APIs have
// no validate-only mode) and the service update is sent with validate_only.
// apply records per-part errors in the plan, recomposes it, and returns
// the joined errors.
func (r *Reconciler) apply(ctx context.Context, p *Plan) error {
	p.applied = true
	defer p.compose()
	if !p.DryRun && p.policy.after != nil {
		if !p.policy.attempted {
			r.writePolicy(ctx, p)
		}
		if p.policy.err != nil {
			if err := p.policy.err; len(p.policy.removed) > 0 && p.door == nil && !gcperr.IsConflict(err) && !errors.Is(err, ErrUnsafeWrite) {
				// Public access must end whatever else fails (a brand-new
				// agent IAM refuses, a permission to add it missing): the
				// public invokers go in a write of their own. (Not after
				// lost races, which a redelivery retries, nor after a
				// refused unsafe write, which is a bug.)
				// When it fails too, the failed policy write already says
				// what to do (its fix removes the public members).
				if d := r.closeDoor(ctx, p.Ref, p.policy.before); d != nil && d.err == nil {
					p.door = d
				} else if d != nil {
					r.log.WarnContext(ctx, "removing public invokers failed", "service", p.Ref.ResourceName(), "error", d.err)
				}
			}
			// IAP must not be switched on before its agent may invoke the
			// service: nothing else is written in this run.
			if !p.service.update.empty() {
				p.service.err = errNotAttempted
			}
			for _, bp := range p.backends {
				if bp.write {
					bp.err = errNotAttempted
				}
			}
			for _, part := range p.access.list() {
				if part.after != nil {
					part.err = errNotAttempted
				}
			}
			return p.policy.err
		}
	}
	accessWrites := !p.DryRun && p.access.writes() > 0
	intentFailed := false
	if accessWrites {
		if err := r.recordIntent(ctx, p); err != nil {
			intentFailed = true
			// Nothing is granted that could not be recorded first.
			for _, part := range p.access.list() {
				if part.after != nil {
					part.err = err
				}
			}
			accessWrites = false
		}
	}
	if accessWrites {
		var ag errgroup.Group
		for _, part := range p.access.list() {
			if part.after != nil {
				ag.Go(func() error { r.writeAccess(ctx, p, part); return nil })
			}
		}
		_ = ag.Wait()
	}
	// The access annotation to record is decided before the writes run
	// concurrently.
	sw := serviceWrite{access: p.access.annotation(), marker: p.marker, lb: p.Mode == outcome.LoadBalancer, fronted: len(p.fronting.backends) > 0}
	if accessWrites || intentFailed {
		// Record the grants as made (a failed one is not recorded). When
		// the intent could not be recorded nothing was granted, and the
		// service update still made (IAP, marker) must not carry the
		// planned record of grants that never happened.
		p.service = sw.plan(p.service.before, p.Desired)
		if p.access.intent {
			// Report the record's change from what it was before the
			// intent was written.
			for i, c := range p.service.changes {
				if c.Field == "annotations["+AccessAnnotation+"]" {
					p.service.changes[i].Before = p.access.rawAnn
				}
			}
		}
	}
	var g errgroup.Group
	if !p.DryRun {
		for _, bp := range p.backends {
			if bp.write {
				g.Go(func() error { r.writeBackend(ctx, bp); return nil })
			}
		}
	}
	if !p.service.update.empty() {
		g.Go(func() error { r.writeService(ctx, p, sw); return nil })
	}
	_ = g.Wait()
	errs := []error{p.policy.err, p.service.err}
	if p.door != nil {
		errs = append(errs, p.door.err)
	}
	for _, bp := range p.backends {
		errs = append(errs, bp.err)
	}
	for _, part := range p.access.list() {
		errs = append(errs, part.err, part.readErr)
	}
	if p.access != nil {
		errs = append(errs, p.access.keyErr)
	}
	return joinPreferTransient(errs...)
}

// recordIntent writes the access record with the grants about to be made
// as pending (one UpdateService carrying the annotation alone), so that a
// redelivery after a crash or a failed confirmation recognises them as
// iapguard's. The service read is replaced by the update's result, whose
// etag guards the confirming update. Without a signing key nothing is
// written (an unsigned record is never trusted).
func (r *Reconciler) recordIntent(ctx context.Context, p *Plan) error {
	v := p.access.intentAnnotation()
	if v == nil {
		return nil
	}
	before := p.service.before
	ann := cloneMap(before.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AccessAnnotation] = *v
	u := &ServiceUpdate{Ref: before.Ref, Etag: before.Etag, Source: before.Source, Annotations: ann}
	if err := checkServiceUpdate(before, u); err != nil {
		return fmt.Errorf("recording the grants as intended: %w", err)
	}
	s, err := r.d.Services.UpdateService(ctx, u)
	if err != nil {
		return &writeError{"run.services.update", 1, fmt.Errorf("recording the grants as intended before making them: %w", err)}
	}
	if s == nil || s.Etag == "" {
		if s, err = r.d.Services.GetService(ctx, p.Ref); err != nil {
			return fmt.Errorf("re-reading the service after recording the grants as intended: %w", err)
		}
	}
	p.access.intent = true
	p.service = &servicePart{before: s, lb: p.service.lb, fronted: p.service.fronted}
	r.log.InfoContext(ctx, "recorded access grants as intended", "service", p.Ref.ResourceName())
	return nil
}

// serviceWrite is what the service part depends on besides the service:
// fixed before the concurrent writes start.
type serviceWrite struct {
	lb, fronted bool
	access      *string
	marker      *markerState
}

func (sw serviceWrite) plan(s *Service, d Desired) *servicePart {
	sp := planService(s, d, sw.lb, sw.access, sw.marker)
	sp.fronted = sw.fronted
	return &sp
}

// errNotAttempted marks a write skipped because an earlier one failed.
var errNotAttempted = errors.New("not attempted: the IAM policy write failed first")

// joinPreferTransient joins errs; the result is transient (per gcperr) when
// any of them is, so the event is redelivered while something may still
// succeed.
func joinPreferTransient(errs ...error) error {
	var trans, other []error
	for _, e := range errs {
		switch {
		case e == nil, errors.Is(e, errNotAttempted):
		case transient(e):
			trans = append(trans, e)
		default:
			other = append(other, e)
		}
	}
	if len(trans) > 0 {
		return classifiedError{errors.Join(append(trans, other...)...), true}
	}
	if len(other) > 0 {
		return classifiedError{errors.Join(other...), false}
	}
	return nil
}

// classifiedError carries a decided class, so a joined error's class does
// not depend on which of its parts errors.As happens to find first.
type classifiedError struct {
	err       error
	transient bool
}

func (c classifiedError) Error() string { return c.err.Error() }
func (c classifiedError) Unwrap() error { return c.err }

// retry runs a read-modify-write: write() is attempted; on a conflict
// (ABORTED / 412) reread() recomputes the part from a fresh read and
// reports whether a write is still needed, up to MaxAttempts writes.
func (r *Reconciler) retry(ctx context.Context, write func() error, reread func() (bool, error)) (attempts int, err error) {
	bo := gax.Backoff{Initial: r.o.Backoff.Initial, Max: r.o.Backoff.Max, Multiplier: r.o.Backoff.Multiplier}
	for attempts = 1; ; attempts++ {
		err = write()
		if err == nil || !gcperr.IsConflict(err) || attempts >= r.o.MaxAttempts {
			return attempts, err
		}
		if serr := r.o.sleep(ctx, bo.Pause()); serr != nil {
			return attempts, fmt.Errorf("%w (while backing off after: %w)", serr, err)
		}
		again, rerr := reread()
		if rerr != nil {
			return attempts, rerr
		}
		if !again {
			return attempts, nil
		}
	}
}

func (r *Reconciler) writePolicy(ctx context.Context, p *Plan) {
	attempts, err := r.retry(ctx,
		func() error {
			pp := p.policy
			if err := checkPolicyWrite(pp.before, pp.after, p.agent); err != nil {
				return err
			}
			return r.setPolicyAwaitingAgent(ctx, p.Ref, pp.after, p.agent)
		},
		func() (bool, error) {
			pol, err := r.d.Policies.GetIAMPolicy(ctx, p.Ref)
			if err != nil {
				return false, fmt.Errorf("re-reading IAM policy after a conflict: %w", err)
			}
			np := planPolicy(p.Ref, pol, p.agent)
			p.policy = &np
			return np.after != nil, nil
		})
	p.policy.attempted = true
	if err != nil {
		p.policy.err = &writeError{"run.services.setIamPolicy", attempts, err}
		return
	}
	if p.policy.after != nil {
		r.log.InfoContext(ctx, "updated IAM policy", "service", p.Ref.ResourceName(), "changes", len(p.policy.changes), "attempts", attempts)
	}
}

// doorNote marks the removal of public invokers made by closeDoor.
const doorNote = " in a write of its own"

// closeDoor removes allUsers and allAuthenticatedUsers from
// roles/run.invoker in a write of its own (guarded by checkPolicyWrite with
// no agent: it may only remove public invokers), so that public access ends
// whatever else fails: the IAP service agent lookup or a Compute read
// (reconcile calls it when the observation failed), or the write that also
// adds the agent (apply calls it when that write failed, e.g. IAM refusing
// a brand-new agent it does not know yet). It needs
// run.services.getIamPolicy and run.services.setIamPolicy only. pol is the
// policy as read; a conflict re-reads it. It returns nil when there was
// nothing to remove.
//
// Everything else going well, the public invokers are removed in the
// policy write that adds the agent — the first write of a reconcile — and
// closeDoor is not needed: one write, not two.
func (r *Reconciler) closeDoor(ctx context.Context, ref ServiceRef, pol *Policy) *policyPart {
	pp := planPolicy(ref, pol, "")
	if pp.after == nil {
		return nil
	}
	attempts, err := r.retry(ctx,
		func() error {
			if err := checkPolicyWrite(pp.before, pp.after, ""); err != nil {
				return err
			}
			_, err := r.d.Policies.SetIAMPolicy(ctx, ref, pp.after)
			return err
		},
		func() (bool, error) {
			pol, err := r.d.Policies.GetIAMPolicy(ctx, ref)
			if err != nil {
				return false, fmt.Errorf("re-reading IAM policy after a conflict: %w", err)
			}
			pp = planPolicy(ref, pol, "")
			return pp.after != nil, nil
		})
	pp.attempted = true
	if err != nil {
		pp.err = &writeError{"run.services.setIamPolicy", attempts, err}
		return &pp
	}
	if pp.after == nil {
		return nil // someone else removed them meanwhile
	}
	r.log.InfoContext(ctx, "removed public invokers", "service", ref.ResourceName(), "removed", pp.removed, "attempts", attempts)
	return &pp
}

// setPolicyAwaitingAgent writes the service's IAM policy. IAM refuses a
// policy naming a service account it does not see yet with 400 "Service
// account ... does not exist." — for a while after generateServiceIdentity
// created the IAP service agent, IAM being eventually consistent. That
// refusal, for the agent, is retried with Backoff for at most AgentWait
// (and not past the context's deadline), then returned as a transient error
// so the event is redelivered; it never ends the reconcile as failed.
func (r *Reconciler) setPolicyAwaitingAgent(ctx context.Context, ref ServiceRef, pol *Policy, agent string) error {
	bo := gax.Backoff{Initial: r.o.Backoff.Initial, Max: r.o.Backoff.Max, Multiplier: r.o.Backoff.Multiplier}
	var waited time.Duration
	for {
		_, err := r.d.Policies.SetIAMPolicy(ctx, ref, pol)
		missing, ok := gcperr.MissingServiceAccount(err)
		if !ok || agent == "" || !strings.EqualFold(missing, agent) {
			return err
		}
		pause := bo.Pause()
		dl, hasDeadline := ctx.Deadline()
		if waited+pause > r.o.AgentWait || hasDeadline && r.o.now().Add(pause).After(dl) {
			return classifiedError{fmt.Errorf("IAM does not see the IAP service agent %s yet (it is eventually consistent after generateServiceIdentity created it; waited %s): %w", agent, waited, err), true}
		}
		if serr := r.o.sleep(ctx, pause); serr != nil {
			return fmt.Errorf("%w (while waiting for IAM to see the IAP service agent, after: %w)", serr, err)
		}
		waited += pause
	}
}

func (r *Reconciler) writeService(ctx context.Context, p *Plan, sw serviceWrite) {
	attempts, err := r.retry(ctx,
		func() error {
			sp := p.service
			if err := checkServiceUpdate(sp.before, sp.update); err != nil {
				return err
			}
			u := *sp.update
			u.ValidateOnly = p.DryRun
			_, err := r.d.Services.UpdateService(ctx, &u)
			if err != nil && p.DryRun && gcperr.IsConflict(err) {
				// A dry run does not retry: report what was planned.
				return fmt.Errorf("validating the update: %w", err)
			}
			return err
		},
		func() (bool, error) {
			s, err := r.d.Services.GetService(ctx, p.Ref)
			if err != nil {
				return false, fmt.Errorf("re-reading the service after a conflict: %w", err)
			}
			d := DesiredFor(s)
			if d.Intent != Enforce || d.Access != p.Desired.Access || d.AccessSet != p.Desired.AccessSet {
				// The labels changed under us: stop, the event for that
				// change reconciles again.
				return false, fmt.Errorf("labels %s=%q %s=%q changed during the reconcile: %w", LabelKey, d.Label, AccessLabelKey, d.Access, errRelabelled)
			}
			p.service = sw.plan(s, d)
			return !p.service.update.empty(), nil
		})
	if err != nil {
		p.service.err = &writeError{"run.services.update", attempts, err}
		return
	}
	if !p.DryRun && !p.service.update.empty() {
		r.log.InfoContext(ctx, "updated service", "service", p.Ref.ResourceName(), "mask", p.service.update.Mask(), "attempts", attempts)
	}
}

// errRelabelled reports that the service's labels changed during the
// reconcile; like a conflict, it is transient: the event for that change
// reconciles again.
var errRelabelled = errors.New("labels changed concurrently")

// transient classifies an error of this package's reconciles.
func transient(err error) bool {
	var c classifiedError
	if errors.As(err, &c) {
		return c.transient
	}
	if err == nil || errors.Is(err, ErrUnsafeWrite) {
		return false
	}
	return gcperr.IsTransient(err) || errors.Is(err, errRelabelled)
}

// writeAccess grants and revokes roles/iap.httpsResourceAccessor on one IAP
// resource. The IAP API refusing the write as invalid (a member it does not
// know) marks the part rejected: nothing was granted, and a person must fix
// the access policy.
func (r *Reconciler) writeAccess(ctx context.Context, p *Plan, part *accessPart) {
	ap := p.access
	attempts, err := r.retry(ctx,
		func() error {
			if err := checkAccessWrite(part.before, part.after, ap.wanted, ap.own(part.res.Name, part.before)); err != nil {
				return err
			}
			_, err := r.d.IAP.SetIAPPolicy(ctx, part.res.Name, part.after)
			return err
		},
		func() (bool, error) {
			pol, err := r.d.IAP.GetIAPPolicy(ctx, part.res.Name)
			if err != nil {
				return false, fmt.Errorf("re-reading the IAM policy of %s after a conflict: %w", part.res.Name, err)
			}
			*part = planAccessPart(part.res, pol, ap)
			return part.after != nil, nil
		})
	switch {
	case err != nil && !errors.Is(err, ErrUnsafeWrite) && gcperr.Code(err) == codes.InvalidArgument:
		part.rejected = err
	case err != nil:
		part.err = &writeError{"iap.webServices.setIamPolicy", attempts, err}
	case part.after != nil:
		r.log.InfoContext(ctx, "updated IAP access", "resource", part.res.Name, "granted", part.added, "revoked", part.removed, "attempts", attempts)
	}
}

func (r *Reconciler) writeBackend(ctx context.Context, bp *backendPart) {
	attempts, err := r.retry(ctx,
		func() error {
			if err := checkBackendWrite(&bp.backend); err != nil {
				return err
			}
			return r.d.Backends.EnableIAP(ctx, bp.backend.Ref, bp.backend.Fingerprint)
		},
		func() (bool, error) {
			b, err := r.d.Backends.GetBackendService(ctx, bp.backend.Ref)
			if err != nil {
				return false, fmt.Errorf("re-reading the backend service after a conflict: %w", err)
			}
			*bp = planBackend(*b, bp.frontend, bp.builtin)
			return bp.write, nil
		})
	if err != nil {
		perm := "compute.backendServices.update"
		if bp.backend.Ref.Region != "" {
			perm = "compute.regionBackendServices.update"
		}
		bp.err = &writeError{perm, attempts, err}
		return
	}
	if bp.write {
		r.log.InfoContext(ctx, "enabled IAP", "backendService", bp.backend.Ref.Path(), "attempts", attempts)
	}
}
