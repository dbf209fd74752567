package iapsetup

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// severities orders step results from best to worst, for merging (the
// worst wins); a result not listed (skipped) ranks below them all.
var severities = []outcome.StepResult{outcome.StepOK, outcome.StepWarning, outcome.StepChanged, outcome.StepRejected, outcome.StepConflict, outcome.StepFailed}

// observed is the live state a plan is computed from.
type observed struct {
	Service *Service
	Policy  *Policy
	// Agent is the email of the project's IAP service agent.
	Agent string
	// NEGs are the serverless NEGs in the service's project and region.
	NEGs []NEG
	// Backends are the project's backend services, global and regional.
	Backends []BackendService
	// Frontends holds the HTTPS-frontend check per backend service, keyed by
	// ResourcePath(selfLink); a missing entry means "not checked".
	Frontends map[string]Frontend
	// AccessPolicies is the configured access-policy set (configuration, not
	// live state; nil: none configured).
	AccessPolicies *access.Policies
	// CheckAccess asks for the who-can-pass check even when IAP is already
	// on and no access policy is declared (operators' audit and doctor).
	// Otherwise access is checked only where it can change something: the
	// service declares an access policy, or this plan turns IAP on. That
	// keeps a warm compliant reconcile to one read round.
	CheckAccess bool
	// IAP holds IAM policies of IAP resources by resource name (including
	// the project-wide projects/N/iap_web); IAPErrs the errors of reads that
	// failed. A name in neither was not read.
	IAP     map[string]*Policy
	IAPErrs map[string]error

	// Neighbours are the other Cloud Run services of the service's region
	// that share one of its backend services, by name, as read (nil: not
	// found, or the read failed); a name that is missing was not read.
	Neighbours map[string]*Service

	// record is the service's access record, verified, with the signing
	// key (Reconciler.readRecord); nil: not read (the record is then
	// treated as unverified).
	record *recordState

	// marker is the managed marker as the reconciler read it
	// (Reconciler.readMarker); nil: not read (a marker is then not
	// verified, and an enforced service keeps or gets managedValue).
	marker *markerState
}

// plan is what must happen for a service to comply. It is computed by
// planFor from (Desired, observed) alone and never changes afterwards:
// apply works on a copy of its parts and returns that copy, as written, as
// its record (apply.go); the Result is reported from both.
type plan struct {
	Ref     ServiceRef
	Desired Desired
	Outcome outcome.Kind
	Mode    outcome.Mode
	// Reason explains skipped, rejected, opted-out, conflict and failed outcomes.
	Reason   string
	Steps    []outcome.Step
	Changes  []outcome.Change
	Warnings []string
	DryRun   bool

	agent    string
	fronting fronting
	marker   *markerState // observed.marker: the managed marker to write
	parts
}

// parts are a plan's writes, one per resource, each with the error that
// keeps it from being made (a failed read deciding it; in apply's record,
// the write's own error).
type parts struct {
	policy   *policyPart
	service  *servicePart
	backends []*backendPart
	access   *accessPlan
}

// clone copies the parts apply changes: each part is replaced or
// overwritten as a whole, never changed through a shared pointer.
func (pt parts) clone() parts {
	out := pt
	if pt.policy != nil {
		pp := *pt.policy
		out.policy = &pp
	}
	if pt.service != nil {
		sp := *pt.service
		out.service = &sp
	}
	out.backends = make([]*backendPart, len(pt.backends))
	for i, b := range pt.backends {
		bp := *b
		out.backends[i] = &bp
	}
	if pt.access != nil {
		ap := *pt.access
		ap.parts = make([]*accessPart, len(pt.access.parts))
		for i, part := range pt.access.parts {
			cp := *part
			ap.parts[i] = &cp
		}
		out.access = &ap
	}
	return out
}

// errs lists the parts' errors: their writes' and the reads deciding them.
func (pt parts) errs() []error {
	errs := []error{pt.policy.err, pt.service.err}
	for _, b := range pt.backends {
		errs = append(errs, b.err)
	}
	for _, part := range pt.access.list() {
		errs = append(errs, part.err, part.readErr)
	}
	return errs
}

