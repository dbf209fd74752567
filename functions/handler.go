package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Reconciler is what the handler needs of pkg/iapsetup (*iapsetup.Reconciler):
// one entry point, Reconcile, and the resolvers that map what an event
// names (a backend service, a NEG, a project's region) to the services
// behind it.
type Reconciler interface {
	Reconcile(ctx context.Context, ref iapsetup.ServiceRef, opts ...iapsetup.CallOption) (*iapsetup.Result, error)
	ResolveRegion(ctx context.Context, project, region string) ([]iapsetup.Candidate, error)
	ResolveBackend(ctx context.Context, ref iapsetup.BackendRef) ([]iapsetup.Candidate, error)
	ResolveNEG(ctx context.Context, ref iapsetup.NEGRef) ([]iapsetup.Candidate, error)
}

// Publisher sends outcome messages (*outcome.Publisher).
type Publisher interface {
	Publish(ctx context.Context, m *outcome.Message) (string, error)
}

// Handler turns one CloudEvent into reconciles and outcome messages. It is
// the function's whole behaviour; EnforceIAP only builds it once per
// instance and serves it over HTTP (HTTPHandler). Contract with Eventarc: a
// nil return acknowledges the event; an error makes Eventarc redeliver it
// (transient failures only).
type Handler struct {
	cfg  Config
	rec  Reconciler
	pub  Publisher
	log  *slog.Logger
	now  func() time.Time
	coal coalescer
	// scope is cfg.Projects, for the call-free check of skipped events.
	scope scope.Scope
	// unreported keeps outcomes with changes until they are published.
	unreported unreported
	// slots admits at most cfg.MaxConcurrent events to reconcile at once;
	// nil when unlimited.
	slots *semaphore.Weighted
	// disc and replays serve whole-project replays and sweeps (sweep.go).
	disc    Discoverer
	replays ReplayPublisher
}

// NewHandler wires a handler. log may be nil (discard).
func NewHandler(cfg Config, rec Reconciler, pub Publisher, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, rec: rec, pub: pub, log: log, now: time.Now, scope: scope.New(cfg.Projects...)}
	h.coal.now = func() time.Time { return h.now() }
	if cfg.MaxConcurrent > 0 {
		h.slots = semaphore.NewWeighted(int64(cfg.MaxConcurrent))
	}
	return h
}

// begin starts handling e: the event's deadline (cfg.Timeout, if set) and
// a logger naming the event, also carried by the returned context.
func (h *Handler) begin(ctx context.Context, e cloudevents.Event) (context.Context, context.CancelFunc, *slog.Logger) {
	cancel := context.CancelFunc(func() {})
	if h.cfg.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, h.cfg.Timeout)
	}
	log := h.log.With("eventId", e.ID(), "eventType", e.Type())
	if tp, ok := e.Extensions()["traceparent"].(string); ok {
		if a := logx.Trace(h.cfg.Project, tp); a.Key != "" {
			log = log.With(a)
		}
	}
	return logx.With(ctx, log), cancel, log
}

