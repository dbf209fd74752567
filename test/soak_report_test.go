package test

// The soak's accounting: which events were delivered and what became of
// them, which writes iapguard made and why, and the report.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/compute/v1"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// soakLog reads the function's JSON log lines as they are written and
// counts what the reconciler says about retries and failures. The function
// logs every write with the attempts it took ("attempts", conflicts
// retried inside one reconcile) and every failed write "(after N
// attempts)".
type soakLog struct {
	mu      sync.Mutex
	partial []byte
	// conflictRetries: extra write attempts after ABORTED / 412.
	conflictRetries int
	// transient: events answered with an error so Eventarc redelivers.
	transient int
	// unavailable, exhausted: log lines naming an injected UNAVAILABLE or
	// RESOURCE_EXHAUSTED error.
	unavailable, exhausted int
	// secrets: lines that look like they carry a credential.
	secrets []string
	// doors: per service, the public invokers removed in a write of their
	// own after the write that also adds the agent failed (closeDoor).
	doors map[string]int
	// intents: per service, the access grants recorded as intended (one
	// UpdateService each, before an IAP write).
	intents map[string]int
}

var (
	afterAttempts = regexp.MustCompile(`after (\d+) attempts`)
	// credentialLike matches what must never be logged: bearer tokens,
	// Google OAuth access tokens, JWTs, private keys.
	credentialLike = regexp.MustCompile(`(?i)bearer [a-z0-9._-]{8,}|ya29\.[a-z0-9._-]+|eyJ[a-zA-Z0-9_-]{8,}\.eyJ|PRIVATE KEY`)
)

func (l *soakLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *soakLog) line(b []byte) {
	// Every line is scanned, JSON or not: a stray print must not escape.
	s := string(b)
	if strings.Contains(s, "currently unavailable") {
		l.unavailable++
	}
	if strings.Contains(s, "Quota exceeded") {
		l.exhausted++
	}
	if credentialLike.MatchString(s) && len(l.secrets) < 5 {
		l.secrets = append(l.secrets, s)
	}
	var rec struct {
		Message  string `json:"message"`
		Attempts int    `json:"attempts"`
		Service  string `json:"service"`
	}
	if json.Unmarshal(b, &rec) != nil {
		return
	}
	switch rec.Message {
	case "updated IAM policy", "updated service", "enabled IAP":
		l.conflictRetries += max(rec.Attempts-1, 0)
	case "reconcile failed":
		for _, m := range afterAttempts.FindAllSubmatch(b, -1) {
			var n int
			fmt.Sscan(string(m[1]), &n)
			l.conflictRetries += max(n-1, 0)
		}
	case "transient failure; returning an error so Eventarc redelivers":
		l.transient++
	case "removed public invokers":
		if l.doors == nil {
			l.doors = map[string]int{}
		}
		l.doors[iapsetup.ResourcePath(rec.Service)]++
	case "recorded access grants as intended":
		if l.intents == nil {
			l.intents = map[string]int{}
		}
		l.intents[iapsetup.ResourcePath(rec.Service)]++
	}
}

func (l *soakLog) snapshot() soakLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	return soakLog{conflictRetries: l.conflictRetries, transient: l.transient, unavailable: l.unavailable,
		exhausted: l.exhausted, secrets: slices.Clone(l.secrets), doors: maps.Clone(l.doors), intents: maps.Clone(l.intents)}
}

