package iapsetup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Options configure a Reconciler.
type Options struct {
	// Scope is the project allowlist (required; scope.Scope, which must
	// not be empty).
	Scope ScopeCheck
	// DryRun plans and reports without changing anything (per call:
	// WithDryRun).
	DryRun bool
	// MaxAttempts bounds every read-modify-write that loses an
	// optimistic-concurrency race (ABORTED / 412). Default 5.
	MaxAttempts int
	// AgentWait bounds how long one reconcile keeps retrying (with backoff)
	// an IAM policy write that IAM refuses because the IAP service agent it
	// names "does not exist" yet: generateServiceIdentity has just created
	// it and IAM is eventually consistent. After that — or sooner, when the
	// context's deadline would pass — the reconcile ends in a transient
	// error, so Eventarc redelivers the event. Default 20 s.
	AgentWait time.Duration
	// AgentTTL is how long a project's IAP service agent email is cached.
	// Default 1 h.
	AgentTTL time.Duration
	// Logger receives one line per mutation (Info) and no-op (Debug).
	// Default: discard.
	Logger *slog.Logger
	// AccessPolicies are the access policies services name with the
	// iap-access label (nil: none; a labelled service is then rejected).
	AccessPolicies *access.Policies
	// AccessProjectTTL is how long the project-wide IAP policy
	// (projects/N/iap_web, read for the who-can-pass check) is cached.
	// Default 1 minute; negative: not cached.
	AccessProjectTTL time.Duration
	// ProjectCacheSize bounds each per-project cache (IAP service agents,
	// which carry the project numbers; project-wide IAP policies): the
	// least recently used project is evicted first. Default 10,000.
	ProjectCacheSize int

	// Test hooks (export_test.go sets them): backoff paces the retries of
	// lost races and of the agent wait (default: 100 ms initial, 2 s max,
	// ×2); sleep waits d or until ctx ends (default: a timer); now is the
	// clock of durations and cache expiry (default time.Now).
	backoff gax.Backoff
	sleep   func(ctx context.Context, d time.Duration) error
	now     func() time.Time
}

// Reconciler makes labelled Cloud Run services comply. It is safe for
// concurrent use; build one per process and reuse it (it caches IAP service
// agent emails).
type Reconciler struct {
	d          Deps
	o          Options
	agents     *agentCache
	projectIAP *policyCache
	// keys caches access-record keys (nil without Deps.RecordKeys).
	keys *cache.Loading[recordKey]
	log  *slog.Logger
}

