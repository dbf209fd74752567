package iapsetup

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// AccessFinding is what the access step found on one IAP resource: who may
// pass IAP there (after the step's writes, when they succeeded). iapctl
// doctor and audit read it from Result.Access.
type AccessFinding struct {
	// Resource is the IAP resource name (projects/N/iap_web/...).
	Resource string
	// What describes the resource: "backend service web", "Cloud Run
	// service hello".
	What string
	// Members hold roles/iap.httpsResourceAccessor on Resource without a
	// condition; Conditional hold it under a condition ("member (if title)").
	Members     []string
	Conditional []string
	// Project is projects/N/iap_web; ProjectMembers hold the role there
	// (conditional ones with their condition). ProjectError is set when
	// that policy could not be read.
	Project        string
	ProjectMembers []string
	ProjectError   string
	// Policy is the service's iap-access label value ("" without the label).
	Policy string
	// Granted are the members iapguard manages on this service (its
	// access annotation after the reconcile).
	Granted []string
}

// anyone reports whether at least one member can pass.
func (f AccessFinding) anyone() bool {
	return len(f.Members)+len(f.Conditional)+len(f.ProjectMembers) > 0
}

// accessPlan is the access half of a plan: one accessPart per IAP resource
// that guards the service, and the access annotation to record.
type accessPlan struct {
	ref       ServiceRef
	policy    string // the iap-access label value
	labelSet  bool
	available []string // configured policy names, for messages
	// manage: the label names a known, valid policy; iapguard grants its
	// members and revokes members it granted that the policy dropped.
	manage bool
	// reject explains why the label's policy cannot be applied (rejected
	// step; nothing granted, nothing revoked).
	reject string
	wanted []string // the policy's members (canonical)
	// rec is the verified record (accessAnnotation) and the signing key.
	rec    *recordState
	rawAnn string // accessAnnotation as read
	// intent: apply recorded the grants as pending before making them.
	intent bool
	// keyErr: the record key could not be read; nothing is granted or
	// revoked (a grant could not be recorded).
	keyErr error

	number        string // project number, "" unknown
	projectPolicy *Policy
	projectErr    error
	parts         []*accessPart
	// noResource explains why no IAP resource is checked.
	noResource string
}

// accessPart plans roles/iap.httpsResourceAccessor on one IAP resource.
type accessPart struct {
	res     iapResource
	before  *Policy
	readErr error
	// after is the policy to write (with before's etag); nil: nothing to do.
	after   *Policy
	added   []string
	removed []string
	changes []outcome.Change
	// err is the write error; rejected is set when the API refused the
	// write as invalid (a member it does not know): nothing was granted.
	err      error
	rejected error
}

// planAccess is pure: it plans the access step from the labels, the
// configured policies and the IAP policies read into o. resources are the
// service's IAP resources (nil: none, noResource says why).
func planAccess(ref ServiceRef, d Desired, o *observed, number string, resources []iapResource, noResource string) *accessPlan {
	ap := &accessPlan{ref: ref, policy: d.Access, labelSet: d.AccessSet, rawAnn: d.Granted, number: number, noResource: noResource}
	ap.rec = o.record
	if ap.rec == nil {
		ap.rec = &recordState{granted: map[string][]string{}}
		if d.Granted != "" {
			ap.rec.unverified = map[string][]string{"(not read)": parseGranted(d.Granted)}
			ap.rec.why = "the record was not verified"
		}
	}
	ap.available = o.AccessPolicies.Names()
	if d.AccessSet {
		pol, ok := o.AccessPolicies.Lookup(d.Access)
		switch {
		case !ok && len(ap.available) == 0:
			ap.reject = fmt.Sprintf("label %s=%q names an access policy, but no access policies are configured (IAPGUARD_ACCESS_POLICIES)", access.LabelKey, d.Access)
		case !ok:
			ap.reject = fmt.Sprintf("label %s=%q names no access policy; known policies: %s", access.LabelKey, d.Access, strings.Join(ap.available, ", "))
		case !pol.Allows(ref.Project, ref.Name):
			ap.reject = fmt.Sprintf("access policy %s may be used only by %s; %s/%s is not among them", d.Access, strings.Join(pol.Allowed, ", "), ref.Project, ref.Name)
		default:
			ap.wanted = pol.Members
			ap.manage = true
			// Policies built in code are validated by NewAccessPolicies;
			// check again so that nothing malformed or public is granted.
			for _, m := range pol.Members {
				if c, err := access.CanonicalMember(m); err != nil || c != m {
					ap.manage, ap.wanted = false, nil
					ap.reject = fmt.Sprintf("access policy %s: %v", d.Access, err)
					break
				}
			}
		}
	}
	if ap.manage && ap.rec.signErr != nil {
		ap.keyErr = ap.rec.signErr
	}
	if number != "" {
		proj := projectIAPResource(number)
		ap.projectPolicy, ap.projectErr = o.IAP[proj], o.IAPErrs[proj]
	}
	for _, res := range resources {
		part := planAccessPart(res, o.IAP[res.Name], ap)
		part.readErr = o.IAPErrs[res.Name]
		ap.parts = append(ap.parts, &part)
	}
	return ap
}