// soakFigures are the soak's results.
type soakFigures struct {
	Services, Controls, Projects int
	Duration                     time.Duration

	Converged    int
	NotConverged []string

	ForeignGrants, ForeignLost int
	// Access policies (issue #19): services with iap-access, foreign
	// accessors revoked, policy members present but not recorded.
	AccessServices, ForeignAccessLost, AccessUnrecorded int
	AccessProblems                                      []string
	Lost                                                []string
	ForeignEdits, Drifts                                int64
	ForeignConflicts                                    int64

	Events, EventsWithoutOutcome, EventsOnlyFailed, UnknownEventOutcomes int
	Missing                                                              []string
	Outcomes, FailedOutcomes                                             int

	IapguardWrites, SelfCausedWrites, HandedOverWrites, RedundantWrites int
	SelfCaused, HandedOver, Redundant                                   []string
	ControlsTouched                                                     []string
	// MarkerMissing lists labelled services that lack the managed
	// annotation after the run, so removing their label would be reported
	// "skipped" instead of "opted-out".
	MarkerMissing []string

	// Shared backends: services behind an agreeing group's backend and
	// how many converged; services behind a disagreeing group's backend
	// and how many ended conflict untouched; members found granted on a
	// disagreeing group's backend IAP resource.
	SharedServices, SharedConverged                        int
	SharedConflictServices, SharedConflicts, SharedGranted int
	SharedProblems                                         []string

	// Function restarts mid-burst and the requests they abandoned.
	Restarts  int
	Abandoned int64

	Delivery        delivery.Stats
	InjectedFaults  int64
	ConflictRetries int
	TransientEvents int
	ClientFaults    map[string]int
	Log             soakLog
}

// soakEvents maps the CloudEvent id of every audit entry that matches a
// trigger (as the Eventarc stand-in computes it) to the entry.
func soakEvents(entries []*core.LogEntry) (map[string]*core.LogEntry, error) {
	all, err := eventarc.Load()
	if err != nil {
		return nil, err
	}
	triggers := eventarc.AuditLogTriggers(all)
	out := map[string]*core.LogEntry{}
	for _, e := range entries {
		p := e.ProtoPayload
		if p == nil || !slices.ContainsFunc(triggers, func(t eventarc.Trigger) bool {
			return t.MatchesAuditLog(p.ServiceName, p.MethodName, p.ResourceName)
		}) {
			continue
		}
		h, _, err := delivery.CloudEventFor(e)
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.InsertID, err)
		}
		out[h.Get("Ce-Id")] = e
	}
	return out, nil
}

// accountEvents: every delivered event must end with an outcome that is not
// "failed" (a transient failure publishes nothing and is redelivered; the
// soak has no permanent failures, so "failed" means one was misclassified).
func (f *soakFigures) accountEvents(events map[string]*core.LogEntry, msgs []*outcome.Message) {
	byID := map[string][]*outcome.Message{}
	for _, m := range msgs {
		byID[m.Trigger.EventID] = append(byID[m.Trigger.EventID], m)
		if m.Outcome == outcome.Failed {
			f.FailedOutcomes++
		}
	}
	f.Events, f.Outcomes = len(events), len(msgs)
	for id, e := range events {
		ms := byID[id]
		switch {
		case len(ms) == 0:
			f.EventsWithoutOutcome++
			f.Missing = append(f.Missing, soakEntryString(id, e))
		case !slices.ContainsFunc(ms, func(m *outcome.Message) bool { return m.Outcome != outcome.Failed }):
			f.EventsOnlyFailed++
			f.Missing = append(f.Missing, soakEntryString(id, e)+" (only failed: "+ms[len(ms)-1].Reason+")")
		}
	}
	for id := range byID {
		if events[id] == nil {
			f.UnknownEventOutcomes++
		}
	}
	sort.Strings(f.Missing)
}

// soakEntryString describes an audit entry and its event for a report.
func soakEntryString(id string, e *core.LogEntry) string {
	p := e.ProtoPayload
	who := ""
	if p.AuthenticationInfo != nil {
		who = p.AuthenticationInfo.PrincipalEmail
	}
	return fmt.Sprintf("%s %s by %s at %s (event %s)", p.MethodName, p.ResourceName, who, e.Timestamp.Format("15:04:05.000000"), id)
}