// Handle decodes e, reconciles what it names and publishes one outcome per
// resource. Malformed or foreign events are acknowledged with a rejected or
// skipped outcome (no retry storm); transient failures return an error.
//
// Admission: at most cfg.MaxConcurrent events reconcile at once (decoding,
// rejecting and skipping never wait). An event waits for a slot within its
// deadline (cfg.Timeout, bounded by ctx); if ctx ends first, Handle returns
// an error wrapping ctx.Err() and publishes nothing, so Eventarc redelivers
// the event.
func (h *Handler) Handle(ctx context.Context, e cloudevents.Event) error {
	ctx, cancel, log := h.begin(ctx, e)
	defer cancel()
	start := h.now()

	dec, err := event.Decode(e)
	// In dry run, the entries of the function's own validate-only calls
	// are ignored (internal/event: no self-triggering loop).
	dec = event.SkipOwnDryRun(dec, h.cfg.DryRun, selfPrincipals(h.cfg)...)
	trig := toTrigger(dec.Trigger, e)
	switch {
	case err != nil:
		return h.publish(ctx, h.rejectedMessage(trig, malformedReason(err), start))
	case dec.Skip != "":
		return h.publish(ctx, h.skipMessage(trig, dec.Skip, start))
	case h.cfg.MaxEventAge > 0 && !dec.Trigger.Time.IsZero() && start.Sub(dec.Trigger.Time) > h.cfg.MaxEventAge:
		return h.publish(ctx, h.skipMessage(trig, fmt.Sprintf("event is older than %s (%s): acknowledged without work; the sweep covers it", h.cfg.MaxEventAge, dec.Trigger.Time.Format(time.RFC3339)), start))
	case !dec.Trigger.Time.IsZero() && dec.Trigger.Time.Sub(start) > MaxFutureSkew:
		// Audit log entries are stamped by Google when the change is
		// made; one dated far ahead is forged or broken.
		return h.publish(ctx, h.skipMessage(trig, fmt.Sprintf("event is dated %s, more than %s in the future: acknowledged without work; the sweep covers the resource", dec.Trigger.Time.Format(time.RFC3339), MaxFutureSkew), start))
	}

	if h.slots != nil {
		if err := h.slots.Acquire(ctx, 1); err != nil {
			log.Warn("no reconcile slot free before the event's deadline; returning an error so Eventarc redelivers",
				"maxConcurrent", h.cfg.MaxConcurrent, "err", err)
			return fmt.Errorf("waiting for one of %d reconcile slots: %w", h.cfg.MaxConcurrent, err)
		}
		defer h.slots.Release(1)
	}

	if len(dec.Targets) == 1 && dec.Targets[0].Kind == event.TargetSweep {
		return h.handleSweep(ctx, dec.Targets[0].Scope, trig, start)
	}
	results, note, rerr := h.reconcile(ctx, dec)
	if len(results) == 0 && rerr == nil {
		what := trig.ResourceName
		reason := "no Cloud Run service behind " + what
		if note != "" {
			reason = "no labelled Cloud Run service in " + what + " (" + note + ")"
		}
		return h.publish(ctx, h.skipMessage(trig, reason, start))
	}
	var errs []error
	transient := rerr != nil && errors.Is(rerr, iapsetup.ErrTransient)
	for _, res := range results {
		if res == nil {
			continue
		}
		if transient && res.Outcome == outcome.Failed {
			// Redelivery will produce this resource's outcome; a "failed"
			// now would be a false alarm for subscribers — unless the event
			// has been failing for a while: then say so rather than stay
			// silent (it is still redelivered).
			if age := start.Sub(dec.Trigger.Time); dec.Trigger.Time.IsZero() || age < StillRetryingAfter {
				continue
			}
			m := resultMessage(res, trig, h.now())
			m.Reason = fmt.Sprintf("still retrying: the event of %s has failed transiently for %s; the latest failure: %s",
				dec.Trigger.Time.Format(time.RFC3339), start.Sub(dec.Trigger.Time).Round(time.Second), res.Reason)
			if err := h.publish(ctx, m); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := h.publish(ctx, resultMessage(res, trig, h.now())); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case rerr == nil:
	case transient:
		log.Warn("transient failure; returning an error so Eventarc redelivers", "err", rerr)
		errs = append(errs, rerr)
	case len(errs) == 0:
		// Every permanent failure has its failed outcome (reconcileEach),
		// published above.
		log.Error("permanent failure; acknowledged with a failed outcome", "err", rerr)
	}
	// Otherwise an outcome could not be published: publish logged it, and
	// the error returned makes Eventarc redeliver the event.
	return errors.Join(errs...)
}

// reconcile dispatches a decision to the reconciler. note says how a
// whole-project replay discovered its services ("" otherwise).
func (h *Handler) reconcile(ctx context.Context, dec event.Decision) (results []*iapsetup.Result, note string, err error) {
	if c := dec.Compute; c != nil {
		var cs []iapsetup.Candidate
		named := dec.Trigger.ResourceName
		switch c.Kind {
		case event.ComputeBackendService:
			ref := iapsetup.BackendRef{Project: c.Project, Region: c.Region, Name: c.Name}
			named = ref.String()
			cs, err = h.rec.ResolveBackend(ctx, ref)
		case event.ComputeNetworkEndpointGroup:
			ref := iapsetup.NEGRef{Project: c.Project, Region: c.Region, Name: c.Name}
			named = ref.String()
			cs, err = h.rec.ResolveNEG(ctx, ref)
		default:
			err = fmt.Errorf("compute resource kind %q: %w", c.Kind, iapsetup.ErrPermanent)
		}
		results, err = h.reconcileEach(ctx, named, dec.Trigger.Time, cs, err)
		return results, "", err
	}
	var all []*iapsetup.Result
	var errs []error
	for _, t := range dec.Targets {
		switch t.Kind {
		case event.TargetService:
			ref := iapsetup.ServiceRef{Project: t.Project, Region: t.Region, Name: t.Service}
			v, err, _ := h.coal.do(ctx, ref.String(), dec.Trigger.Time, func(bool) (any, error) {
				return h.rec.Reconcile(ctx, ref)
			})
			if res, ok := v.(*iapsetup.Result); ok && res != nil {
				all = append(all, res)
			}
			if err != nil {
				errs = append(errs, err)
			}
		case event.TargetProject:
			// Concurrent replays of one project share a run that started
			// after their change, as service events do.
			type projectRun struct {
				rs   []*iapsetup.Result
				note string
			}
			v, err, _ := h.coal.do(ctx, "replay:projects/"+t.Project+"/locations/"+t.Region, dec.Trigger.Time, func(bool) (any, error) {
				var pr projectRun
				var err error
				if t.Region != "" {
					cs, rerr := h.rec.ResolveRegion(ctx, t.Project, t.Region)
					pr.rs, err = h.reconcileEach(ctx, "projects/"+t.Project+"/locations/"+t.Region, dec.Trigger.Time, cs, rerr)
				} else {
					// Every region: Cloud Run v2 refuses "-"; discover instead.
					pr.rs, pr.note, err = h.reconcileProject(ctx, t.Project, dec.Trigger.Time)
				}
				return pr, err
			})
			pr, _ := v.(projectRun)
			if pr.note != "" {
				note = pr.note
			}
			all = append(all, pr.rs...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return all, note, errors.Join(errs...)
}

// fanOut bounds the reconciles one event runs at once when it names
// several services (a backend service, a NEG, a project).
const fanOut = 8

// reconcileEach reconciles the services a resolver (or a discovery) of
// named found, at most fanOut at once, each from its listed copy when it
// has one; a failure on one does not stop the others, and errors are
// joined with resolveErr. Every permanent resolve failure becomes an
// outcome, so the handler never acknowledges one silently: a refusal by
// the project scope (*iapsetup.ScopeError) is the refused resource's
// outcome (rejected, or failed when the check could not decide), and any
// other permanent failure is named's failed outcome, its reason the error.
// A transient resolve failure has no outcome of its own: it is returned,
// and Eventarc redelivers the event.
//
// Each service is reconciled through the coalescer, under the key service
// events use, with changedAt the time of the change the event reports: a
// Compute event or a replay never reconciles a service concurrently with
// another reconcile of it (the event of iapguard's own backend patch used
// to race the reconcile that made it, and wrote what that one was about
// to write). It joins a run that started after changedAt, or waits for the
// run in flight and then runs; a listed copy read before that wait is not
// used.
func (h *Handler) reconcileEach(ctx context.Context, named string, changedAt time.Time, cs []iapsetup.Candidate, resolveErr error) ([]*iapsetup.Result, error) {
	var reported []*iapsetup.Result
	var errs []error
	refusals, rest := splitRefusals(resolveErr)
	for _, se := range refusals {
		reported = append(reported, se.Result(h.cfg.DryRun))
		if se.Err != nil {
			errs = append(errs, se) // undecided: redelivered if transient
		}
	}
	if err := errors.Join(rest...); err != nil {
		if !errors.Is(err, iapsetup.ErrTransient) {
			reported = append(reported, &iapsetup.Result{Resource: named, Outcome: outcome.Failed, Reason: err.Error(), DryRun: h.cfg.DryRun})
		}
		errs = append(errs, err)
	}
	results := make([]*iapsetup.Result, len(cs))
	recErrs := make([]error, len(cs))
	var g errgroup.Group
	g.SetLimit(fanOut)
	for i, c := range cs {
		g.Go(func() error {
			v, err, _ := h.coal.do(ctx, c.Ref.String(), changedAt, func(waited bool) (any, error) {
				if waited {
					return h.rec.Reconcile(ctx, c.Ref)
				}
				return h.rec.Reconcile(ctx, c.Ref, iapsetup.Listed(c.Listed))
			})
			results[i], _ = v.(*iapsetup.Result)
			recErrs[i] = err
			return nil
		})
	}
	_ = g.Wait()
	// A reconcile not run because ctx ended while waiting has no result,
	// only its transient error: the event is redelivered.
	results = slices.DeleteFunc(results, func(r *iapsetup.Result) bool { return r == nil })
	return append(reported, results...), errors.Join(append(errs, recErrs...)...)
}

// splitRefusals separates the scope refusals in a resolver's error — the
// error itself, or parts of it joined (ResolveBackend joins the errors of
// its NEGs and of the regions they select) — from the other errors.
func splitRefusals(err error) (refusals []*iapsetup.ScopeError, rest []error) {
	var se *iapsetup.ScopeError
	switch {
	case err == nil:
	case !errors.As(err, &se):
		rest = append(rest, err)
	case err == error(se):
		refusals = append(refusals, se)
	default:
		var parts []error
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			parts = u.Unwrap()
		case interface{ Unwrap() error }:
			parts = []error{u.Unwrap()}
		default: // matched through an As method: keep it whole
			return nil, []error{err}
		}
		for _, p := range parts {
			r, o := splitRefusals(p)
			refusals, rest = append(refusals, r...), append(rest, o...)
		}
	}
	return refusals, rest
}

// publish sends m and logs the outcome once. A failed publish is returned
// (Eventarc redelivers; the reconcile is idempotent).
func (h *Handler) publish(ctx context.Context, m *outcome.Message) error {
	log := logx.From(ctx)
	attrs := []any{
		"outcome", m.Outcome, "resource", m.Resource.Name, "method", m.Trigger.Method,
		"dryRun", m.DryRun, "durationMs", m.DurationMs, "changes", len(m.Changes),
	}
	if m.Reason != "" {
		attrs = append(attrs, "reason", m.Reason)
	}
	level := slog.LevelInfo
	switch m.Outcome {
	case outcome.Failed, outcome.Conflict:
		level = slog.LevelError
	case outcome.Rejected, outcome.OptedOut:
		level = slog.LevelWarn
	case outcome.Compliant, outcome.Skipped:
		level = slog.LevelDebug
	}
	// An outcome with changes that could not be published before is
	// published first: the redelivery finds nothing left to change and
	// would report compliant, losing the remediation.
	if kept := h.unreported.take(m.Resource.Name); kept != nil {
		if _, err := h.pub.Publish(ctx, kept); err != nil {
			h.unreported.keep(kept)
			log.Error("publishing a kept outcome failed; returning an error so Eventarc redelivers", "resource", kept.Resource.Name, "changes", len(kept.Changes), "error", err.Error())
			return fmt.Errorf("publishing the kept outcome for %s: %w", kept.Resource.Name, err)
		}
		log.Info("outcome "+string(kept.Outcome)+" (kept until published)", "resource", kept.Resource.Name, "changes", len(kept.Changes))
	}
	if _, err := h.pub.Publish(ctx, m); err != nil {
		// Every failure at ERROR, with what was not reported: the event is
		// redelivered; an outcome with changes is kept until published.
		if len(m.Changes) > 0 {
			h.unreported.keep(m)
		}
		log.Error("publishing the outcome failed; returning an error so Eventarc redelivers",
			append(attrs, "error", err.Error())...)
		return fmt.Errorf("publishing outcome for %s: %w", m.Resource.Name, err)
	}
	log.Log(ctx, level, "outcome "+string(m.Outcome), attrs...)
	return nil
}

// maxUnreported bounds the outcomes kept until published, per instance.
const maxUnreported = 1000

// unreported keeps outcomes with changes whose publish failed, by
// resource (the latest one per resource), until a later publish for the
// resource succeeds. It lives in one instance: another instance handling
// the redelivery does not see it (the ERROR log line still does).
type unreported struct {
	mu    sync.Mutex
	byRes map[string]*outcome.Message
	order []string
}

func (u *unreported) keep(m *outcome.Message) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byRes == nil {
		u.byRes = map[string]*outcome.Message{}
	}
	if old, ok := u.byRes[m.Resource.Name]; ok {
		// Keep every change: the earlier ones first.
		merged := *m
		merged.Changes = append(slices.Clone(old.Changes), m.Changes...)
		m = &merged
	} else {
		u.order = append(u.order, m.Resource.Name)
	}
	u.byRes[m.Resource.Name] = m
	for len(u.order) > maxUnreported {
		delete(u.byRes, u.order[0])
		u.order = u.order[1:]
	}
}

func (u *unreported) take(resource string) *outcome.Message {
	u.mu.Lock()
	defer u.mu.Unlock()
	m, ok := u.byRes[resource]
	if !ok {
		return nil
	}
	delete(u.byRes, resource)
	u.order = slices.DeleteFunc(u.order, func(r string) bool { return r == resource })
	return m
}

func toTrigger(t event.Trigger, e cloudevents.Event) outcome.Trigger {
	ot := outcome.Trigger{
		EventID: t.EventID, Source: t.Source, Type: t.Type, Method: t.Method,
		ResourceName: t.ResourceName, Principal: t.Principal, Via: t.Via, Time: t.Time,
	}
	if ot.EventID == "" {
		ot.EventID = e.ID()
	}
	if ot.Source == "" {
		ot.Source = e.Source()
	}
	if ot.Type == "" {
		ot.Type = e.Type()
	}
	return ot
}

// resourceOf splits what an event named into outcome resource fields; a
// field that breaks its name rule (event.Valid*) is dropped.
func resourceOf(name string) outcome.Resource {
	r := outcome.Resource{Name: name}
	parts := strings.Split(name, "/")
	for i := 0; i+1 < len(parts); i += 2 {
		switch parts[i] {
		case "projects", "namespaces":
			r.Project = parts[i+1]
		case "locations", "regions":
			r.Region = parts[i+1]
		case "services":
			r.Service = parts[i+1]
		}
	}
	if !event.ValidProject(r.Project) {
		r.Project = ""
	}
	if r.Region != "" && !event.ValidRegion(r.Region) {
		r.Region = ""
	}
	if r.Service != "" && !event.ValidServiceName(r.Service) {
		r.Service = ""
	}
	if r.Name == "" {
		r.Name = "unknown"
	}
	if r.Project == "" {
		r.Project = "unknown"
	}
	return r
}

// skipMessage is the outcome of an event acknowledged without a reconcile.
// Its resource comes from the sender: fields that are not valid names, or a
// project outside the scope, are reported as "unknown" (subscribers filter
// on those attributes), and outcome.Message bounds the rest.
func (h *Handler) skipMessage(t outcome.Trigger, reason string, start time.Time) *outcome.Message {
	now := h.now()
	r := resourceOf(t.ResourceName)
	switch {
	case r.Project == "unknown":
		r = outcome.Resource{Name: "unknown", Project: "unknown"}
	case !h.inScope(r.Project):
		reason += " (the resource named is outside the project scope: not shown)"
		r = outcome.Resource{Name: "unknown", Project: "unknown"}
	}
	return &outcome.Message{
		Outcome: outcome.Skipped, Resource: r, Trigger: t, Reason: reason,
		DryRun: h.cfg.DryRun, DurationMs: now.Sub(start).Milliseconds(), Time: now,
	}
}

func (h *Handler) rejectedMessage(t outcome.Trigger, reason string, start time.Time) *outcome.Message {
	m := h.skipMessage(t, reason, start)
	m.Outcome = outcome.Rejected
	return m
}

// inScope is the scope check without calls: ids, numbers and patterns;
// with folder entries a well-formed project id is let through (the
// reconciler's check, which reads ancestries, decides for writes).
func (h *Handler) inScope(project string) bool {
	if h.scope.Allows(project) {
		return true
	}
	return h.scope.HasFolders() && event.ValidProject(project)
}

// resultMessage converts a reconcile result into an outcome message.
func resultMessage(res *iapsetup.Result, t outcome.Trigger, now time.Time) *outcome.Message {
	r := resourceOf(res.Resource)
	if res.Ref.Name != "" {
		r = outcome.Resource{Name: res.Ref.String(), Project: res.Ref.Project, Region: res.Ref.Region, Service: res.Ref.Name}
	}
	return &outcome.Message{
		Outcome: res.Outcome, Resource: r, Trigger: t, Mode: res.Mode,
		Reason: res.Reason, Steps: res.Steps, Changes: res.Changes, Warnings: res.Warnings, DryRun: res.DryRun,
		DurationMs: res.Duration.Milliseconds(), Time: now,
	}
}

// malformedReason is the reason of a rejected outcome for a malformed
// event: "malformed event: WHY", once (the decoder's errors usually start
// with it already).
func malformedReason(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, event.ErrMalformed.Error()) {
		return msg
	}
	return event.ErrMalformed.Error() + ": " + msg
}

// selfPrincipals are the identities the function's own calls are logged
// under: the account the deployment runs it as (iapguard-enforcer in its
// project, deploy/) and the principal it names to the emulator.
func selfPrincipals(cfg Config) []string {
	return []string{"iapguard-enforcer@" + cfg.Project + ".iam.gserviceaccount.com", emulatorPrincipal(cfg)}
}

// emulatorPrincipal is the identity the function names to the emulator in
// audit entries: IAPGUARD_PRINCIPAL, or iapguard@PROJECT.
func emulatorPrincipal(cfg Config) string {
	if cfg.Principal != "" {
		return cfg.Principal
	}
	return "iapguard@" + cfg.Project + ".iam.gserviceaccount.com"
}
