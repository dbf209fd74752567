package iapsetup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/internal/boundedre"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
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
	if e.permission != "" && errors.Is(e.err, ErrPermission) {
		msg += "; iapguard's service account needs " + e.permission
	}
	return msg
}

func (e *writeError) Unwrap() error { return e.err }

// applyRecord is what apply did (not to be confused with the access record,
// access_record.go): the plan's parts as written — a part lost to
// a concurrent change is re-planned from a fresh read before its retry —
// each carrying its write's error (errNotAttempted: skipped because the
// IAM policy write failed first), and the removal of public invokers made
// in a write of its own (door). The plan itself is never written to.
type applyRecord struct {
	parts
	door *policyPart
}

// apply performs the plan's writes, one per resource, each a bounded
// read-modify-write, and returns the plan it followed with its record:
// the IAM policy first (so IAP's agent can invoke the service before IAP
// is switched on), then the access grants on the IAP resources
// concurrently (so someone may pass once IAP is on; a failed grant does
// not stop enforcement), then the backend services and the service
// concurrently — the service update records the grants that succeeded in
// accessAnnotation. Every write passes the guard in guard.go first.
//
// refine, when not nil, is the second read round (Reconciler.complete): it
// runs while the IAM policy is written — the write and whether it is made
// depend on the first round alone, and refine only reads — and the writes
// after it follow the plan refine returns. On the critical path that is
// one round fewer than reading first: read round → IAM write ∥ second
// reads → service update and backend patches → their operations.
//
// In a dry run the IAM, IAP and Compute writes are skipped (those APIs have
// no validate-only mode) and the service update is sent with validate_only.
// The error joins the parts' errors.
func (r *Reconciler) apply(ctx context.Context, p *plan, refine func() *plan) (*plan, *applyRecord, error) {
	writesPolicy := !p.DryRun && p.policy.after != nil
	var wrote *policyPart
	var pg errgroup.Group
	if writesPolicy {
		first := p
		pg.Go(func() error { wrote = r.writePolicy(ctx, first.Ref, first.agent, *first.policy); return nil })
	}
	if refine != nil {
		p = refine()
	}
	_ = pg.Wait()
	rec := &applyRecord{parts: p.parts.clone()}
	if wrote != nil {
		rec.policy = wrote // planned from the same first-round reads as p.policy
	}
	if err := rec.policy.err; writesPolicy && err != nil {
		if len(rec.policy.removed) > 0 && !errors.Is(err, ErrConflict) && !errors.Is(err, errUnsafeWrite) {
			// Public access must end whatever else fails (a brand-new
			// agent IAM refuses, a permission to add it missing): the
			// public invokers go in a write of their own. (Not after
			// lost races, which a redelivery retries, nor after a
			// refused unsafe write, which is a bug.)
			// When it fails too, the failed policy write already says
			// what to do (its fix removes the public members).
			if d := r.closeDoor(ctx, p.Ref, rec.policy.before); d != nil && d.err == nil {
				rec.door = d
			} else if d != nil {
				r.log.WarnContext(ctx, "removing public invokers failed", "service", p.Ref.String(), "error", d.err)
			}
		}
		// IAP must not be switched on before its agent may invoke the
		// service: nothing else is written in this run.
		if !rec.service.update.empty() {
			rec.service.err = errNotAttempted
		}
		for _, bp := range rec.backends {
			if bp.write {
				bp.err = errNotAttempted
			}
		}
		rec.access.failWrites(errNotAttempted)
		return p, rec, err
	}
	accessWrites := !p.DryRun && rec.access.writes() > 0
	var intentErr error
	if accessWrites {
		intentErr = r.recordIntent(ctx, p, rec)
	}
	if intentErr != nil {
		rec.access.failWrites(intentErr) // nothing is granted that could not be recorded first
	} else if accessWrites {
		var ag errgroup.Group
		for _, part := range rec.access.list() {
			if part.after != nil {
				ag.Go(func() error { r.writeAccess(ctx, rec.access, part); return nil })
			}
		}
		_ = ag.Wait()
	}
	// The access annotation to record is decided before the writes run
	// concurrently.
	sw := serviceWrite{access: rec.access.annotation(), marker: p.marker, lb: p.Mode == outcome.LoadBalancer, fronted: len(p.fronting.backends) > 0}
	if accessWrites {
		// Record the grants as made (a failed one is not recorded). When
		// the intent could not be recorded nothing was granted, and the
		// service update still made (IAP, marker) must not carry the
		// planned record of grants that never happened.
		rec.service = sw.plan(rec.service.before, p.Desired)
		if rec.access.intent {
			// Report the record's change from what it was before the
			// intent was written.
			for i, c := range rec.service.changes {
				if c.Field == "annotations["+accessAnnotation+"]" {
					rec.service.changes[i].Before = rec.access.rawAnn
				}
			}
		}
	}
	var g errgroup.Group
	if !p.DryRun {
		for _, bp := range rec.backends {
			if bp.write {
				g.Go(func() error { r.writeBackend(ctx, bp); return nil })
			}
		}
	}
	if !rec.service.update.empty() {
		g.Go(func() error { rec.service = r.writeService(ctx, p, *rec.service, sw); return nil })
	}
	_ = g.Wait()
	errs := rec.errs()
	if rec.access != nil {
		errs = append(errs, rec.access.keyErr)
	}
	return p, rec, joinPreferTransient(errs...)
}