// accountSelfWrites attributes every change iapguard made while handling an
// event of its own write. Such a change is "handed over" — legitimate — only
// when both hold:
//   - the value it replaced was not one iapguard itself had set (for IAM
//     changes: the member's presence), so iapguard is not undoing or
//     redoing its own output — the loop the design forbids; and
//   - an event about the same service caused by someone else was still
//     being handled when iapguard's triggering write happened (its change
//     time is before the self-triggered outcome and its last outcome after
//     that write), so the self-triggered reconcile merely did that event's
//     remaining work first — e.g. the label event's service update failed
//     transiently and is waiting for redelivery, or a reconcile triggered
//     by iapguard's backend patch updated the service while the label
//     event's reconcile was still running.
//
// Anything else is a self-caused write: either a loop, or an event that
// ended without doing work that iapguard's own next event then found.
func (f *soakFigures) accountSelfWrites(msgs []*outcome.Message) {
	type window struct{ from, to time.Time }
	others := map[string]map[string]*window{}  // service → event id → window
	set := map[soakChangeKey]map[string]bool{} // values iapguard wrote
	for _, m := range msgs {
		if !m.DryRun {
			for _, c := range m.Changes {
				k, _, after := soakKeyOf(c)
				if set[k] == nil {
					set[k] = map[string]bool{}
				}
				set[k][after] = true
			}
		}
		if m.Trigger.Principal == stack.FunctionPrincipal || m.Resource.Service == "" {
			continue
		}
		ws := others[m.Resource.Name]
		if ws == nil {
			ws = map[string]*window{}
			others[m.Resource.Name] = ws
		}
		w := ws[m.Trigger.EventID]
		if w == nil {
			w = &window{from: m.Trigger.Time, to: m.Time}
			ws[m.Trigger.EventID] = w
		}
		if m.Time.After(w.to) {
			w.to = m.Time
		}
	}
	for _, m := range msgs {
		if m.Trigger.Principal != stack.FunctionPrincipal || len(m.Changes) == 0 || m.DryRun {
			continue
		}
		why := ""
		for _, c := range m.Changes {
			if k, before, _ := soakKeyOf(c); set[k][before] {
				why = "replaced a value iapguard had set (" + c.Field + ")"
				break
			}
		}
		// Confirming grants recorded as intended is legitimate whichever
		// reconcile sees them first: the one that made them, or one that
		// iapguard's own concurrent write triggered.
		confirms := !slices.ContainsFunc(m.Changes, func(c outcome.Change) bool {
			return c.Field != "annotations[iapguard.dev/access-granted]" || !strings.Contains(c.Before, `"pending"`)
		})
		if why == "" && !confirms {
			why = "no event by anyone else about the service was pending"
			for _, w := range others[m.Resource.Name] {
				if !w.from.After(m.Time) && !w.to.Before(m.Trigger.Time) {
					why = ""
					break
				}
			}
		}
		if why == "" {
			f.HandedOverWrites++
			if len(f.HandedOver) < 5 {
				f.HandedOver = append(f.HandedOver, soakDescribeWrite(m))
			}
			continue
		}
		f.SelfCausedWrites++
		if len(f.SelfCaused) < 10 {
			f.SelfCaused = append(f.SelfCaused, soakDescribeWrite(m)+": "+why)
		}
	}
}

// soakChangeKey names what one outcome change is about: a field of a resource,
// or for IAM policy changes one member of one binding.
type soakChangeKey struct{ resource, field, member string }

// keyOf returns c's key and the values before and after; an IAM change's
// values are the member's presence.
func soakKeyOf(c outcome.Change) (k soakChangeKey, before, after string) {
	if strings.HasPrefix(c.Field, "iamPolicy[") {
		presence := func(v string) string {
			if v == "" {
				return "absent"
			}
			return "present"
		}
		return soakChangeKey{c.Resource, c.Field, c.Before + c.After}, presence(c.Before), presence(c.After)
	}
	return soakChangeKey{c.Resource, c.Field, ""}, c.Before, c.After
}

func soakDescribeWrite(m *outcome.Message) string {
	var cs []string
	for _, c := range m.Changes {
		cs = append(cs, c.Field+": "+c.Before+" → "+c.After)
	}
	return fmt.Sprintf("%s, event of our %s at %s, outcome at %s: %s", m.Resource.Service, m.Trigger.Method,
		m.Trigger.Time.Format("15:04:05.000000"), m.Time.Format("15:04:05.000000"), strings.Join(cs, ", "))
}