// needsNeighbours lists the other services behind shared backend services
// that will change (IAP or access grants) and that were not read.
func (p *plan) needsNeighbours() []string {
	var out []string
	for _, b := range p.backends {
		if b.share.shared() && (b.write || p.Desired.AccessSet || !b.backend.IAPEnabled) {
			for _, n := range b.share.unread() {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// needsFrontendCheck lists backend services that will be changed and whose
// HTTPS frontend has not been checked.
func (p *plan) needsFrontendCheck() []*BackendService {
	var out []*BackendService
	for _, b := range p.backends {
		if b.write && b.frontend == nil {
			out = append(out, &b.backend)
		}
	}
	return out
}

// fronting is how the service is reached through load balancers.
type fronting struct {
	// negs point at the service (cloudRun.service == service).
	negs []NEG
	// maskNEGs select services by URL mask or tag only; they may route to
	// the service but iapguard cannot tell.
	maskNEGs []NEG
	// backends use one of negs; sorted by path.
	backends []BackendService
}

func findFronting(ref ServiceRef, negs []NEG, backends []BackendService) fronting {
	var f fronting
	for _, n := range negs {
		if n.CloudRun == nil || (n.Region != "" && n.Region != ref.Region) {
			continue
		}
		switch {
		case n.CloudRun.Service == ref.Name:
			f.negs = append(f.negs, n)
		case n.CloudRun.Service == "" && (n.CloudRun.URLMask != "" || n.CloudRun.Tag != ""):
			f.maskNEGs = append(f.maskNEGs, n)
		}
	}
	for _, b := range backends {
		if b.Ref.Region != "" && b.Ref.Region != ref.Region {
			continue
		}
		if slices.ContainsFunc(b.Groups, func(g string) bool {
			return slices.ContainsFunc(f.negs, func(n NEG) bool { return sameResource(g, n.SelfLink) })
		}) {
			f.backends = append(f.backends, b)
		}
	}
	sort.Slice(f.backends, func(i, j int) bool { return f.backends[i].Ref.String() < f.backends[j].Ref.String() })
	sort.Slice(f.maskNEGs, func(i, j int) bool { return f.maskNEGs[i].SelfLink < f.maskNEGs[j].SelfLink })
	return f
}

// planFor computes the plan for a service. It is a pure function of its
// arguments: it reads no clock, makes no calls and does not modify o.
func planFor(d Desired, o *observed) *plan {
	p := &plan{Desired: d}
	if o == nil || o.Service == nil {
		p.Outcome = outcome.Skipped
		p.Reason = "service not found"
		return p
	}
	p.Ref = o.Service.Ref
	p.marker = o.marker
	switch d.Intent {
	case Invalid:
		p.Outcome, p.Reason = outcome.Rejected, d.reason(p.Ref, nil)
		return p
	case Unmanaged:
		p.Outcome, p.Reason = outcome.Skipped, d.reason(p.Ref, o.marker)
		if d.Managed && o.marker != nil && o.marker.verified {
			p.Outcome = outcome.OptedOut
		}
		if k := lookalikeLabel(o.Service.Labels); k != "" && !d.LabelSet {
			p.Warnings = append(p.Warnings, fmt.Sprintf("label %q looks like %q but is not it (%+q): the service is not enforced; use the key %s", k, LabelKey, k, LabelKey))
		}
		return p
	}
	p.agent = o.Agent
	p.fronting = findFronting(p.Ref, o.NEGs, o.Backends)
	// Cloud Run's built-in IAP guards every ingress path, load balancers
	// included, and Google does not support IAP on both: a service that has
	// it stays in direct mode when a load balancer is put in front.
	builtin := o.Service.IAPEnabled
	p.Mode = outcome.Direct
	if len(p.fronting.backends) > 0 && !builtin {
		p.Mode = outcome.LoadBalancer
	}
	pp := planPolicy(p.Ref, o.Policy, o.Agent)
	p.policy = &pp
	for _, b := range p.fronting.backends {
		var fe *Frontend
		if f, ok := o.Frontends[ResourcePath(b.SelfLink)]; ok {
			fe = &f
		}
		bp := planBackend(b, fe, builtin)
		bp.share = shareOf(p.Ref, d, b, o)
		bp.access = d.AccessSet
		if bp.share.conflict(bp.write || d.AccessSet) != "" {
			bp.write, bp.changes = false, nil
			bp.err = bp.share.err
		}
		p.backends = append(p.backends, &bp)
	}
	turnsIAPOn := p.Mode == outcome.Direct && !builtin
	for _, bp := range p.backends {
		turnsIAPOn = turnsIAPOn || bp.write
	}
	if d.AccessSet || o.CheckAccess || turnsIAPOn {
		number, resources, noResource := p.iapResources()
		p.access = planAccess(p.Ref, d, o, number, resources, noResource)
	}
	sp := planService(o.Service, d, p.Mode == outcome.LoadBalancer, p.access.annotation(), o.marker)
	sp.fronted = len(p.fronting.backends) > 0
	p.service = &sp
	p.describe()
	return p
}

// confusables maps letters that look like those of "iap" to them.
var confusables = map[rune]rune{'і': 'i', 'ı': 'i', 'ɪ': 'i', 'Ι': 'i', 'І': 'i', 'а': 'a', 'ɑ': 'a', 'α': 'a', 'А': 'a', 'р': 'p', 'ρ': 'p', 'Р': 'p'}

// lookalikeLabel returns a label key that is not LabelKey but reads like
// it (other scripts' letters, case, separators); "" when there is none.
func lookalikeLabel(labels map[string]string) string {
	for k := range labels {
		if k == LabelKey {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(k) {
			if c, ok := confusables[r]; ok {
				r = c
			}
			if r == '-' || r == '_' || r == ' ' || r == '.' {
				continue
			}
			b.WriteRune(r)
		}
		if b.String() == LabelKey {
			return k
		}
	}
	return ""
}

// iapResources returns the project number and the IAP resources whose IAM
// policy decides who may pass to the service once the plan is applied:
// Cloud Run's built-in IAP resource in direct mode, each fronting backend
// service that has (or gets) IAP in load-balancer mode. With none, reason
// says why.
func (p *plan) iapResources() (number string, resources []iapResource, reason string) {
	number, ok := projectNumberFromAgent(p.agent)
	if !ok {
		return "", nil, "the project number is unknown (it is read from the IAP service agent's email)"
	}
	if p.Mode == outcome.Direct {
		return number, []iapResource{cloudRunIAPResource(number, p.Ref)}, ""
	}
	for _, bp := range p.backends {
		if bp.share.conflict(true) != "" {
			continue // shared, and not all its services agree: no grant there
		}
		if bp.backend.IAPEnabled || bp.write {
			resources = append(resources, backendIAPResource(number, bp.backend))
		}
	}
	if len(resources) == 0 {
		reason = "IAP is on for none of the backend services in front of the service"
	}
	return number, resources, reason
}

// describe sets the plan's Outcome, Reason, Steps, Changes and Warnings
// as planned.
func (p *plan) describe() {
	r := view{p: p, parts: p.parts}.report()
	p.Outcome, p.Reason, p.Steps, p.Changes, p.Warnings = r.outcome, r.reason, r.steps, r.changes, r.warnings
}

// view is a plan's parts as planned (the plan's own) or as done (apply's
// record): what the outcome is reported from.
type view struct {
	p *plan
	parts
	// door is the removal of public invokers apply made (successfully) in
	// a write of its own after the policy write that also adds the agent
	// failed; nil: none was made.
	door *policyPart
	// applied: apply ran; done changes are then told in the past tense.
	applied bool
}

// report is what a view reports.
type report struct {
	outcome  outcome.Kind
	reason   string
	steps    []outcome.Step
	changes  []outcome.Change
	warnings []string
}

// report derives the steps, changes, warnings and outcome from the parts.
func (v view) report() (r report) {
	p := v.p
	svc := p.Ref.String()

	// agent-identity
	if p.agent == "" {
		r.steps = append(r.steps, outcome.Step{Name: outcome.StepAgentIdentity, Resource: "", Result: outcome.StepFailed, Message: "the IAP service agent of project " + p.Ref.Project + " is unknown; fix: " + gcloudAgent(p.Ref.Project)})
	} else {
		r.steps = append(r.steps, outcome.Step{Name: outcome.StepAgentIdentity, Resource: p.agent, Result: outcome.StepOK, Message: "IAP service agent " + p.agent + " exists"})
	}

	// invoker-binding and iam-auth (policy side + service side)
	pol, sp := v.policy, v.service
	st, done := pol.invokerStep(p.Ref, p.agent)
	r.steps = append(r.steps, v.step(st, done, pol.err, pol.fix(p.Ref, p.agent), pol.after != nil && pol.added))
	st, done = pol.authStep(svc)
	authIAM := v.step(st, done, pol.err, pol.fix(p.Ref, p.agent), pol.after != nil && len(pol.removed) > 0)
	if v.door != nil {
		authIAM = v.door.doorStep(p.Ref) // the write that also adds the agent failed
	}
	st, done = sp.authStep(svc)
	authSvc := v.step(st, done, sp.err, sp.fix(), sp.update != nil && sp.update.RequireInvokerIAM)
	r.steps = append(r.steps, mergeSteps(authIAM, authSvc))

	// ingress
	st, done = sp.ingressStep(svc)
	r.steps = append(r.steps, v.step(st, done, sp.err, sp.fix(), sp.update != nil && sp.update.Ingress != ""))

	// backend-iap / direct-iap
	for _, b := range v.backends {
		st, done = b.stepFor(p.Ref)
		r.steps = append(r.steps, v.step(st, done, b.err, b.fix(), b.write))
	}
	if p.Mode == outcome.Direct {
		st, done = sp.directStep(svc)
		r.steps = append(r.steps, v.step(st, done, sp.err, sp.fix(), sp.update != nil && sp.update.EnableIAP))
	}

	// access
	r.steps = append(r.steps, v.access.steps(v)...)

	// changes: planned (dry run) or made; none for a part whose write failed.
	if v.door != nil {
		r.changes = append(r.changes, v.door.changes...)
	}
	if pol.err == nil {
		r.changes = append(r.changes, pol.changes...)
	}
	if sp.err == nil {
		r.changes = append(r.changes, sp.changes...)
	}
	for _, b := range v.backends {
		if b.err == nil {
			r.changes = append(r.changes, b.changes...)
		}
	}
	for _, part := range v.access.list() {
		if part.err == nil && part.rejected == nil {
			r.changes = append(r.changes, part.changes...)
		}
	}

	// warnings
	for _, n := range p.fronting.maskNEGs {
		r.warnings = append(r.warnings, fmt.Sprintf("serverless NEG %s selects Cloud Run services by URL mask or tag (urlMask=%q, tag=%q) and may route to %s; iapguard only follows NEGs that name the service, so check that its backend services have IAP enabled",
			ResourcePath(n.SelfLink), n.CloudRun.URLMask, n.CloudRun.Tag, p.Ref.Name))
	}
	r.warnings = append(r.warnings, sp.warnings...)
	r.warnings = append(r.warnings, v.access.warnings()...)
	for _, b := range v.backends {
		r.warnings = append(r.warnings, b.warnings()...)
	}
	if sp.before.IAPEnabled {
		for _, b := range v.backends {
			if b.backend.IAPEnabled {
				r.warnings = append(r.warnings, fmt.Sprintf("Cloud Run's built-in IAP (iapEnabled) and IAP on backend service %s are both on; Google does not support IAP on both, and iapguard turns neither off. To keep load-balancer IAP only: gcloud run services update %s --project=%s --region=%s --no-iap",
					b.backend.Ref.String(), p.Ref.Name, p.Ref.Project, p.Ref.Region))
			}
		}
	}

	// outcome
	r.outcome, r.reason = outcome.Compliant, ""
	var conflicts, failures, rejections []string
	for _, s := range r.steps {
		switch s.Result {
		case outcome.StepFailed:
			failures = append(failures, s.Name+": "+s.Message)
		case outcome.StepConflict:
			conflicts = append(conflicts, s.Name+": "+s.Message)
		case outcome.StepRejected:
			rejections = append(rejections, s.Name+": "+s.Message)
		case outcome.StepChanged:
			if r.outcome == outcome.Compliant {
				r.outcome = outcome.Remediated
			}
		}
	}
	// A change no step shows (the managed marker, the access annotation)
	// is still a write: "compliant" means nothing was written.
	if r.outcome == outcome.Compliant && len(r.changes) > 0 {
		r.outcome = outcome.Remediated
	}
	// A write can fail without a step showing it (the managed marker rides
	// on an UpdateService of its own; a refused write may not match its
	// step): every part error is a failure.
	partErrs := v.errs()
	if v.access != nil && v.access.keyErr != nil && len(v.access.parts) == 0 {
		partErrs = append(partErrs, v.access.keyErr)
	}
	for _, err := range partErrs {
		if err != nil && !slices.ContainsFunc(failures, func(f string) bool { return strings.Contains(f, err.Error()) }) {
			failures = append(failures, err.Error())
		}
	}
	if v.door != nil && len(failures)+len(conflicts)+len(rejections) > 0 {
		// Say that the door is closed even though the rest is not done.
		note := v.door.doorStep(p.Ref).Message
		failures, conflicts, rejections = appendNote(failures, note), appendNote(conflicts, note), appendNote(rejections, note)
	}
	switch {
	case len(failures) > 0:
		r.outcome, r.reason = outcome.Failed, strings.Join(failures, "; ")
	case len(conflicts) > 0:
		r.outcome, r.reason = outcome.Conflict, strings.Join(conflicts, "; ")
	case len(rejections) > 0:
		// IAP is still enforced (security first); what the labels ask for
		// access could not be honoured and needs a person.
		r.outcome, r.reason = outcome.Rejected, strings.Join(rejections, "; ")
	}
	return r
}

func appendNote(list []string, note string) []string {
	if len(list) == 0 {
		return list
	}
	return append(list, note)
}

// step finalises a planned step. A planned change's message is imperative
// ("grant ..."); it becomes past tense once applied, "dry run: would ..." in
// a dry run, and a failure with the error and a fix when its write failed.
func (v view) step(s outcome.Step, done string, err error, fix string, changing bool) outcome.Step {
	if !changing || s.Result != outcome.StepChanged {
		return s
	}
	switch {
	case err != nil:
		s.Result = outcome.StepFailed
		s.Message = s.Message + ": " + err.Error()
		if fix != "" {
			s.Message += "; fix: " + fix
		}
	case v.p.DryRun:
		s.Message = "dry run: would " + s.Message
	case v.applied:
		s.Message = done
	}
	return s
}

// mergeSteps combines two halves of one step: the worst status wins and the
// messages of the halves with that status are joined.
func mergeSteps(a, b outcome.Step) outcome.Step {
	if slices.Index(severities, b.Result) > slices.Index(severities, a.Result) {
		a, b = b, a
	}
	if b.Result == a.Result && b.Message != "" {
		a.Message += "; " + b.Message
	}
	return a
}

// ---- IAM policy -------------------------------------------------------------

const (
	roleInvoker           = "roles/run.invoker"
	allUsers              = "allUsers"
	allAuthenticatedUsers = "allAuthenticatedUsers"
)

func isPublic(member string) bool { return member == allUsers || member == allAuthenticatedUsers }

func agentMember(agent string) string { return "serviceAccount:" + agent }

func isAgent(member, agent string) bool {
	return agent != "" && strings.EqualFold(member, agentMember(agent))
}

// policyPart is the IAM half of the plan: grant the agent roles/run.invoker
// and remove public members from roles/run.invoker, touching nothing else.
type policyPart struct {
	before *Policy
	// after is the policy to write (with before's etag); nil: nothing to do.
	after   *Policy
	added   bool
	removed []string // public members removed, with their binding's condition
	changes []outcome.Change
	err     error
}

func bindingLabel(b Binding) string {
	if b.Condition == nil {
		return b.Role
	}
	return b.Role + " if " + conditionTitle(b.Condition)
}

// planPolicy is pure: it returns the policy after the two IAM rules, and
// nil after when p already complies.
func planPolicy(ref ServiceRef, p *Policy, agent string) policyPart {
	pp := policyPart{before: p}
	if p == nil {
		return pp
	}
	after := p.clone()
	var kept []Binding
	for _, b := range after.Bindings {
		if b.Role == roleInvoker {
			var members []string
			for _, m := range b.Members {
				if isPublic(m) {
					r := m
					if b.Condition != nil {
						r += " (binding " + bindingLabel(b) + ")"
					}
					pp.removed = append(pp.removed, r)
					pp.changes = append(pp.changes, outcome.Change{Resource: ref.String(), Field: "iamPolicy[" + bindingLabel(b) + "]", Before: m, After: ""})
					continue
				}
				members = append(members, m)
			}
			if len(members) == 0 {
				continue // an empty binding is dropped, as IAM itself does
			}
			b.Members = members
		}
		kept = append(kept, b)
	}
	after.Bindings = kept
	if agent != "" {
		idx := -1
		for i, b := range after.Bindings {
			if b.Role == roleInvoker && b.Condition == nil {
				if slices.ContainsFunc(b.Members, func(m string) bool { return isAgent(m, agent) }) {
					idx = -2
					break
				}
				if idx == -1 {
					idx = i
				}
			}
		}
		switch {
		case idx >= 0:
			after.Bindings[idx].Members = append(after.Bindings[idx].Members, agentMember(agent))
			pp.added = true
		case idx == -1:
			after.Bindings = append(after.Bindings, Binding{Role: roleInvoker, Members: []string{agentMember(agent)}})
			pp.added = true
		}
		if pp.added {
			pp.changes = append(pp.changes, outcome.Change{Resource: ref.String(), Field: "iamPolicy[" + roleInvoker + "]", Before: "", After: agentMember(agent)})
		}
	}
	if pp.added || len(pp.removed) > 0 {
		pp.after = after
	}
	return pp
}

// The step methods below return the step with, for a planned change, an
// imperative message, plus the message to use once the change is made.

func (pp *policyPart) invokerStep(ref ServiceRef, agent string) (outcome.Step, string) {
	s := outcome.Step{Name: outcome.StepInvokerBinding, Resource: ref.String()}
	what := roleInvoker + " to " + agentMember(agent) + " (IAP calls the service as this agent)"
	switch {
	case pp.before == nil || agent == "":
		s.Result, s.Message = outcome.StepSkipped, "IAM policy or service agent unknown"
	case pp.added:
		s.Result, s.Message = outcome.StepChanged, "grant "+what
	default:
		s.Result, s.Message = outcome.StepOK, agentMember(agent)+" holds "+roleInvoker
	}
	return s, "granted " + what
}

func (pp *policyPart) authStep(svc string) (outcome.Step, string) {
	s := outcome.Step{Name: outcome.StepIAMAuth, Resource: svc}
	what := strings.Join(pp.removed, ", ") + " from " + roleInvoker + " (IAP does not guard the run.app URL; IAM must)"
	switch {
	case pp.before == nil:
		s.Result, s.Message = outcome.StepSkipped, "IAM policy unknown"
	case len(pp.removed) > 0:
		s.Result, s.Message = outcome.StepChanged, "remove "+what
	default:
		s.Result, s.Message = outcome.StepOK, "no public members in "+roleInvoker
	}
	return s, "removed " + what
}

// doorStep is the iam-auth step of the public-invoker removal closeDoor
// made (or failed to make) before the plan.
func (pp *policyPart) doorStep(ref ServiceRef) outcome.Step {
	s, _ := pp.authStep(ref.String())
	if pp.err != nil {
		s.Result = outcome.StepFailed
		s.Message += ": " + pp.err.Error() + "; fix: " + pp.fix(ref, "")
		return s
	}
	s.Message = "removed " + strings.Join(pp.removed, ", ") + " from " + roleInvoker + doorNote + ", whatever else fails (the run.app URL is no longer public)"
	return s
}

func (pp *policyPart) fix(ref ServiceRef, agent string) string {
	var cmds []string
	if pp.added {
		cmds = append(cmds, fmt.Sprintf("gcloud run services add-iam-policy-binding %s --project=%s --region=%s --member=%s --role=%s",
			ref.Name, ref.Project, ref.Region, agentMember(agent), roleInvoker))
	}
	seen := map[string]bool{}
	for _, c := range pp.changes {
		if c.After == "" && !seen[c.Before] {
			seen[c.Before] = true
			cmds = append(cmds, fmt.Sprintf("gcloud run services remove-iam-policy-binding %s --project=%s --region=%s --member=%s --role=%s",
				ref.Name, ref.Project, ref.Region, c.Before, roleInvoker))
		}
	}
	return strings.Join(cmds, " && ")
}

// ---- Cloud Run service ------------------------------------------------------

// servicePart is the service half of the plan: ingress, invoker IAM check,
// built-in IAP and the managed marker, in one UpdateService call.
type servicePart struct {
	before *Service
	lb     bool
	// fronted: backend services front the service (in direct mode too).
	fronted  bool
	update   *ServiceUpdate // nil: nothing to do
	changes  []outcome.Change
	warnings []string
	err      error
}

// planService is pure. It is called only for services iapguard enforces
// (labelled iap=enabled, in scope). lb reports whether the service is in
// load-balancer mode; access, when not nil, is the accessAnnotation value
// to record ("" removes it).
//
// A missing managed marker is itself a planned write, whatever else the
// plan does: tying it to the other writes loses it for good when the
// service update carrying it fails after those writes succeeded (the
// redelivered event then finds nothing else to write). Once present it
// plans nothing, so a compliant, marked service costs no write.
func planService(s *Service, d Desired, lb bool, access *string, marker *markerState) servicePart {
	sp := servicePart{before: s, lb: lb}
	u := &ServiceUpdate{Ref: s.Ref, Etag: s.Etag, Source: s.Source}
	name := s.Ref.String()
	if s.InvokerIAMDisabled {
		u.RequireInvokerIAM = true
		sp.changes = append(sp.changes, outcome.Change{Resource: name, Field: "invokerIamDisabled", Before: "true", After: "false"})
	}
	if lb {
		switch {
		case s.Ingress == ingressAll:
			u.Ingress = ingressInternalLoadBalancer
			sp.changes = append(sp.changes, outcome.Change{Resource: name, Field: "ingress", Before: s.Ingress, After: u.Ingress})
		case ingressStrictness(s.Ingress) > ingressStrictness(ingressInternalLoadBalancer):
			sp.warnings = append(sp.warnings, fmt.Sprintf("ingress %s is stricter than %s and is kept; note that an external load balancer cannot reach the service with it",
				s.Ingress, ingressInternalLoadBalancer))
		case ingressStrictness(s.Ingress) < 0:
			sp.warnings = append(sp.warnings, fmt.Sprintf("ingress is %q (no serving revision?); iapguard sets %s once Cloud Run reports a setting",
				s.Ingress, ingressInternalLoadBalancer))
		}
	} else if !s.IAPEnabled {
		u.EnableIAP = true
		sp.changes = append(sp.changes, outcome.Change{Resource: name, Field: "iapEnabled", Before: "false", After: "true"})
	}
	annotations := func() map[string]string {
		if u.Annotations == nil {
			u.Annotations = maps.Clone(s.Annotations)
			if u.Annotations == nil {
				u.Annotations = map[string]string{}
			}
		}
		return u.Annotations
	}
	if cur, ok := s.Annotations[accessAnnotation]; access != nil && (*access != cur || (*access == "" && ok)) {
		if *access == "" {
			delete(annotations(), accessAnnotation)
		} else {
			annotations()[accessAnnotation] = *access
		}
		sp.changes = append(sp.changes, outcome.Change{Resource: name, Field: "annotations[" + accessAnnotation + "]", Before: cur, After: *access})
	}
	cur := s.Annotations[managedAnnotation]
	want := cur
	switch {
	case marker != nil && marker.want != "":
		want = marker.want // signed, replacing an unsigned marker
	case !d.Managed:
		want = managedValue
	}
	if want != cur {
		annotations()[managedAnnotation] = want
		sp.changes = append(sp.changes, outcome.Change{Resource: name, Field: "annotations[" + managedAnnotation + "]", Before: cur, After: want})
	}
	if !u.empty() {
		sp.update = u
	}
	return sp
}

func (sp *servicePart) authStep(svc string) (outcome.Step, string) {
	s := outcome.Step{Name: outcome.StepIAMAuth, Resource: svc}
	what := "invokerIamDisabled=false (the run.routes.invoke IAM check was off)"
	if sp.before.InvokerIAMDisabled {
		s.Result, s.Message = outcome.StepChanged, "set "+what
	} else {
		s.Result, s.Message = outcome.StepOK, "invoker IAM check on"
	}
	return s, "set " + what
}

func (sp *servicePart) ingressStep(svc string) (outcome.Step, string) {
	s := outcome.Step{Name: outcome.StepIngress, Resource: svc}
	in := sp.before.Ingress
	what := fmt.Sprintf("ingress %s → %s", in, ingressInternalLoadBalancer)
	switch {
	case !sp.lb && sp.fronted:
		s.Result, s.Message = outcome.StepSkipped, fmt.Sprintf("Cloud Run's built-in IAP guards every path, the load balancer's included; ingress stays %s", in)
	case !sp.lb:
		s.Result, s.Message = outcome.StepSkipped, fmt.Sprintf("no load balancer fronts the service; ingress stays %s (Cloud Run IAP guards every path)", in)
	case in == ingressAll:
		s.Result, s.Message = outcome.StepChanged, "set "+what
	case in == ingressInternalLoadBalancer:
		s.Result, s.Message = outcome.StepOK, "ingress is "+in
	case ingressStrictness(in) > ingressStrictness(ingressInternalLoadBalancer):
		s.Result, s.Message = outcome.StepWarning, fmt.Sprintf("ingress %s is stricter than %s; kept (iapguard never loosens ingress), but an external load balancer cannot reach the service", in, ingressInternalLoadBalancer)
	default:
		s.Result, s.Message = outcome.StepWarning, fmt.Sprintf("ingress is %q; left alone until Cloud Run reports a setting", in)
	}
	return s, "set " + what
}

func (sp *servicePart) directStep(svc string) (outcome.Step, string) {
	s := outcome.Step{Name: outcome.StepDirectIAP, Resource: svc}
	what := "Cloud Run IAP (iapEnabled=true): no load balancer fronts the service"
	switch {
	case sp.before.IAPEnabled && sp.fronted:
		s.Result, s.Message = outcome.StepOK, "Cloud Run IAP (iapEnabled) is on; it also guards the load balancer path"
	case sp.before.IAPEnabled:
		s.Result, s.Message = outcome.StepOK, "Cloud Run IAP (iapEnabled) is on"
	default:
		s.Result, s.Message = outcome.StepChanged, "enable "+what
	}
	return s, "enabled " + what
}

func (sp *servicePart) fix() string {
	u := sp.update
	if u == nil {
		return ""
	}
	ref := u.Ref
	var flags []string
	if u.Ingress != "" {
		flags = append(flags, "--ingress="+ingressFlag(u.Ingress))
	}
	if u.RequireInvokerIAM {
		flags = append(flags, "--invoker-iam-check")
	}
	if u.EnableIAP {
		flags = append(flags, "--iap")
	}
	if len(flags) == 0 {
		return ""
	}
	// --iap is GA in gcloud run services update (no beta command group).
	return fmt.Sprintf("gcloud run services update %s --project=%s --region=%s %s", ref.Name, ref.Project, ref.Region, strings.Join(flags, " "))
}

// ---- backend services -------------------------------------------------------

// sharing is what else a backend service fronts besides the service.
type sharing struct {
	// others are the other Cloud Run services behind it (names in the
	// service's region), with why each one does not agree ("" agrees).
	others map[string]string
	// unknown are backends iapguard cannot resolve to a labelled Cloud Run
	// service: instance groups, URL-mask NEGs, NEGs of another region.
	unknown []string
	// err: reading one of the others failed (the backend is not changed;
	// the reconcile fails with it).
	err error
}

// shareOf finds what else b fronts and whether each such service agrees:
// labelled iap=enabled with the same iap-access policy as d.
func shareOf(ref ServiceRef, d Desired, b BackendService, o *observed) sharing {
	var sh sharing
	for _, g := range b.Groups {
		i := slices.IndexFunc(o.NEGs, func(n NEG) bool { return sameResource(g, n.SelfLink) })
		switch {
		case i < 0:
			sh.unknown = append(sh.unknown, ResourcePath(g))
		case o.NEGs[i].CloudRun == nil || o.NEGs[i].CloudRun.Service == "":
			sh.unknown = append(sh.unknown, ResourcePath(g)+" (selects services by URL mask)")
		case o.NEGs[i].CloudRun.Service != ref.Name:
			name := o.NEGs[i].CloudRun.Service
			if sh.others == nil {
				sh.others = map[string]string{}
			}
			s, read := o.Neighbours[name]
			switch nd := DesiredFor(s); {
			case !read:
				sh.others[name] = "not read"
			case s == nil:
				sh.others[name] = "could not be read"
			case s.readErr != nil:
				sh.others[name] = "could not be read: " + s.readErr.Error()
				sh.err = errors.Join(sh.err, fmt.Errorf("reading service %s, which shares backend service %s: %w", name, b.Ref.Name, s.readErr))
			case s.Ref.Name == "":
				sh.others[name] = "" // does not exist: its NEG routes nowhere
			case nd.Intent != Enforce:
				sh.others[name] = "not labelled " + LabelKey + "=" + labelEnabled
			case nd.AccessSet != d.AccessSet || nd.Access != d.Access:
				sh.others[name] = fmt.Sprintf("%s=%q", access.LabelKey, nd.Access)
			default:
				sh.others[name] = ""
			}
		}
	}
	return sh
}

// shared reports whether the backend fronts anything besides the service.
func (sh sharing) shared() bool { return len(sh.others)+len(sh.unknown) > 0 }

// unread lists the other services not read yet.
func (sh sharing) unread() []string {
	var out []string
	for n, why := range sh.others {
		if why == "not read" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// conflict explains why a change (changing: one is needed) may not be made
// on one service's say-so; "" when it may.
func (sh sharing) conflict(changing bool) string {
	if !changing || !sh.shared() {
		return ""
	}
	var why []string
	for _, n := range slices.Sorted(maps.Keys(sh.others)) {
		if w := sh.others[n]; w != "" {
			why = append(why, "service "+n+": "+w)
		}
	}
	for _, u := range sh.unknown {
		why = append(why, u+": not a labelled Cloud Run service")
	}
	if len(why) == 0 {
		return ""
	}
	return strings.Join(why, "; ")
}

// backendPart turns IAP on for one fronting backend service.
type backendPart struct {
	// share is what else the backend fronts; a shared backend is changed
	// (IAP, access grants) only when every service behind it agrees.
	share   sharing
	backend BackendService
	// frontend is the HTTPS-frontend check; nil: not checked.
	frontend *Frontend
	// builtin: the service has Cloud Run's built-in IAP, which guards this
	// path; backend IAP is then not enabled (Google does not support both).
	builtin bool
	write   bool
	changes []outcome.Change
	err     error
	// access: the service declares an access policy (grants on the
	// backend's IAP resource would follow).
	access bool
}

// planBackend is pure. builtin reports whether the service has Cloud Run's
// built-in IAP on.
func planBackend(b BackendService, fe *Frontend, builtin bool) backendPart {
	bp := backendPart{backend: b, frontend: fe, builtin: builtin}
	if !b.IAPEnabled && !b.EnableCDN && !builtin {
		bp.write = true
		bp.changes = []outcome.Change{{Resource: b.Ref.String(), Field: "iap.enabled", Before: "false", After: "true"}}
	}
	return bp
}

func (bp *backendPart) stepFor(svc ServiceRef) (outcome.Step, string) {
	b := bp.backend
	s := outcome.Step{Name: outcome.StepBackendIAP, Resource: b.Ref.String()}
	what := "IAP on backend service " + b.Ref.Name + " (Google-managed OAuth client)"
	if bp.frontend != nil && !bp.frontend.HTTPS {
		what += "; warning: no HTTPS frontend reaches it, and IAP needs one"
	}
	if c := bp.share.conflict(true); c != "" && (!b.IAPEnabled || bp.access) && bp.share.err != nil {
		s.Result, s.Message = outcome.StepFailed, "deciding whether backend service "+b.Ref.Name+" may change (it is shared): "+bp.share.err.Error()
		return s, ""
	} else if c != "" && (!b.IAPEnabled || bp.access) {
		names := append([]string{svc.Name}, slices.Sorted(maps.Keys(bp.share.others))...)
		s.Result = outcome.StepConflict
		s.Message = fmt.Sprintf("backend service %s fronts several Cloud Run services or backends (%s); iapguard changes it (IAP, access grants) only when every service behind it is labelled %s=%s with the same %s policy: %s. Label them alike, or give the service a backend service of its own",
			b.Ref.Name, strings.Join(append(names, bp.share.unknown...), ", "), LabelKey, labelEnabled, access.LabelKey, c)
		return s, ""
	}
	switch {
	case b.IAPEnabled:
		s.Result, s.Message = outcome.StepOK, "IAP is enabled on backend service "+b.Ref.Name
	case b.EnableCDN && bp.builtin:
		s.Result = outcome.StepConflict
		s.Message = fmt.Sprintf("backend service %s has Cloud CDN enabled: cached responses are served by the load balancer without reaching Cloud Run's built-in IAP. Turn CDN off: gcloud compute backend-services update %s --project=%s %s --no-enable-cdn",
			b.Ref.Name, b.Ref.Name, b.Ref.Project, b.Ref.gcloudScope())
	case bp.builtin:
		s.Result = outcome.StepOK
		s.Message = fmt.Sprintf("Cloud Run's built-in IAP (iapEnabled=true) guards every path to the service, including through backend service %s; IAP is not enabled on the backend because Google does not support IAP on both the load balancer and the Cloud Run service. To move to load-balancer IAP: gcloud compute backend-services update %s --project=%s %s --iap=enabled, then gcloud run services update %s --project=%s --region=%s --no-iap (iapguard never turns IAP off itself)",
			b.Ref.Name, b.Ref.Name, b.Ref.Project, b.Ref.gcloudScope(), svc.Name, svc.Project, svc.Region)
	case b.EnableCDN:
		s.Result = outcome.StepConflict
		s.Message = fmt.Sprintf("backend service %s has Cloud CDN enabled and IAP is incompatible with Cloud CDN; IAP not enabled. Decide which to keep; to use IAP: gcloud compute backend-services update %s --project=%s %s --no-enable-cdn (iapguard then enables IAP)",
			b.Ref.Name, b.Ref.Name, b.Ref.Project, b.Ref.gcloudScope())
	default:
		s.Result, s.Message = outcome.StepChanged, "enable "+what
	}
	return s, "enabled " + what
}

func (bp *backendPart) warnings() []string {
	b := bp.backend
	var w []string
	if bp.frontend != nil && !bp.frontend.HTTPS && !b.EnableCDN {
		w = append(w, fmt.Sprintf("backend service %s has no HTTPS frontend (URL map → target HTTPS proxy → forwarding rule); IAP only works over HTTPS: add a target HTTPS proxy and forwarding rule for its URL map", b.Ref.String()))
	}
	if b.IAPEnabled && b.EnableCDN {
		w = append(w, fmt.Sprintf("backend service %s has both IAP and Cloud CDN enabled; IAP is incompatible with Cloud CDN", b.Ref.String()))
	}
	return w
}

func (bp *backendPart) fix() string {
	r := bp.backend.Ref
	return fmt.Sprintf("gcloud compute backend-services update %s --project=%s %s --iap=enabled", r.Name, r.Project, r.gcloudScope())
}

func gcloudAgent(project string) string {
	return "gcloud beta services identity create --service=iap.googleapis.com --project=" + project
}