// recordIntent writes the access record with the grants about to be made
// as pending (one UpdateService carrying the annotation alone), so that a
// redelivery after a crash or a failed confirmation recognises them as
// iapguard's. The service read is replaced by the update's result, whose
// etag guards the confirming update. Without a signing key nothing is
// written (an unsigned record is never trusted).
func (r *Reconciler) recordIntent(ctx context.Context, p *plan, rec *applyRecord) error {
	v := rec.access.intentAnnotation()
	if v == nil {
		return nil
	}
	before := rec.service.before
	ann := maps.Clone(before.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[accessAnnotation] = *v
	u := &ServiceUpdate{Ref: before.Ref, Etag: before.Etag, Source: before.Source, Annotations: ann}
	if err := checkServiceUpdate(before, u); err != nil {
		return fmt.Errorf("recording the grants as intended: %w", err)
	}
	s, err := r.d.CloudRun.UpdateService(ctx, u)
	if err != nil {
		return &writeError{"run.services.update", 1, fmt.Errorf("recording the grants as intended before making them: %w", err)}
	}
	if s == nil || s.Etag == "" {
		if s, err = r.d.CloudRun.GetService(ctx, p.Ref); err != nil {
			return fmt.Errorf("re-reading the service after recording the grants as intended: %w", err)
		}
	}
	rec.access.intent = true
	rec.service = &servicePart{before: s, lb: rec.service.lb, fronted: rec.service.fronted}
	r.log.InfoContext(ctx, "recorded access grants as intended", "service", p.Ref.String())
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

// joinPreferTransient joins errs; the result is transient (transient()) when
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
	bo := r.o.backoff // a copy: each loop paces its own retries
	for attempts = 1; ; attempts++ {
		err = write()
		if err == nil || !errors.Is(err, ErrConflict) || attempts >= r.o.MaxAttempts {
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

// writePolicy writes pp (the plan's IAM part; without an agent, closeDoor's
// removal of public invokers) and returns it as written: re-planned after a
// conflict, with the write's error.
func (r *Reconciler) writePolicy(ctx context.Context, ref ServiceRef, agent string, pp policyPart) *policyPart {
	attempts, err := r.retry(ctx,
		func() error {
			if err := checkPolicyWrite(pp.before, pp.after, agent); err != nil {
				return err
			}
			return r.setPolicyAwaitingAgent(ctx, ref, pp.after, agent)
		},
		func() (bool, error) {
			pol, err := r.d.CloudRun.GetIAMPolicy(ctx, ref)
			if err != nil {
				return false, fmt.Errorf("re-reading IAM policy after a conflict: %w", err)
			}
			pp = planPolicy(ref, pol, agent)
			return pp.after != nil, nil
		})
	if err != nil {
		pp.err = &writeError{"run.services.setIamPolicy", attempts, err}
		return &pp
	}
	switch {
	case pp.after != nil && agent == "":
		r.log.InfoContext(ctx, "removed public invokers", "service", ref.String(), "removed", pp.removed, "attempts", attempts)
	case pp.after != nil:
		r.log.InfoContext(ctx, "updated IAM policy", "service", ref.String(), "changes", len(pp.changes), "attempts", attempts)
	}
	return &pp
}

// observeFailed ends a reconcile whose observation failed: skipped when
// the service is gone, else failed with err — after closing the door when
// the service is labelled iap=enabled and its IAM policy was read: public
// members leave roles/run.invoker in a write of their own (closeDoor), the
// one write made without a plan.
func (r *Reconciler) observeFailed(ctx context.Context, res *Result, obs *observed, err error, dryRun bool, log *slog.Logger) (*Result, error) {
	if errors.Is(err, ErrNotFound) && obs.Service == nil || errors.Is(err, errGone) {
		res.Outcome, res.Reason = outcome.Skipped, "service not found (deleted?)"
		log.DebugContext(ctx, "service gone")
		return res, nil
	}
	res.Outcome, res.Reason = outcome.Failed, err.Error()
	if !dryRun && obs.Service != nil && obs.Policy != nil && DesiredFor(obs.Service).Intent == Enforce {
		if d := r.closeDoor(ctx, res.Ref, obs.Policy); d != nil {
			res.Steps = []outcome.Step{d.doorStep(res.Ref)}
			if d.err == nil {
				res.Changes = d.changes
				res.Reason += "; " + res.Steps[0].Message
			} else {
				res.Reason += "; removing public access failed too: " + d.err.Error()
			}
		}
	}
	return res, newError(res.Resource, err)
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
	done := r.writePolicy(ctx, ref, "", pp)
	if done.err == nil && done.after == nil {
		return nil // someone else removed them meanwhile
	}
	return done
}

// setPolicyAwaitingAgent writes the service's IAM policy. IAM refuses a
// policy naming a service account it does not see yet with 400 "Service
// account ... does not exist." — for a while after generateServiceIdentity
// created the IAP service agent, IAM being eventually consistent. That
// refusal, for the agent, is retried with backoff for at most AgentWait
// (and not past the context's deadline), then returned as a transient error
// so the event is redelivered; it never ends the reconcile as failed.
func (r *Reconciler) setPolicyAwaitingAgent(ctx context.Context, ref ServiceRef, pol *Policy, agent string) error {
	bo := r.o.backoff // a copy: each loop paces its own retries
	var waited time.Duration
	for {
		_, err := r.d.CloudRun.SetIAMPolicy(ctx, ref, pol)
		missing, ok := missingAccount(err)
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

// writeService sends sp's update (validate-only in a dry run) and returns
// the part as written: re-planned after a conflict, with the write's error.
// missingAccountRE matches IAM's refusal of a policy that names a service
// account it does not know: 400 INVALID_ARGUMENT "Service account EMAIL does
// not exist." (google-cloud-go issue 11482, terraform-provider-google issue
// 9969).
var missingAccountRE = boundedre.MustCompile(`Service account (\S+@\S+) does not exist`)

// missingAccount reports whether err is IAM refusing a policy write because
// a serviceAccount: member does not exist, and which account. It is
// permanent by itself (a member someone mistyped stays wrong), but IAM is
// eventually consistent: for a while after an account is created, writes
// naming it fail the same way (setPolicyAwaitingAgent).
func missingAccount(err error) (email string, ok bool) {
	if !errors.Is(err, ErrInvalid) {
		return "", false
	}
	m := missingAccountRE.FindStringSubmatch(err.Error())
	if m == nil {
		return "", false
	}
	return strings.TrimSuffix(m[1], "."), true
}

func (r *Reconciler) writeService(ctx context.Context, p *plan, sp servicePart, sw serviceWrite) *servicePart {
	attempts, err := r.retry(ctx,
		func() error {
			if err := checkServiceUpdate(sp.before, sp.update); err != nil {
				return err
			}
			u := *sp.update
			u.ValidateOnly = p.DryRun
			_, err := r.d.CloudRun.UpdateService(ctx, &u)
			if err != nil && p.DryRun && errors.Is(err, ErrConflict) {
				// A dry run does not retry: report what was planned.
				return fmt.Errorf("validating the update: %w", err)
			}
			return err
		},
		func() (bool, error) {
			s, err := r.d.CloudRun.GetService(ctx, p.Ref)
			if err != nil {
				return false, fmt.Errorf("re-reading the service after a conflict: %w", err)
			}
			d := DesiredFor(s)
			if d.Intent != Enforce || d.Access != p.Desired.Access || d.AccessSet != p.Desired.AccessSet {
				// The labels changed under us: stop, the event for that
				// change reconciles again.
				return false, fmt.Errorf("labels %s=%q %s=%q changed during the reconcile: %w", LabelKey, d.Label, access.LabelKey, d.Access, errRelabelled)
			}
			sp = *sw.plan(s, d)
			return !sp.update.empty(), nil
		})
	if err != nil {
		sp.err = &writeError{"run.services.update", attempts, err}
		return &sp
	}
	if !p.DryRun && !sp.update.empty() {
		r.log.InfoContext(ctx, "updated service", "service", p.Ref.String(), "mask", sp.update.Mask(), "attempts", attempts)
	}
	return &sp
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
	if err == nil || errors.Is(err, errUnsafeWrite) {
		return false
	}
	return errors.Is(err, ErrTransient) || errors.Is(err, ErrConflict) || errors.Is(err, errRelabelled) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// writeAccess grants and revokes roles/iap.httpsResourceAccessor on one IAP
// resource. The IAP API refusing the write as invalid (a member it does not
// know) marks the part rejected: nothing was granted, and a person must fix
// the access policy.
func (r *Reconciler) writeAccess(ctx context.Context, ap *accessPlan, part *accessPart) {
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
	case err != nil && !errors.Is(err, errUnsafeWrite) && errors.Is(err, ErrInvalid):
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
			return r.d.Compute.EnableIAP(ctx, bp.backend.Ref, bp.backend.Fingerprint)
		},
		func() (bool, error) {
			b, err := r.d.Compute.GetBackendService(ctx, bp.backend.Ref)
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
		r.log.InfoContext(ctx, "enabled IAP", "backendService", bp.backend.Ref.String(), "attempts", attempts)
	}
}