// accountWrites counts iapguard's writes per resource from the audit log (a
// Compute operation once, by its first entry; provisioning the IAP agent
// not at all) and bounds them: per labelled service one IAM policy write
// plus one per public member a foreign principal added and one per removal
// of public invokers in a write of their own after a failed policy write
// (doors, from the function's logs), one service update, one patch of its
// backend service; nothing on a control.
func (f *soakFigures) accountWrites(entries []*core.LogEntry, w *soakWorld, doors map[string]int) {
	if w.intents == nil {
		w.intents = map[string]int{}
	}
	writes := map[string]int{} // kind + " " + resource → count
	for _, e := range entries {
		p := e.ProtoPayload
		if p == nil || p.AuthenticationInfo == nil || p.AuthenticationInfo.PrincipalEmail != stack.FunctionPrincipal {
			continue
		}
		if e.Operation != nil && e.Operation.Last || strings.Contains(p.MethodName, "GenerateServiceIdentity") {
			continue
		}
		if p.Status != nil && p.Status.Code != 0 {
			continue // a refused call, logged as failed: it changed nothing
		}
		kind := p.MethodName[strings.LastIndex(p.MethodName, ".")+1:]
		writes[kind+" "+iapsetup.ResourcePath(p.ResourceName)]++
		f.IapguardWrites++
	}
	allowed := map[string]int{}
	for _, s := range w.svcs {
		if s.control {
			continue
		}
		allowed["SetIamPolicy "+s.resource()] = 1 + w.drifts[s.resource()] + doors[s.resource()]
		allowed["UpdateService "+s.resource()] = 1
		if s.group != nil && s.group.agree {
			// Until every neighbour is labelled the shared backend is a
			// conflict, and iapguard may already close the service's public
			// door in an IAM write of its own; the agent follows once the
			// group agrees.
			allowed["SetIamPolicy "+s.resource()]++
		}
		if s.access {
			// Each time grants are recorded as intended (one service
			// update, from the function's logs), one IAP write follows and
			// one service update confirms it — with the service's own
			// fields, or alone when a fault split them.
			n := max(1, w.intents[s.resource()])
			allowed["SetIamPolicy "+iapsetup.ResourcePath(s.iapResource())] = n
			allowed["UpdateService "+s.resource()] = 1 + 2*n
		}
		if s.kind.lb() && (s.group == nil || s.group.agree) {
			// A disagreeing group's shared backend is never patched.
			allowed["patch "+s.backendPath()] = 1
		}
	}
	var keys []string
	for k := range writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if extra := writes[k] - allowed[k]; extra > 0 {
			f.RedundantWrites += extra
			f.Redundant = append(f.Redundant, fmt.Sprintf("%s: %d writes, at most %d needed", k, writes[k], allowed[k]))
		}
	}
}

// soakAgent is the IAP service agent of p.
func soakAgent(p core.Project) string {
	return fmt.Sprintf("serviceAccount:service-%d@gcp-sa-iap.iam.gserviceaccount.com", p.Number)
}