// own returns the members iapguard granted on res by the verified record:
// its granted entries, and its pending ones found in before. Sorted and
// distinct (record members are canonical).
func (ap *accessPlan) own(res string, before *Policy) []string {
	out := append(slices.Clone(ap.rec.granted[res]), ap.found(res, before)...)
	slices.Sort(out)
	return slices.Compact(out)
}

// found returns the grants the verified record holds as pending (recorded
// as intended) on res that hold the role in before: iapguard's own grants
// whose confirmation was lost.
func (ap *accessPlan) found(res string, before *Policy) []string {
	present := accessorMembers(before, false)
	return slices.DeleteFunc(slices.Clone(ap.rec.pending[res]), func(m string) bool { return !containsMember(present, m) })
}

// recovered lists, per resource, pending grants found in place.
func (ap *accessPlan) recovered() map[string][]string {
	out := map[string][]string{}
	for _, part := range ap.parts {
		if ms := ap.found(part.res.Name, part.before); len(ms) > 0 {
			out[part.res.Name] = ms
		}
	}
	return out
}

// intentAnnotation is the record to write before the grants: what the
// record holds now (granted entries and recovered pending ones) with the
// members about to be granted as pending. nil: nothing to grant, or no key
// to sign with (an unsigned record is not trusted anyway).
func (ap *accessPlan) intentAnnotation() *string {
	if ap == nil || !ap.manage || ap.keyErr != nil || ap.rec.sign == nil {
		return nil
	}
	granted := map[string][]string{}
	for res, ms := range ap.rec.granted {
		granted[res] = slices.Clone(ms)
	}
	pending := map[string][]string{}
	for _, part := range ap.parts {
		granted[part.res.Name] = ap.own(part.res.Name, part.before)
		if part.after != nil && len(part.added) > 0 {
			pending[part.res.Name] = slices.Clone(part.added)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	v := formatRecord(ap.ref.String(), granted, pending, ap.rec.sign)
	return &v
}

// planAccessPart is pure: grant the wanted members that lack the role
// unconditionally, revoke the members a verified record says iapguard
// granted on this resource that the policy no longer lists, touch nothing
// else.
func planAccessPart(res iapResource, before *Policy, ap *accessPlan) accessPart {
	part := accessPart{res: res, before: before}
	if before == nil || !ap.manage || ap.keyErr != nil {
		return part
	}
	present := accessorMembers(before, false)
	for _, m := range ap.wanted {
		if !containsMember(present, m) {
			part.added = append(part.added, m)
		}
	}
	for _, m := range ap.own(res.Name, before) {
		if !containsMember(ap.wanted, m) && containsMember(present, m) {
			part.removed = append(part.removed, m)
		}
	}
	if len(part.added) == 0 && len(part.removed) == 0 {
		return part
	}
	after := before.clone()
	var kept []Binding
	added := false
	for _, b := range after.Bindings {
		if b.Role == roleAccessor && b.Condition == nil {
			b.Members = slices.DeleteFunc(b.Members, func(m string) bool { return containsMember(part.removed, m) })
			if !added && len(part.added) > 0 {
				b.Members = append(b.Members, part.added...)
				added = true
			}
			if len(b.Members) == 0 {
				continue // an empty binding is dropped, as IAM itself does
			}
		}
		kept = append(kept, b)
	}
	if !added && len(part.added) > 0 {
		kept = append(kept, Binding{Role: roleAccessor, Members: slices.Clone(part.added)})
	}
	after.Bindings = kept
	part.after = after
	field := "iamPolicy[" + roleAccessor + "]"
	for _, m := range part.added {
		part.changes = append(part.changes, outcome.Change{Resource: res.Name, Field: field, Before: "", After: m})
	}
	for _, m := range part.removed {
		part.changes = append(part.changes, outcome.Change{Resource: res.Name, Field: field, Before: m, After: ""})
	}
	return part
}

// accessorMembers returns the members holding roles/iap.httpsResourceAccessor
// in p: unconditional ones, or (conditional) "member (if title)" entries.
func accessorMembers(p *Policy, conditional bool) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, b := range p.Bindings {
		if b.Role != roleAccessor || (b.Condition != nil) != conditional {
			continue
		}
		for _, m := range b.Members {
			if conditional {
				m += " (if " + conditionTitle(b.Condition) + ")"
			}
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	sort.Strings(out)
	return out
}

func conditionTitle(c *Condition) string {
	if c.Title != "" {
		return c.Title
	}
	return c.Expression
}

// list returns the parts (nil-safe: plans that do not enforce have no
// access plan).
func (ap *accessPlan) list() []*accessPart {
	if ap == nil {
		return nil
	}
	return ap.parts
}

// failWrites marks every planned write as failed with err.
func (ap *accessPlan) failWrites(err error) {
	for _, part := range ap.list() {
		if part.after != nil {
			part.err = err
		}
	}
}

// writes counts the IAP policy writes of the plan.
func (ap *accessPlan) writes() int {
	if ap == nil {
		return 0
	}
	n := 0
	for _, part := range ap.parts {
		if part.after != nil {
			n++
		}
	}
	return n
}

// annotation returns the accessAnnotation value to record, or nil to leave
// it as it is. Once applied it reflects the writes' results, per IAP
// resource: members whose grant failed are not recorded, members whose
// revocation failed stay recorded; a wanted member that already held the
// role on a resource (granted by someone else) is not recorded there, so
// iapguard never revokes it. Entries of resources the plan does not cover
// are kept as verified; a record that did not verify is dropped (it was
// reported). The record is signed with the configured key.
func (ap *accessPlan) annotation() *string {
	if ap == nil || !ap.manage || ap.keyErr != nil {
		return nil
	}
	if ap.rec.sign == nil && ap.rawAnn != "" && !ap.rec.unsigned {
		// No key here (e.g. iapctl without IAPGUARD_RECORD_KEY): a record
		// signed elsewhere is left as it is, not replaced by an unsigned one.
		return nil
	}
	next := map[string][]string{}
	for res, ms := range ap.rec.granted {
		if !slices.ContainsFunc(ap.parts, func(p *accessPart) bool { return p.res.Name == res }) {
			next[res] = ms
		}
	}
	prior := ap.rec.granted
	if ap.rec.sign == nil && ap.rec.unsigned {
		// No key: the unsigned record is carried on (never trusted for a
		// revocation; nothing here revokes without a verified record).
		prior = ap.rec.unverified
	}
	pending := map[string][]string{}
	for res, ms := range ap.rec.pending {
		if !slices.ContainsFunc(ap.parts, func(p *accessPart) bool { return p.res.Name == res }) {
			pending[res] = ms // not read this time: still undecided
		}
	}
	for _, part := range ap.parts {
		var keep []string
		own := prior[part.res.Name]
		if ap.rec.sign != nil {
			own = ap.own(part.res.Name, part.before)
		}
		for _, m := range own {
			if containsMember(ap.wanted, m) || part.before == nil || containsMember(part.removed, m) && (part.err != nil || part.rejected != nil) {
				keep = append(keep, m) // still wanted, or not known to be revoked
			}
		}
		switch {
		case part.err == nil && part.rejected == nil:
			keep = append(keep, part.added...) // formatRecord sorts and dedups
		case part.err != nil && ap.intent:
			// The grant may have happened (a timeout after the write):
			// it stays recorded as intended; the next reconcile decides
			// from the policy.
			pending[part.res.Name] = slices.Clone(part.added)
		}
		next[part.res.Name] = keep
	}
	v := formatRecord(ap.ref.String(), next, pending, ap.rec.sign)
	if v == ap.rawAnn && !ap.intent {
		return nil
	}
	return &v
}

// recorded returns the members the record (after the plan) lists on res.
func (ap *accessPlan) recorded(res string) []string {
	if a := ap.annotation(); a != nil {
		if r, err := parseRecord(*a); err == nil {
			return r.Granted[res]
		}
		return nil
	}
	return ap.rec.granted[res]
}

// warnings report a record that did not verify, and revocation being off
// for want of a key.
func (ap *accessPlan) warnings() []string {
	if ap == nil {
		return nil
	}
	var w []string
	if (len(ap.rec.unverified) > 0 || ap.rec.why != "") && !(ap.rec.unsigned && ap.rec.sign == nil) {
		what := describeEntries(ap.rec.unverified)
		if what == "" {
			what = "no member iapguard can read"
		}
		w = append(w, fmt.Sprintf("the access record (annotation %s) does not verify: %s. It lists %s; iapguard revokes none of them and replaces the record with a signed one of what it grants from now on. Check who granted them: gcloud iap web get-iam-policy",
			accessAnnotation, ap.rec.why, what))
	}
	if r := ap.recovered(); len(r) > 0 {
		w = append(w, "found grants iapguard recorded as intended but never confirmed (the process stopped, or the service update failed, after granting): "+describeEntries(r)+"; they are recorded as iapguard's now")
	}
	if ap.manage && ap.rec.sign == nil && ap.rec.signErr == nil {
		w = append(w, "no access-record key is configured (IAPGUARD_RECORD_KEY): iapguard records its grants unsigned and never revokes a member (the record cannot be trusted)")
	}
	return w
}

// finding returns who can pass on part's resource once the plan is applied.
func (ap *accessPlan) finding(part *accessPart) AccessFinding {
	pol := part.before
	if part.after != nil && part.err == nil && part.rejected == nil {
		pol = part.after // planned, or written
	}
	f := AccessFinding{
		Resource: part.res.Name, What: part.res.What,
		Members: accessorMembers(pol, false), Conditional: accessorMembers(pol, true),
		Project: projectIAPResource(ap.number), Policy: ap.policy,
	}
	f.ProjectMembers = append(accessorMembers(ap.projectPolicy, false), accessorMembers(ap.projectPolicy, true)...)
	if ap.projectErr != nil {
		f.ProjectError = ap.projectErr.Error()
	}
	f.Granted = ap.recorded(part.res.Name)
	return f
}

// whoCanPass renders a finding for step messages.
func (f AccessFinding) whoCanPass() string {
	var parts []string
	if ms := append(slices.Clone(f.Members), f.Conditional...); len(ms) > 0 {
		parts = append(parts, strings.Join(ms, ", "))
	}
	if len(f.ProjectMembers) > 0 {
		parts = append(parts, "project-wide on "+f.Project+": "+strings.Join(f.ProjectMembers, ", "))
	}
	s := "who can pass: " + strings.Join(parts, "; ")
	if len(parts) == 0 {
		s = "who can pass: nobody"
	}
	if f.ProjectError != "" {
		s += " (the project-wide policy " + f.Project + " could not be read: " + f.ProjectError + ")"
	}
	return s
}

func (f AccessFinding) public() []string {
	var out []string
	for _, m := range append(append(slices.Clone(f.Members), f.Conditional...), f.ProjectMembers...) {
		base, _, _ := strings.Cut(m, " ")
		if isPublic(base) && !slices.Contains(out, base) {
			out = append(out, base)
		}
	}
	return out
}

// steps returns the access steps (one per IAP resource) with, for planned
// changes, the message to use once they are made.
func (ap *accessPlan) steps(v view) []outcome.Step {
	if ap == nil {
		return nil
	}
	svc := v.p.Ref.String()
	if len(ap.parts) == 0 {
		switch {
		case ap.reject != "":
			return []outcome.Step{{Name: outcome.StepAccess, Resource: svc, Result: outcome.StepRejected, Message: ap.reject + "; nothing granted"}}
		case ap.labelSet && ap.noResource != "":
			return []outcome.Step{{Name: outcome.StepAccess, Resource: svc, Result: outcome.StepSkipped, Message: ap.noResource + "; access policy " + ap.policy + " applies once IAP is on"}}
		}
		return nil
	}
	var out []outcome.Step
	for _, part := range ap.parts {
		out = append(out, ap.step(v, part))
	}
	return out
}

func (ap *accessPlan) step(v view, part *accessPart) outcome.Step {
	s := outcome.Step{Name: outcome.StepAccess, Resource: part.res.Name}
	if part.readErr != nil {
		s.Result = outcome.StepFailed
		s.Message = "reading who may pass IAP on " + part.res.What + ": " + part.readErr.Error()
		return s
	}
	if part.before == nil {
		s.Result, s.Message = outcome.StepSkipped, "IAM policy of "+part.res.What+" not read"
		return s
	}
	f := ap.finding(part)
	who := f.whoCanPass()
	scope := ap.scope()
	switch {
	case ap.keyErr != nil:
		s.Result = outcome.StepFailed
		s.Message = fmt.Sprintf("%v; iapguard needs secretmanager.versions.access on the record key to record what it grants, so nothing was granted or revoked; %s", ap.keyErr, who)
		return s
	case part.rejected != nil:
		s.Result = outcome.StepRejected
		s.Message = fmt.Sprintf("the IAP API refused %s on %s: %v; nothing granted, fix access policy %s; %s",
			ap.describe(part, false), part.res.What, part.rejected, ap.policy, who)
		return s
	case ap.reject != "":
		s.Result, s.Message = outcome.StepRejected, ap.reject+"; nothing granted or revoked; "+who
		if !f.anyone() {
			s.Message += "; " + ap.nobody(part, iapOnFor(v, part))
		}
		return s
	case part.after != nil:
		s.Result = outcome.StepChanged
		s.Message = ap.describe(part, false) + "; per " + scope + "; " + who
		return v.step(s, ap.describe(part, true)+"; per "+scope+"; "+who, part.err, ap.fix(part), true)
	case !f.anyone():
		s.Result, s.Message = outcome.StepWarning, ap.nobody(part, iapOnFor(v, part))
	case len(f.public()) > 0:
		s.Result = outcome.StepWarning
		s.Message = fmt.Sprintf("%s hold %s: IAP lets every Google account (or everyone) through %s; %s; remove it: gcloud iap web remove-iam-policy-binding %s --member=%s --role=%s",
			strings.Join(f.public(), " and "), roleAccessor, part.res.What, who, part.res.gcloud, f.public()[0], roleAccessor)
	default:
		s.Result, s.Message = outcome.StepOK, who+"; "+scope
	}
	return s
}

// scope says how iapguard manages access to the service.
func (ap *accessPlan) scope() string {
	switch {
	case ap.manage:
		return "access policy " + ap.policy
	case len(ap.rec.granted) > 0:
		n := len(recordMembers(ap.rec.granted))
		return fmt.Sprintf("no %s label: iapguard manages no access; the %d members it granted before are kept (annotation %s)", access.LabelKey, n, accessAnnotation)
	}
	return fmt.Sprintf("no %s label: access is not managed by iapguard", access.LabelKey)
}

// describe says what part will change or, done, what it changed.
func (ap *accessPlan) describe(part *accessPart, done bool) string {
	grant, revoke := "grant ", "revoke"
	if done {
		grant, revoke = "granted ", "revoked"
	}
	var what []string
	if len(part.added) > 0 {
		what = append(what, grant+roleAccessor+" on "+part.res.What+" to "+strings.Join(part.added, ", "))
	}
	if len(part.removed) > 0 {
		what = append(what, revoke+" it from "+strings.Join(part.removed, ", ")+" (granted by iapguard, no longer listed)")
	}
	if len(what) == 0 && !done {
		return "update " + roleAccessor + " on " + part.res.What
	}
	return strings.Join(what, "; ")
}

// nobody is the nobody-can-pass warning.
// iapOnFor reports whether IAP is on (or, planned, will be) for part's
// resource: false when the write turning it on failed.
func iapOnFor(v view, part *accessPart) bool {
	if sp := v.service; sp != nil && sp.err != nil && sp.update != nil && sp.update.EnableIAP && v.p.Mode == outcome.Direct {
		return false
	}
	for _, b := range v.backends {
		if b.write && b.err != nil && backendIAPResource(v.access.number, b.backend).Name == part.res.Name {
			return false
		}
	}
	return true
}

func (ap *accessPlan) nobody(part *accessPart, on bool) string {
	how := fmt.Sprintf("gcloud iap web add-iam-policy-binding %s --member=group:GROUP@DOMAIN --role=%s", part.res.gcloud, roleAccessor)
	label := fmt.Sprintf("gcloud run services update %s --project=%s --region=%s --update-labels=%s=POLICY",
		ap.ref.Name, ap.ref.Project, ap.ref.Region, access.LabelKey)
	if len(ap.available) > 0 {
		label += " (policies: " + strings.Join(ap.available, ", ") + ")"
	}
	state := "IAP is on and"
	if !on {
		state = "turning IAP on failed (see its step); once it is on,"
	}
	return fmt.Sprintf("%s nobody holds %s on %s or project-wide on %s (project-level grants outside iap_web are not checked): every request is refused. Grant access: %s, or declare it: %s",
		state, roleAccessor, part.res.What, projectIAPResource(ap.number), how, label)
}

func (ap *accessPlan) fix(part *accessPart) string {
	var cmds []string
	for _, m := range part.added {
		cmds = append(cmds, fmt.Sprintf("gcloud iap web add-iam-policy-binding %s --member=%s --role=%s", part.res.gcloud, m, roleAccessor))
	}
	for _, m := range part.removed {
		cmds = append(cmds, fmt.Sprintf("gcloud iap web remove-iam-policy-binding %s --member=%s --role=%s", part.res.gcloud, m, roleAccessor))
	}
	return strings.Join(cmds, " && ")
}

// findings returns the access findings of every IAP resource read.
func (ap *accessPlan) findings() []AccessFinding {
	if ap == nil {
		return nil
	}
	var out []AccessFinding
	for _, part := range ap.parts {
		if part.before == nil {
			continue
		}
		out = append(out, ap.finding(part))
	}
	return out
}

// reads lists the IAP policies the plan needs and has not read: each IAP
// resource, and the project-wide policy.
func (ap *accessPlan) reads() (resources []string, project string) {
	if ap == nil || len(ap.parts) == 0 {
		return nil, ""
	}
	for _, part := range ap.parts {
		if part.before == nil && part.readErr == nil {
			resources = append(resources, part.res.Name)
		}
	}
	if ap.projectPolicy == nil && ap.projectErr == nil && ap.number != "" {
		project = projectIAPResource(ap.number)
	}
	return resources, project
}