// New returns a Reconciler over d.
func New(d Deps, o Options) (*Reconciler, error) {
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("iapsetup dependencies: %w", err)
	}
	if e, ok := o.Scope.(interface{ Empty() bool }); o.Scope == nil || ok && e.Empty() {
		return nil, errors.New("iapsetup options: the project scope is empty; use scope.AllProjects() or scope.New(...)")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.backoff.Initial == 0 {
		o.backoff = gax.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2}
	}
	if o.sleep == nil {
		o.sleep = sleepCtx
	}
	if o.AgentWait <= 0 {
		o.AgentWait = 20 * time.Second
	}
	if o.AgentTTL <= 0 {
		o.AgentTTL = time.Hour
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AccessProjectTTL == 0 {
		o.AccessProjectTTL = time.Minute
	}
	if o.ProjectCacheSize <= 0 {
		o.ProjectCacheSize = cache.DefaultSize
	}
	r := &Reconciler{d: d, o: o, agents: newAgentCache(d.Identity, o.AgentTTL, o.ProjectCacheSize, o.now), log: o.Logger}
	if d.RecordKeys != nil {
		r.keys = newKeyCache(d.RecordKeys, o.now)
	}
	if d.IAP != nil {
		r.projectIAP = newPolicyCache(d.IAP.GetIAPPolicy, o.AccessProjectTTL, o.ProjectCacheSize, o.now)
	}
	return r, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CallOption adjusts one reconcile call.
type CallOption func(*callOptions)

type callOptions struct {
	dryRun, checkAccess bool
	listed              *Service
}

// WithDryRun overrides Options.DryRun for one call.
func WithDryRun(dryRun bool) CallOption { return func(c *callOptions) { c.dryRun = dryRun } }

// WithAccessCheck always runs the who-can-pass check (observed.CheckAccess),
// as operators' audits want; the function checks access only where it can
// change something.
func WithAccessCheck() CallOption { return func(c *callOptions) { c.checkAccess = true } }

// Listed makes Reconcile start from s, the copy of the service a listing
// (ResolveRegion, or a discovery) just returned, instead of reading it
// again: a caller that lists and then reconciles each service pays one read
// per service, not two, and a copy not labelled iap=enabled is decided
// without any other read. s must be fresh (its etag guards the writes; a
// stale one makes them retry); nil, or a copy of another service than the
// one reconciled, is ignored.
func Listed(s *Service) CallOption { return func(c *callOptions) { c.listed = s } }

// Result is what one reconcile of one resource did.
type Result struct {
	Ref ServiceRef
	// Resource is the full name of the reconciled resource: the service, or
	// for rejected project-wide and compute-triggered calls, what was named.
	Resource string
	Outcome  outcome.Kind
	Mode     outcome.Mode
	// Reason explains skipped, rejected, opted-out, conflict and failed outcomes.
	Reason   string
	Steps    []outcome.Step
	Changes  []outcome.Change
	Warnings []string
	// Access lists, per IAP resource guarding the service, who may pass
	// (also in the access steps' messages).
	Access   []AccessFinding
	DryRun   bool
	Duration time.Duration
}

// reconcileError reports a reconcile that could not finish. It wraps the
// cause and exactly one of ErrTransient and ErrPermanent.
type reconcileError struct {
	resource  string // what was being reconciled
	transient bool
	err       error
}

func (e *reconcileError) Error() string { return "reconciling " + e.resource + ": " + e.err.Error() }

// Unwrap returns the cause and the class sentinel.
func (e *reconcileError) Unwrap() []error {
	if e.transient {
		return []error{e.err, ErrTransient}
	}
	return []error{e.err, ErrPermanent}
}

func newError(resource string, err error) *reconcileError {
	return &reconcileError{resource: resource, transient: transient(err), err: err}
}

// Reconcile observes the service, plans and applies (or, in a dry run,
// reports) what it takes to comply. It is the one entry point: events that
// name a backend service, a NEG or a whole region are first mapped to the
// services behind them (ResolveBackend, ResolveNEG, ResolveRegion), and each
// is reconciled on its own. It always returns a Result; the error is non-nil
// only when the reconcile could not finish (Outcome failed), and then
// classifies as ErrTransient or ErrPermanent. A missing service is "skipped"
// with a nil error.
func (r *Reconciler) Reconcile(ctx context.Context, ref ServiceRef, opts ...CallOption) (res *Result, err error) {
	co := callOptions{dryRun: r.o.DryRun}
	for _, o := range opts {
		o(&co)
	}
	start := r.o.now()
	res = &Result{Ref: ref, Resource: ref.String(), DryRun: co.dryRun}
	defer func() { res.Duration = r.o.now().Sub(start) }()
	if verr := ref.validate(); verr != nil {
		res.Outcome, res.Reason = outcome.Rejected, verr.Error()
		return res, nil
	}
	if in, reason, serr := r.o.Scope.Check(ctx, ref.Project); serr != nil {
		res.Outcome, res.Reason = outcome.Failed, serr.Error()
		return res, newError(res.Resource, serr)
	} else if !in {
		res.Outcome, res.Reason = outcome.Rejected, reason
		return res, nil
	}
	log := r.log.With("project", ref.Project, "region", ref.Region, "service", ref.Name)
	listed := co.listed
	if listed != nil && listed.Ref != ref {
		listed = nil // a copy of another service: read this one
	}
	obs, err := r.observe(ctx, ref, listed)
	if err != nil {
		return r.observeFailed(ctx, res, obs, err, co.dryRun, log)
	}
	obs.AccessPolicies = r.o.AccessPolicies
	obs.CheckAccess = co.checkAccess
	d := DesiredFor(obs.Service)
	if d.Intent == Enforce && (d.AccessSet || d.Granted != "") {
		obs.record = r.readRecord(ctx, ref.String(), d.Granted)
	}
	if d.Intent == Enforce || d.Intent == Unmanaged && d.Managed {
		obs.marker = r.readMarker(ctx, ref.String(), obs.Service.Annotations[managedAnnotation], d.Intent == Enforce)
	}
	p := planFor(d, obs)
	p.DryRun = co.dryRun
	var rec *applyRecord
	if d.Intent == Enforce {
		// apply makes every write; the second read round (complete) runs
		// while it writes the IAM policy, and the rest follows its plan.
		first := p
		p, rec, err = r.apply(ctx, first, func() *plan { np, _ := r.complete(ctx, first, obs, nil); return np })
	}
	res.fill(p, rec)
	if err != nil && errors.Is(err, ErrNotFound) {
		// A write found the service gone: deleted during the reconcile.
		// Nothing is left to protect or to fix.
		if _, gerr := r.d.CloudRun.GetService(ctx, ref); errors.Is(gerr, ErrNotFound) {
			res.Outcome, res.Reason = outcome.Skipped, "service deleted during the reconcile"
			log.InfoContext(ctx, "service deleted during the reconcile", "error", err)
			return res, nil
		}
	}
	switch {
	case err != nil:
		log.WarnContext(ctx, "reconcile failed", "outcome", res.Outcome, "error", err)
		return res, newError(res.Resource, err)
	case len(res.Changes) > 0:
		log.InfoContext(ctx, "reconciled", "outcome", res.Outcome, "changes", len(res.Changes), "dryRun", res.DryRun)
	case res.Outcome == outcome.Skipped && len(res.Warnings) > 0:
		log.WarnContext(ctx, "reconciled", "outcome", res.Outcome, "warnings", res.Warnings)
	default:
		log.DebugContext(ctx, "reconciled", "outcome", res.Outcome)
	}
	return res, nil
}

// complete is the second read round of a reconcile (and of Diagnose): the
// HTTPS-frontend check of the backend services p is about to change (and of
// extra), the IAP policies deciding who may pass and the services sharing a
// backend service; then p is planned again from the complete observation
// (p itself when nothing more was read). It returns the frontend checks
// that failed, by backend path (a failed check never fails the reconcile).
// It only reads, and changes obs alone: apply runs it while it writes the
// IAM policy.
func (r *Reconciler) complete(ctx context.Context, p *plan, obs *observed, extra []*BackendService) (*plan, map[string]error) {
	need := p.needsFrontendCheck()
	for _, b := range extra {
		if !slices.ContainsFunc(need, func(n *BackendService) bool { return n.SelfLink == b.SelfLink }) {
			need = append(need, b)
		}
	}
	resources, project := p.access.reads()
	neighbours := p.needsNeighbours()
	if len(need) == 0 && len(resources) == 0 && project == "" && len(neighbours) == 0 {
		return p, nil
	}
	var feErrs map[string]error
	var g errgroup.Group
	if len(need) > 0 {
		g.Go(func() error { obs.Frontends, feErrs = r.checkFrontends(ctx, need, obs.Frontends); return nil })
	}
	if len(resources) > 0 || project != "" {
		g.Go(func() error { r.observeAccess(ctx, resources, project, obs); return nil })
	}
	if len(neighbours) > 0 {
		g.Go(func() error { obs.Neighbours = r.readNeighbours(ctx, p.Ref, neighbours, obs.Neighbours); return nil })
	}
	_ = g.Wait()
	np := planFor(p.Desired, obs)
	if n := np.needsNeighbours(); len(n) > 0 {
		// Grants now planned on a shared backend: its services decide.
		obs.Neighbours = r.readNeighbours(ctx, p.Ref, n, obs.Neighbours)
		np = planFor(p.Desired, obs)
	}
	if res, proj := np.access.reads(); len(res) > 0 || proj != "" {
		r.observeAccess(ctx, res, proj, obs)
		np = planFor(p.Desired, obs)
	}
	np.DryRun = p.DryRun
	return np, feErrs
}

// fill reports p as planned (rec nil) or as apply's record says it went.
func (res *Result) fill(p *plan, rec *applyRecord) {
	res.Mode = p.Mode
	if rec == nil {
		res.Outcome, res.Reason = p.Outcome, p.Reason
		res.Steps, res.Changes, res.Warnings = p.Steps, p.Changes, p.Warnings
		res.Access = p.access.findings()
		return
	}
	r := view{p: p, parts: rec.parts, door: rec.door, applied: true}.report()
	res.Outcome, res.Reason = r.outcome, r.reason
	res.Steps, res.Changes, res.Warnings = r.steps, r.changes, r.warnings
	res.Access = rec.access.findings()
}

// readNeighbours reads the services named (in ref's project and region)
// that share a backend service with ref's: an empty Service for one not
// found, one carrying readErr for a failed read (the shared backend then
// fails with that error, transient or not).
func (r *Reconciler) readNeighbours(ctx context.Context, ref ServiceRef, names []string, known map[string]*Service) map[string]*Service {
	out := make(map[string]*Service, len(known)+len(names))
	maps.Copy(out, known)
	found := make([]*Service, len(names))
	var g errgroup.Group
	for i, n := range names {
		g.Go(func() error {
			switch s, err := r.d.CloudRun.GetService(ctx, ServiceRef{Project: ref.Project, Region: ref.Region, Name: n}); {
			case errors.Is(err, ErrNotFound):
				found[i] = &Service{} // no such service: nothing behind that NEG to protect
			case err != nil:
				r.log.WarnContext(ctx, "reading a service that shares a backend service", "service", n, "error", err)
				found[i] = &Service{Ref: ServiceRef{Name: n}, readErr: &readError{"run.services.get", "", err}}
			default:
				found[i] = s
			}
			return nil
		})
	}
	_ = g.Wait()
	for i, n := range names {
		out[n] = found[i]
	}
	return out
}

// checkFrontends runs the HTTPS-frontend check for each backend, concurrently.
// A failed check is recorded as "not checked" (the backend step then carries
// no frontend warning); it never fails the reconcile.
func (r *Reconciler) checkFrontends(ctx context.Context, bs []*BackendService, known map[string]Frontend) (map[string]Frontend, map[string]error) {
	out := make(map[string]Frontend, len(known)+len(bs))
	maps.Copy(out, known)
	found := make([]Frontend, len(bs))
	errs := make([]error, len(bs))
	var g errgroup.Group
	for i, b := range bs {
		g.Go(func() error {
			if found[i], errs[i] = r.d.Compute.HTTPSFrontend(ctx, b); errs[i] != nil {
				r.log.WarnContext(ctx, "checking HTTPS frontend", "backendService", b.Ref.String(), "error", errs[i])
			}
			return nil
		})
	}
	_ = g.Wait()
	failed := map[string]error{}
	for i, b := range bs {
		if errs[i] != nil {
			failed[b.Ref.String()] = errs[i]
		} else {
			out[ResourcePath(b.SelfLink)] = found[i]
		}
	}
	return out, failed
}