// checkFinal reads every service back (faults cleared) and checks
// convergence, foreign grants and controls.
func (f *soakFigures) checkFinal(ctx context.Context, e *env, w *soakWorld) error {
	policies := map[string]*iampb.Policy{}
	for _, s := range w.svcs {
		p, err := e.cl.Run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: s.resource(), Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}})
		if err != nil {
			return fmt.Errorf("reading the IAM policy of %s: %w", s.name, err)
		}
		policies[s.resource()] = p
	}
	// Foreign grants.
	f.ForeignGrants = len(w.grants)
	for _, g := range w.grants {
		if !soakHasGrant(policies[g.service], g) {
			f.ForeignLost++
			if len(f.Lost) < 10 {
				f.Lost = append(f.Lost, fmt.Sprintf("%s: %s in %s (condition %q)", g.service, g.member, g.role, g.cond))
			}
		}
	}
	for _, s := range w.svcs {
		svc, err := e.cl.Run.GetService(ctx, &runpb.GetServiceRequest{Name: s.resource()})
		if err != nil {
			return fmt.Errorf("reading %s: %w", s.name, err)
		}
		var be *compute.BackendService
		if s.kind.lb() {
			if be, err = e.cl.Compute.BackendServices.Get(s.project.ID, s.lb.BackendService).Context(ctx).Do(); err != nil {
				return fmt.Errorf("reading backend service %s: %w", s.lb.BackendService, err)
			}
		}
		pol := policies[s.resource()]
		if s.control {
			if !slices.Contains(soakInvokers(pol), "allUsers") || svc.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL || svc.IapEnabled ||
				be != nil && be.Iap != nil && be.Iap.Enabled {
				f.ControlsTouched = append(f.ControlsTouched, s.name)
			}
			continue
		}
		if !iapsetup.DesiredFor(&iapsetup.Service{Annotations: svc.Annotations}).Managed { // a marker iapguard writes
			f.MarkerMissing = append(f.MarkerMissing, s.name+" ("+s.kind.String()+")")
		}
		if s.group != nil && !s.group.agree {
			if err := f.accountConflict(ctx, e, s, svc, be); err != nil {
				return err
			}
			continue
		}
		problems := soakPosture(s, svc, pol, be)
		res, err := e.st.Fn.Reconciler.Reconcile(ctx, s.ref(), iapsetup.WithDryRun(true))
		if err == nil && s.access {
			f.accountAccess(s, res)
		}
		switch {
		case err != nil:
			problems = append(problems, "dry-run reconcile: "+err.Error())
		case res.Outcome != outcome.Compliant || len(res.Changes) > 0:
			problems = append(problems, fmt.Sprintf("dry-run reconcile: %s with %d planned changes", res.Outcome, len(res.Changes)))
		}
		switch {
		case s.group != nil:
			f.SharedServices++
			if len(problems) == 0 {
				f.SharedConverged++
			} else {
				f.SharedProblems = append(f.SharedProblems, s.name+" (shared backend "+s.lb.BackendService+", policies agree): "+strings.Join(problems, "; "))
			}
		case len(problems) == 0:
			f.Converged++
		case len(f.NotConverged) < 10:
			f.NotConverged = append(f.NotConverged, s.name+" ("+s.kind.String()+"): "+strings.Join(problems, "; "))
		}
	}
	return nil
}

// accountConflict checks a service of a disagreeing shared-backend group:
// iapguard reports conflict (a dry run still says so), and neither turned
// IAP on anywhere for it nor granted anything on the backend's IAP
// resource.
func (f *soakFigures) accountConflict(ctx context.Context, e *env, s *soakSvc, svc *runpb.Service, be *compute.BackendService) error {
	f.SharedConflictServices++
	var problems []string
	res, err := e.st.Fn.Reconciler.Reconcile(ctx, s.ref(), iapsetup.WithDryRun(true))
	switch {
	case err != nil:
		problems = append(problems, "dry-run reconcile: "+err.Error())
	case res.Outcome != outcome.Conflict:
		problems = append(problems, fmt.Sprintf("dry-run reconcile: %s, want %s", res.Outcome, outcome.Conflict))
	}
	if be.Iap != nil && be.Iap.Enabled {
		problems = append(problems, "IAP turned on on the shared backend")
	}
	if svc.IapEnabled {
		problems = append(problems, "Cloud Run IAP turned on")
	}
	id := fmt.Sprint(be.Id) // the IAP API names a backend service by its id, else its name
	if be.Id == 0 {
		id = be.Name
	}
	res2 := "projects/" + s.project.NumberString() + "/iap_web/compute/services/" + id
	p, err := e.st.Fn.Clients.IAPAdapter.GetIAPPolicy(ctx, res2)
	if err != nil {
		return fmt.Errorf("reading the IAP policy of %s: %w", res2, err)
	}
	for _, b := range p.Bindings {
		if len(b.Members) > 0 {
			f.SharedGranted += len(b.Members)
			problems = append(problems, fmt.Sprintf("%s granted on %s", strings.Join(b.Members, ", "), res2))
		}
	}
	if len(problems) == 0 {
		f.SharedConflicts++
	} else {
		f.SharedProblems = append(f.SharedProblems, s.name+" (shared backend "+be.Name+", policies disagree): "+strings.Join(problems, "; "))
	}
	return nil
}

// posture checks the compliance rules of DESIGN.md ("Compliance", 1–6)
// directly, independently of the planner.
func soakPosture(s *soakSvc, svc *runpb.Service, pol *iampb.Policy, be *compute.BackendService) []string {
	var out []string
	inv := soakInvokers(pol)
	if !slices.Contains(inv, soakAgent(s.project)) {
		out = append(out, "the IAP agent is not an unconditional invoker")
	}
	for _, b := range pol.GetBindings() {
		if b.GetRole() == "roles/run.invoker" && (slices.Contains(b.Members, "allUsers") || slices.Contains(b.Members, "allAuthenticatedUsers")) {
			out = append(out, "public invoker left")
		}
	}
	if svc.InvokerIamDisabled {
		out = append(out, "invoker IAM check disabled")
	}
	wantIngress := runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
	switch {
	case s.kind == kindLBInternal:
		wantIngress = runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY
	case !s.kind.lb():
		wantIngress = runpb.IngressTraffic_INGRESS_TRAFFIC_ALL
		if !svc.IapEnabled {
			out = append(out, "Cloud Run IAP off without a load balancer")
		}
	}
	if svc.Ingress != wantIngress {
		out = append(out, fmt.Sprintf("ingress %v, want %v", svc.Ingress, wantIngress))
	}
	if be != nil && (be.Iap == nil || !be.Iap.Enabled) {
		out = append(out, "backend IAP off")
	}
	return out
}

func soakInvokers(p *iampb.Policy) []string {
	var out []string
	for _, b := range p.GetBindings() {
		if b.GetRole() == "roles/run.invoker" && b.GetCondition() == nil {
			out = append(out, b.Members...)
		}
	}
	return out
}

func soakHasGrant(p *iampb.Policy, g soakGrant) bool {
	for _, b := range p.GetBindings() {
		if b.GetRole() != g.role || b.GetCondition().GetTitle() != g.cond || (g.cond == "") != (b.GetCondition() == nil) {
			continue
		}
		if slices.Contains(b.Members, g.member) {
			return true
		}
	}
	return false
}

func soakPct(n, of int) string {
	if of == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(of))
}

// table renders the report as Markdown.
func (f *soakFigures) table() string {
	var b strings.Builder
	row := func(metric, value, goal string) { fmt.Fprintf(&b, "| %s | %s | %s |\n", metric, value, goal) }
	fmt.Fprintf(&b, "iapguard soak: %d labelled services + %d controls in %d projects, %s\n\n", f.Services, f.Controls, f.Projects, f.Duration.Round(100*time.Millisecond))
	b.WriteString("| metric | value | goal |\n|---|---|---|\n")
	row("converged (dry-run plans nothing, posture checked)", fmt.Sprintf("%d/%d = %s", f.Converged, f.Services, soakPct(f.Converged, f.Services)), "100 %")
	row("foreign bindings lost", fmt.Sprintf("%d of %d", f.ForeignLost, f.ForeignGrants), "0")
	row("access services: foreign accessors revoked / policy grants unrecorded", fmt.Sprintf("%d / %d of %d", f.ForeignAccessLost, f.AccessUnrecorded, f.AccessServices), "0 / 0")
	row("shared backends: agreeing services converged / disagreeing services ended conflict untouched", fmt.Sprintf("%d/%d / %d/%d", f.SharedConverged, f.SharedServices, f.SharedConflicts, f.SharedConflictServices), "all / all")
	row("members granted on a disagreeing shared backend", fmt.Sprint(f.SharedGranted), "0")
	row("events without an outcome", fmt.Sprint(f.EventsWithoutOutcome), "0")
	row("events whose every outcome is failed", fmt.Sprint(f.EventsOnlyFailed), "0")
	row("writes caused by events of our own writes", fmt.Sprint(f.SelfCausedWrites), "0")
	row("redundant writes (beyond one per part and drift)", fmt.Sprint(f.RedundantWrites), "0")
	row("controls touched", fmt.Sprint(len(f.ControlsTouched)), "0")
	row("labelled services without the managed marker (opt-out unreported)", fmt.Sprint(len(f.MarkerMissing)), "0")
	row("credential-like log lines", fmt.Sprint(len(f.Log.secrets)), "0")
	row("function restarts mid-burst / requests abandoned in flight", fmt.Sprintf("%d / %d", f.Restarts, f.Abandoned), "abandoned > 0")
	row("delivery retries (Eventarc stand-in)", fmt.Sprint(f.Delivery.Retried), "")
	row("reconciler conflict retries (ABORTED/412, from its logs)", fmt.Sprint(f.ConflictRetries), "")
	row("events answered with an error (redelivered)", fmt.Sprint(f.TransientEvents), "")
	row("events (unique ids) / outcomes", fmt.Sprintf("%d / %d", f.Events, f.Outcomes), "")
	row("failed outcomes (a transient failure publishes nothing)", fmt.Sprint(f.FailedOutcomes), "0")
	row("outcomes for events not in the audit log", fmt.Sprint(f.UnknownEventOutcomes), "0")
	row("deliveries: attempts / duplicated / reordered / dropped", fmt.Sprintf("%d / %d / %d / %d", f.Delivery.Attempts, f.Delivery.Duplicated, f.Delivery.Reordered, f.Delivery.Dropped), "dropped 0")
	row("injected faults (UNAVAILABLE + RESOURCE_EXHAUSTED)", fmt.Sprint(f.InjectedFaults), "")
	row("function log lines naming UNAVAILABLE / RESOURCE_EXHAUSTED", fmt.Sprintf("%d / %d", f.Log.unavailable, f.Log.exhausted), "")
	row("faults met by the soak's own clients", fmt.Sprint(f.ClientFaults), "")
	row("foreign IAM edits / of them public (drift) / ABORTED and redone", fmt.Sprintf("%d / %d / %d", f.ForeignEdits, f.Drifts, f.ForeignConflicts), "")
	row("iapguard writes / handed over (self-triggered, other event pending)", fmt.Sprintf("%d / %d", f.IapguardWrites, f.HandedOverWrites), "")
	return b.String()
}

// accountAccess checks an access service's IAP resource: the accessor an
// administrator granted by hand is still there, and every policy member
// holding the role is in iapguard's (verified) record.
func (f *soakFigures) accountAccess(s *soakSvc, res *iapsetup.Result) {
	f.AccessServices++
	i := slices.IndexFunc(res.Access, func(a iapsetup.AccessFinding) bool { return a.Resource == s.iapResource() })
	if i < 0 {
		f.ForeignAccessLost++
		f.AccessProblems = append(f.AccessProblems, s.name+": no access finding for "+s.iapResource())
		return
	}
	a := res.Access[i]
	if !slices.Contains(a.Members, soakForeignAccessor(s)) {
		f.ForeignAccessLost++
		f.AccessProblems = append(f.AccessProblems, s.name+": "+soakForeignAccessor(s)+" revoked")
	}
	for _, m := range soakAccessMembers {
		if slices.Contains(a.Members, m) && !slices.Contains(a.Granted, m) {
			f.AccessUnrecorded++
			f.AccessProblems = append(f.AccessProblems, s.name+": "+m+" holds the role but is not recorded")
		}
		if !slices.Contains(a.Members, m) {
			f.AccessProblems = append(f.AccessProblems, s.name+": "+m+" was not granted")
			f.AccessUnrecorded++
		}
	}
}
