package iapsetup_test

// Never-weaken property tests (issue 6): random starting states — labels,
// IAM members, ingress, invokerIamDisabled, built-in IAP, backend IAP and
// CDN, NEG layouts — are reconciled, and the posture afterwards must never
// be weaker than before: no new public member, ingress never looser, IAP
// never turned off, the invoker IAM check never disabled, no foreign
// binding removed, nothing written for a service that is not labelled
// iap=enabled. Every case runs through the real Reconciler (planner, guard,
// apply) over an in-memory Google Cloud that injects transient errors and
// concurrent foreign writes; a subset also runs over the emulator through
// the real adapters and official clients.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	computeapi "google.golang.org/api/compute/v1"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

var (
	propCases    = flag.Int("prop.cases", 1000, "never-weaken property test: random starting states through the in-memory cloud")
	propEmulated = flag.Int("prop.emulated", 40, "never-weaken property test: of those, how many also run against the emulator")
	propSeed     = flag.Uint64("prop.seed", 1, "never-weaken property test: seed")
)

const (
	propProject = emulatortest.Project
	propRegion  = emulatortest.Region
	propOther   = "europe-west1"
	propAgent   = emulatortest.Agent
)

// ---- random starting states -------------------------------------------------

type propBinding struct {
	role    string
	cond    string // condition title; "" unconditional
	members []string
}

type propNEG struct {
	name, region     string
	service, urlMask string
}

type propBackend struct {
	name, region string
	negs         []int // indexes into propCase.negs
	instances    bool  // also an instance-group backend
	iap, cdn     bool
	https        bool // an HTTPS frontend (global backends only)
	frontend     bool // any frontend
}

// propCase is one random starting state of one Cloud Run service.
type propCase struct {
	name        string
	labels      map[string]string
	annotations map[string]string
	ingress     string
	invokerOff  bool
	iapOn       bool
	version     int32
	bindings    []propBinding
	negs        []propNEG
	backends    []propBackend
	access      propAccess
}

func (c *propCase) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s labels=%v annotations=%v ingress=%s invokerIamDisabled=%t iapEnabled=%t policy v%d:", c.name, c.labels, c.annotations, c.ingress, c.invokerOff, c.iapOn, c.version)
	for _, bd := range c.bindings {
		fmt.Fprintf(&b, " [%s if %q: %v]", bd.role, bd.cond, bd.members)
	}
	for _, n := range c.negs {
		fmt.Fprintf(&b, " neg{%s %s svc=%q mask=%q}", n.name, n.region, n.service, n.urlMask)
	}
	for _, be := range c.backends {
		fmt.Fprintf(&b, " backend{%s region=%q negs=%v ig=%t iap=%t cdn=%t frontend=%t https=%t}", be.name, be.region, be.negs, be.instances, be.iap, be.cdn, be.frontend, be.https)
	}
	return b.String()
}

func propPick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

var propMembers = []string{
	"allUsers", "allAuthenticatedUsers", "allUsers",
	"user:alice@example.com", "group:web-team@example.com", "domain:example.com",
	"serviceAccount:ci@" + propProject + ".iam.gserviceaccount.com",
	"serviceAccount:" + propAgent,
	"serviceAccount:" + strings.ToUpper(propAgent[:1]) + propAgent[1:], // the agent, spelt differently
}

var propRoles = []string{"roles/run.invoker", "roles/run.invoker", "roles/run.invoker", "roles/run.developer", "roles/run.admin", "projects/" + propProject + "/roles/custom"}

// propGenCase draws a starting state. emulable restricts it to what the
// emulator, like Google, accepts: no condition on a binding with a public
// member, no IAP together with Cloud CDN, backends made of NEGs only.
func propGenCase(r *rand.Rand, name string, emulable bool) *propCase {
	c := &propCase{name: name, labels: map[string]string{"team": "web"}, version: 1}
	switch v := r.IntN(10); {
	case v < 6:
		c.labels[iapsetup.LabelKey] = iapsetup.LabelEnabled
	case v == 6:
		c.labels[iapsetup.LabelKey] = iapsetup.LabelDisabled
	case v == 7:
		c.labels[iapsetup.LabelKey] = propPick(r, "yes", "enable", "true", "")
	}
	if r.IntN(4) == 0 {
		c.annotations = map[string]string{iapsetup.ManagedAnnotation: iapsetup.ManagedValue}
	}
	if r.IntN(4) == 0 {
		if c.annotations == nil {
			c.annotations = map[string]string{}
		}
		c.annotations["owner.example.com/ticket"] = "SEC-1"
	}
	c.ingress = propPick(r, iapsetup.IngressAll, iapsetup.IngressAll, iapsetup.IngressInternalLoadBalancer, iapsetup.IngressInternalOnly, iapsetup.IngressNone)
	c.invokerOff = r.IntN(4) == 0
	c.iapOn = r.IntN(4) == 0
	for i := range r.IntN(5) {
		b := propBinding{role: propPick(r, propRoles...)}
		for range 1 + r.IntN(3) {
			if m := propPick(r, propMembers...); !slices.Contains(b.members, m) {
				b.members = append(b.members, m)
			}
		}
		public := slices.ContainsFunc(b.members, propIsPublic)
		if r.IntN(4) == 0 && !(emulable && public) {
			b.cond = fmt.Sprintf("cond-%d", i)
			c.version = 3
		}
		c.bindings = append(c.bindings, b)
	}
	for i := range r.IntN(4) {
		n := propNEG{name: fmt.Sprintf("%s-neg%d", name, i), region: propRegion}
		switch r.IntN(6) {
		case 0:
			n.region = propOther
			n.service = name
		case 1:
			n.service = name + "-other"
		case 2:
			n.urlMask = "/<service>"
		default:
			n.service = name
		}
		c.negs = append(c.negs, n)
	}
	for i := range r.IntN(4) {
		be := propBackend{name: fmt.Sprintf("%s-be%d", name, i), iap: r.IntN(3) == 0, cdn: r.IntN(5) == 0}
		if emulable && be.cdn {
			be.iap = false // Compute refuses IAP together with Cloud CDN
		}
		switch r.IntN(5) {
		case 0:
			be.region = propRegion
		case 1:
			be.region = propOther
		}
		for j := range c.negs {
			if r.IntN(2) == 0 && (be.region == "" || be.region == c.negs[j].region) {
				be.negs = append(be.negs, j)
			}
		}
		be.instances = !emulable && r.IntN(5) == 0
		if be.region == "" {
			be.frontend = r.IntN(4) != 0
			be.https = be.frontend && r.IntN(3) != 0
		}
		c.backends = append(c.backends, be)
	}
	if !emulable {
		propGenAccess(r, c)
	}
	return c
}

func propIsPublic(m string) bool { return m == "allUsers" || m == "allAuthenticatedUsers" }

func propNEGLink(n propNEG) string {
	return emulatortest.Link("projects/" + propProject + "/regions/" + n.region + "/networkEndpointGroups/" + n.name)
}

func propBackendPath(be propBackend) string {
	return emulatortest.Backend{Name: be.name, Region: be.region}.Path()
}

// ---- the posture, before and after -----------------------------------------

type propGrant struct{ role, cond, member string }

type propPosture struct {
	labels, annotations map[string]string
	ingress             string
	invokerOff, iapOn   bool
	grants              map[propGrant]bool
	backends            map[string][2]bool // path → {iap, cdn}
}

func propStrictness(i string) int {
	return slices.Index([]string{iapsetup.IngressAll, iapsetup.IngressInternalLoadBalancer, iapsetup.IngressInternalOnly, iapsetup.IngressNone}, i)
}

func propIsAgent(m string) bool { return strings.EqualFold(m, "serviceAccount:"+propAgent) }

// fronting lists the backend services that front c's service: global or
// in its region, with a backend naming a NEG of its region that names it.
// sharedWithOthers reports whether the backend at path fronts anything
// besides the service that cannot agree (issue #19 item 2): an instance
// group, a URL-mask NEG, or a NEG of another region. (NEGs naming other
// services: those services do not exist in the in-memory cloud, so they
// agree.)
func (c *propCase) sharedWithOthers(path string) bool {
	for _, be := range c.backends {
		if propBackendPath(be) != path {
			continue
		}
		if be.instances {
			return true
		}
		for _, j := range be.negs {
			if n := c.negs[j]; n.region != propRegion || n.service == "" {
				return true
			}
		}
	}
	return false
}

func (c *propCase) fronting() []string {
	var out []string
	for _, be := range c.backends {
		if be.region != "" && be.region != propRegion {
			continue
		}
		for _, j := range be.negs {
			if n := c.negs[j]; n.region == propRegion && n.service == c.name {
				out = append(out, propBackendPath(be))
				break
			}
		}
	}
	return out
}

// propCheckNeverWeaker compares the posture before and after (possibly
// partial) reconciles and lists every way it got weaker. foreign are the
// grants others added meanwhile; writes is how many writes were made.
func propCheckNeverWeaker(c *propCase, before, after propPosture, foreign []propGrant, writes int) []string {
	var bad []string
	enforce := c.labels[iapsetup.LabelKey] == iapsetup.LabelEnabled
	if !enforce && writes > 0 {
		bad = append(bad, fmt.Sprintf("%d writes for a service labelled %s=%q", writes, iapsetup.LabelKey, c.labels[iapsetup.LabelKey]))
	}
	if !maps.Equal(before.labels, after.labels) {
		bad = append(bad, fmt.Sprintf("labels changed: %v → %v", before.labels, after.labels))
	}
	for k, v := range before.annotations {
		// The access record is iapguard's own (an unverifiable one is
		// replaced): what it may do with it is checked by propCheckAccess.
		if k == iapsetup.ManagedAnnotation && iapsetup.IsManagedMarker(after.annotations[k]) {
			continue // an unsigned marker replaced by a signed one
		}
		if k != iapsetup.AccessAnnotation && after.annotations[k] != v {
			bad = append(bad, fmt.Sprintf("annotation %s=%q changed to %q", k, v, after.annotations[k]))
		}
	}
	for k, v := range after.annotations {
		if _, ok := before.annotations[k]; !ok && !(k == iapsetup.ManagedAnnotation && iapsetup.IsManagedMarker(v)) && !strings.HasPrefix(k, "racer/") && k != iapsetup.AccessAnnotation {
			bad = append(bad, fmt.Sprintf("annotation %s=%q added", k, v))
		}
	}
	if propStrictness(after.ingress) < propStrictness(before.ingress) {
		bad = append(bad, fmt.Sprintf("ingress loosened: %s → %s", before.ingress, after.ingress))
	}
	if before.iapOn && !after.iapOn {
		bad = append(bad, "Cloud Run IAP turned off")
	}
	if !before.invokerOff && after.invokerOff {
		bad = append(bad, "invoker IAM check disabled")
	}
	for g := range before.grants {
		if !after.grants[g] && !(g.role == "roles/run.invoker" && propIsPublic(g.member)) {
			bad = append(bad, fmt.Sprintf("binding removed: %s in %s (condition %q)", g.member, g.role, g.cond))
		}
	}
	for _, g := range foreign {
		if !after.grants[g] {
			bad = append(bad, fmt.Sprintf("concurrently added binding removed: %s in %s", g.member, g.role))
		}
	}
	for g := range after.grants {
		if before.grants[g] || slices.Contains(foreign, g) {
			continue
		}
		if propIsPublic(g.member) {
			bad = append(bad, fmt.Sprintf("public member added: %s in %s", g.member, g.role))
		} else if !(g.role == "roles/run.invoker" && g.cond == "" && propIsAgent(g.member)) {
			bad = append(bad, fmt.Sprintf("binding added: %s in %s (condition %q)", g.member, g.role, g.cond))
		}
	}
	front := c.fronting()
	for path, b := range before.backends {
		a := after.backends[path]
		switch {
		case b[0] && !a[0]:
			bad = append(bad, "IAP turned off on "+path)
		case a[1] != b[1]:
			bad = append(bad, "Cloud CDN changed on "+path)
		case !b[0] && a[0] && b[1]:
			bad = append(bad, "IAP turned on on the Cloud CDN backend "+path+" (a conflict for a person)")
		case !b[0] && a[0] && !slices.Contains(front, path):
			bad = append(bad, "IAP turned on on "+path+", which does not front the service")
		}
	}
	return bad
}

// propCheckComplies: after a reconcile that returned no error, a service
// labelled iap=enabled meets DESIGN.md "Compliance" in the mode the result
// reports (CDN backends excepted: they are a conflict): IAM as required;
// in load-balancer mode every fronting backend has IAP and ingress "all"
// became internal-and-load-balancing; in direct mode Cloud Run's built-in
// IAP is on and ingress is left alone.
func propCheckComplies(c *propCase, res *iapsetup.Result, before, after propPosture) []string {
	if c.labels[iapsetup.LabelKey] != iapsetup.LabelEnabled {
		return nil
	}
	var bad []string
	agent := false
	for g := range after.grants {
		if g.role == "roles/run.invoker" && propIsPublic(g.member) {
			bad = append(bad, "public invoker left: "+g.member)
		}
		agent = agent || g.role == "roles/run.invoker" && g.cond == "" && propIsAgent(g.member)
	}
	if !agent {
		bad = append(bad, "the IAP agent is not an unconditional invoker")
	}
	if after.invokerOff {
		bad = append(bad, "invoker IAM check still disabled")
	}
	front := c.fronting()
	switch res.Mode {
	case outcome.Direct:
		if !after.iapOn {
			bad = append(bad, "Cloud Run IAP off in direct mode")
		}
		if after.ingress != before.ingress {
			bad = append(bad, "ingress changed in direct mode")
		}
	case outcome.LoadBalancer:
		if len(front) == 0 {
			bad = append(bad, "load-balancer mode, but no backend service fronts the service")
		}
		for _, p := range front {
			if b := after.backends[p]; !b[0] && !b[1] {
				// A backend shared with something that is not a labelled
				// Cloud Run service (here: an instance group, a URL-mask
				// NEG) must not be changed on this service's say-so: it
				// stays as it is, and the outcome is a conflict naming it.
				if c.sharedWithOthers(p) && res.Outcome == outcome.Conflict && strings.Contains(res.Reason, "fronts several") {
					continue
				}
				bad = append(bad, "IAP off on fronting backend "+p)
			}
			if b, a := before.backends[p], after.backends[p]; c.sharedWithOthers(p) && !b[0] && a[0] {
				bad = append(bad, "IAP turned on on backend "+p+", which it shares with something iapguard cannot see agree")
			}
		}
		want := before.ingress
		if want == iapsetup.IngressAll {
			want = iapsetup.IngressInternalLoadBalancer
		}
		if after.ingress != want {
			bad = append(bad, fmt.Sprintf("ingress %s, want %s", after.ingress, want))
		}
	default:
		bad = append(bad, fmt.Sprintf("mode %q", res.Mode))
	}
	return bad
}

// ---- an in-memory Google Cloud ---------------------------------------------

// propCloud implements the reconciler's dependencies over one service's
// world. It injects UNAVAILABLE into a fraction of calls and, on a
// fraction of writes, a concurrent foreign writer that changes the
// resource (a new IAM member, a new annotation, a new fingerprint) just
// before the precondition is checked. It applies whatever it is asked to —
// weakening included — so the properties test the reconciler, not it.
type propCloud struct {
	mu        sync.Mutex
	rnd       *rand.Rand
	faultRate float64
	raceRate  float64

	svc      *iapsetup.Service
	policy   *iapsetup.Policy
	negs     []iapsetup.NEG
	backends map[string]*iapsetup.BackendService
	fronts   map[string]iapsetup.Frontend
	gen      int
	writes   int
	foreign  []propGrant
	// IAP resource policies; the accessor grants iapguard made and the
	// revocations it made (role holds the resource).
	iap        map[string]*iapsetup.Policy
	iapGranted map[string][]string
	iapRevoked []propGrant
}

var propErrInjected = gcp.Classify(status.Error(codes.Unavailable, "The service is currently unavailable (injected)."))

func (m *propCloud) fault() error {
	if m.rnd.Float64() < m.faultRate {
		return propErrInjected
	}
	return nil
}

func (m *propCloud) race() bool { return m.rnd.Float64() < m.raceRate }

func (m *propCloud) etag() string { m.gen++; return fmt.Sprintf("etag-%d", m.gen) }

func newPropCloud(c *propCase, rnd *rand.Rand, faultRate, raceRate float64) *propCloud {
	m := &propCloud{rnd: rnd, faultRate: faultRate, raceRate: raceRate, backends: map[string]*iapsetup.BackendService{}, fronts: map[string]iapsetup.Frontend{},
		iap: map[string]*iapsetup.Policy{}, iapGranted: map[string][]string{}}
	for res, ms := range c.access.accessors {
		p := &iapsetup.Policy{Version: 1, Etag: []byte(m.etag())}
		if len(ms) > 0 {
			p.Bindings = []iapsetup.Binding{{Role: iapsetup.RoleAccessor, Members: slices.Clone(ms)}}
		}
		m.iap[res] = p
	}
	m.svc = &iapsetup.Service{
		Ref:    iapsetup.ServiceRef{Project: propProject, Region: propRegion, Name: c.name},
		Labels: maps.Clone(c.labels), Annotations: maps.Clone(c.annotations),
		Ingress: c.ingress, InvokerIAMDisabled: c.invokerOff, IAPEnabled: c.iapOn, Etag: m.etag(),
	}
	m.policy = &iapsetup.Policy{Version: c.version, Etag: []byte(m.etag())}
	for _, b := range c.bindings {
		nb := iapsetup.Binding{Role: b.role, Members: slices.Clone(b.members)}
		if b.cond != "" {
			nb.Condition = &iapsetup.Condition{Title: b.cond, Expression: `request.path.startsWith("/` + b.cond + `")`}
		}
		m.policy.Bindings = append(m.policy.Bindings, nb)
	}
	for _, n := range c.negs {
		neg := iapsetup.NEG{SelfLink: propNEGLink(n), Name: n.name, Project: propProject, Region: n.region, Type: "SERVERLESS",
			CloudRun: &iapsetup.CloudRunTarget{Service: n.service, URLMask: n.urlMask}}
		m.negs = append(m.negs, neg)
	}
	for _, be := range c.backends {
		b := &iapsetup.BackendService{
			SelfLink: emulatortest.Link(propBackendPath(be)), Ref: iapsetup.BackendRef{Project: propProject, Region: be.region, Name: be.name},
			IAPEnabled: be.iap, EnableCDN: be.cdn, Fingerprint: m.etag(), LoadBalancingScheme: "EXTERNAL_MANAGED", Protocol: "HTTPS",
		}
		for _, j := range be.negs {
			b.Groups = append(b.Groups, propNEGLink(c.negs[j]))
		}
		if be.instances {
			b.Groups = append(b.Groups, emulatortest.Link("projects/"+propProject+"/zones/"+propRegion+"-a/instanceGroups/"+be.name+"-ig"))
		}
		m.backends[b.Ref.String()] = b
		m.fronts[b.Ref.String()] = iapsetup.Frontend{HTTPS: be.https}
	}
	return m
}

func propClonePolicy(p *iapsetup.Policy) *iapsetup.Policy {
	c := &iapsetup.Policy{Version: p.Version, Etag: slices.Clone(p.Etag)}
	for _, b := range p.Bindings {
		nb := iapsetup.Binding{Role: b.Role, Members: slices.Clone(b.Members)}
		if b.Condition != nil {
			cond := *b.Condition
			nb.Condition = &cond
		}
		c.Bindings = append(c.Bindings, nb)
	}
	return c
}

func propCloneService(s *iapsetup.Service) *iapsetup.Service {
	c := *s
	c.Labels, c.Annotations = maps.Clone(s.Labels), maps.Clone(s.Annotations)
	return &c
}

func (m *propCloud) GetService(_ context.Context, ref iapsetup.ServiceRef) (*iapsetup.Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	if ref != m.svc.Ref {
		return nil, gcp.Classify(status.Errorf(codes.NotFound, "service %s not found", ref))
	}
	return propCloneService(m.svc), nil
}

func (m *propCloud) ListServices(context.Context, string, string) ([]*iapsetup.Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	return []*iapsetup.Service{propCloneService(m.svc)}, nil
}

func (m *propCloud) UpdateService(_ context.Context, u *iapsetup.ServiceUpdate) (*iapsetup.Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	if !u.ValidateOnly && m.race() {
		if m.svc.Annotations == nil {
			m.svc.Annotations = map[string]string{}
		}
		m.svc.Annotations[fmt.Sprintf("racer/%d", m.gen)] = "x"
		m.svc.Etag = m.etag()
	}
	if u.Etag != m.svc.Etag {
		return nil, gcp.Classify(status.Error(codes.Aborted, "etag mismatch"))
	}
	s := propCloneService(m.svc)
	if u.Ingress != "" {
		s.Ingress = u.Ingress
	}
	if u.RequireInvokerIAM {
		s.InvokerIAMDisabled = false
	}
	if u.EnableIAP {
		s.IAPEnabled = true
	}
	if u.Annotations != nil {
		s.Annotations = maps.Clone(u.Annotations)
	}
	if u.ValidateOnly {
		return s, nil
	}
	s.Etag = m.etag()
	m.svc = s
	m.writes++
	return propCloneService(s), nil
}

func (m *propCloud) GetIAMPolicy(_ context.Context, ref iapsetup.ServiceRef) (*iapsetup.Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	return propClonePolicy(m.policy), nil
}

func (m *propCloud) SetIAMPolicy(_ context.Context, ref iapsetup.ServiceRef, p *iapsetup.Policy) (*iapsetup.Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	if m.race() {
		g := propGrant{"roles/run.viewer", "", fmt.Sprintf("user:racer-%d@example.com", m.gen)}
		m.policy.Bindings = append(m.policy.Bindings, iapsetup.Binding{Role: g.role, Members: []string{g.member}})
		m.policy.Etag = []byte(m.etag())
		m.foreign = append(m.foreign, g)
	}
	if string(p.Etag) != string(m.policy.Etag) {
		return nil, gcp.Classify(status.Error(codes.Aborted, "There were concurrent policy changes."))
	}
	m.policy = propClonePolicy(p)
	m.policy.Etag = []byte(m.etag())
	m.writes++
	return propClonePolicy(m.policy), nil
}

func (m *propCloud) ListServerlessNEGs(_ context.Context, project, region string) ([]iapsetup.NEG, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	var out []iapsetup.NEG
	for _, n := range m.negs {
		if n.Region == region {
			out = append(out, n)
		}
	}
	return out, nil
}

func (m *propCloud) GetNEG(_ context.Context, ref iapsetup.NEGRef) (*iapsetup.NEG, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	for _, n := range m.negs {
		if n.Region == ref.Region && n.Name == ref.Name {
			return &n, nil
		}
	}
	return nil, gcp.Classify(status.Errorf(codes.NotFound, "NEG %s not found", ref))
}

func (m *propCloud) ListBackendServices(context.Context, string) ([]iapsetup.BackendService, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	var out []iapsetup.BackendService
	for _, k := range slices.Sorted(maps.Keys(m.backends)) {
		b := *m.backends[k]
		b.Groups = slices.Clone(b.Groups)
		out = append(out, b)
	}
	return out, nil
}

func (m *propCloud) GetBackendService(_ context.Context, ref iapsetup.BackendRef) (*iapsetup.BackendService, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	b, ok := m.backends[ref.String()]
	if !ok {
		return nil, gcp.Classify(status.Errorf(codes.NotFound, "backend service %s not found", ref))
	}
	c := *b
	c.Groups = slices.Clone(b.Groups)
	return &c, nil
}

func (m *propCloud) EnableIAP(_ context.Context, ref iapsetup.BackendRef, fingerprint string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return err
	}
	b, ok := m.backends[ref.String()]
	if !ok {
		return gcp.Classify(status.Errorf(codes.NotFound, "backend service %s not found", ref))
	}
	if m.race() {
		b.Fingerprint = m.etag()
	}
	if fingerprint != b.Fingerprint {
		return gcp.Classify(status.Error(codes.Aborted, "Invalid fingerprint."))
	}
	b.IAPEnabled = true
	b.Fingerprint = m.etag()
	m.writes++
	return nil
}

func (m *propCloud) HTTPSFrontend(_ context.Context, b *iapsetup.BackendService) (iapsetup.Frontend, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return iapsetup.Frontend{}, err
	}
	return m.fronts[b.Ref.String()], nil
}

func (m *propCloud) IAPServiceAgent(context.Context, string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return "", err
	}
	return propAgent, nil
}

func (m *propCloud) posture() propPosture {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := propPosture{
		labels: maps.Clone(m.svc.Labels), annotations: maps.Clone(m.svc.Annotations), ingress: m.svc.Ingress,
		invokerOff: m.svc.InvokerIAMDisabled, iapOn: m.svc.IAPEnabled, grants: map[propGrant]bool{}, backends: map[string][2]bool{},
	}
	for _, b := range m.policy.Bindings {
		cond := ""
		if b.Condition != nil {
			cond = b.Condition.Title
		}
		for _, mem := range b.Members {
			p.grants[propGrant{b.Role, cond, mem}] = true
		}
	}
	for k, b := range m.backends {
		p.backends[k] = [2]bool{b.IAPEnabled, b.EnableCDN}
	}
	return p
}

func (m *propCloud) deps() iapsetup.Deps {
	return iapsetup.Deps{CloudRun: m, Compute: m, Identity: m, IAP: m, RecordKeys: m}
}

func propOptions() iapsetup.Options {
	o := iapsetup.FastRetries(iapsetup.Options{Scope: scope.New(propProject)})
	iapsetup.SetTestHooks(&o, nil, func(ctx context.Context, _ time.Duration) error { return ctx.Err() })
	a, err := access.New("property", propPolicies)
	if err != nil {
		panic(err)
	}
	o.AccessPolicies = a
	return o
}

// ---- the tests ---------------------------------------------------------------

// TestNeverWeakenProperty runs -prop.cases random starting states through
// the real Reconciler over the in-memory cloud, with 10 % of calls failing
// UNAVAILABLE and 15 % of writes losing a race to a foreign writer, and
// reconciles each until it succeeds: after every attempt, including failed
// ones, the posture must be no weaker than before; after the successful
// one the service must comply; a further reconcile must write nothing. The
// planner alone (PlanFor) must agree: its planned changes never weaken.
func TestNeverWeakenProperty(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(*propSeed, 0x1ea4))
	var stats struct{ enforce, writes, attempts, races, failedFirst, grants, revocations int }
	outcomes := map[outcome.Kind]int{}
	for i := range *propCases {
		c := propGenCase(rnd, fmt.Sprintf("svc%04d", i), false)
		fault := rand.New(rand.NewPCG(*propSeed, uint64(i)))
		m := newPropCloud(c, fault, 0.1, 0.15)
		before := m.posture()
		propCheckPlan(t, c, m)
		r, err := iapsetup.New(m.deps(), propOptions())
		if err != nil {
			t.Fatal(err)
		}
		ref := iapsetup.ServiceRef{Project: propProject, Region: propRegion, Name: c.name}
		var res *iapsetup.Result
		for attempt := 1; ; attempt++ {
			stats.attempts++
			res, err = r.Reconcile(t.Context(), ref)
			bad := propCheckNeverWeaker(c, before, m.posture(), m.foreign, m.writes)
			bad = append(bad, propCheckAccess(c, m)...)
			if len(bad) > 0 {
				t.Fatalf("case %s\nattempt %d (%v) weakened the posture:\n  %s", c, attempt, err, strings.Join(bad, "\n  "))
			}
			if err == nil {
				break
			}
			if attempt == 1 {
				stats.failedFirst++
			}
			if !errors.Is(err, iapsetup.ErrTransient) || attempt == 50 {
				t.Fatalf("case %s\nattempt %d: %v", c, attempt, err)
			}
		}
		outcomes[res.Outcome]++
		after := m.posture()
		if bad := propCheckComplies(c, res, before, after); len(bad) > 0 {
			t.Fatalf("case %s\nreconciled (%s) but does not comply:\n  %s\nresult %+v", c, res.Outcome, strings.Join(bad, "\n  "), res)
		}
		if c.labels[iapsetup.LabelKey] == iapsetup.LabelEnabled {
			stats.enforce++
			// Whatever the faults did to earlier attempts, an enforced
			// service ends marked, so that removing its label is reported
			// opted-out.
			if !iapsetup.IsManagedMarker(after.annotations[iapsetup.ManagedAnnotation]) {
				t.Fatalf("case %s\nreconciled (%s) but the service lacks the %s annotation", c, res.Outcome, iapsetup.ManagedAnnotation)
			}
		}
		stats.writes += m.writes
		stats.races += len(m.foreign)
		for _, ms := range m.iapGranted {
			stats.grants += len(ms)
		}
		stats.revocations += len(m.iapRevoked)
		// Settled: a quiet cloud, and a second reconcile writes nothing.
		m.mu.Lock()
		m.faultRate, m.raceRate, m.writes = 0, 0, 0
		m.mu.Unlock()
		res2, err := r.Reconcile(t.Context(), ref)
		if err != nil || m.writes != 0 || len(res2.Changes) != 0 {
			t.Fatalf("case %s\nsecond reconcile: %v, %d writes, changes %+v", c, err, m.writes, res2.Changes)
		}
	}
	t.Logf("%d cases (%d labelled iap=enabled): %d reconcile attempts (%d cases needed more than one), %d writes, %d foreign races survived; outcomes %v",
		*propCases, stats.enforce, stats.attempts, stats.failedFirst, stats.writes, stats.races, outcomes)
	t.Logf("access: %d grants, %d revocations (each of a member iapguard granted)", stats.grants, stats.revocations)
	if stats.failedFirst == 0 || stats.races == 0 || stats.enforce < *propCases/3 || stats.grants == 0 || stats.revocations == 0 {
		t.Errorf("the cases exercised too little: %+v", stats)
	}
}

// propCheckPlan: PlanFor over the starting state plans no change
// that weakens (the pure half of the property; the apply path re-checks
// every write in guard.go, and the reconciles above check the result).
func propCheckPlan(t *testing.T, c *propCase, m *propCloud) {
	t.Helper()
	obs := &iapsetup.Observed{Service: propCloneService(m.svc), Policy: propClonePolicy(m.policy), Agent: propAgent, Frontends: map[string]iapsetup.Frontend{}}
	for _, n := range m.negs {
		if n.Region == propRegion {
			obs.NEGs = append(obs.NEGs, n)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.backends)) {
		b := *m.backends[k]
		obs.Backends = append(obs.Backends, b)
		obs.Frontends[iapsetup.ResourcePath(b.SelfLink)] = m.fronts[k]
	}
	p := iapsetup.PlanFor(iapsetup.DesiredFor(obs.Service), obs)
	enforce := c.labels[iapsetup.LabelKey] == iapsetup.LabelEnabled
	for _, ch := range p.Changes {
		bad := ""
		switch {
		case !enforce:
			bad = "a change planned for a service that is not labelled " + iapsetup.LabelKey + "=" + iapsetup.LabelEnabled
		case strings.HasPrefix(ch.Field, "iamPolicy["):
			switch {
			case !strings.HasPrefix(ch.Field, "iamPolicy[roles/run.invoker"):
				bad = "an IAM change outside roles/run.invoker"
			case ch.After != "" && !propIsAgent(ch.After):
				bad = "an IAM member other than the agent added"
			case ch.Before != "" && !propIsPublic(ch.Before):
				bad = "an IAM member other than a public one removed"
			}
		case ch.Field == "ingress":
			if propStrictness(ch.After) < max(propStrictness(ch.Before), propStrictness(iapsetup.IngressInternalLoadBalancer)) {
				bad = "ingress loosened"
			}
		case ch.Field == "iapEnabled", ch.Field == "iap.enabled":
			if ch.After != "true" {
				bad = "IAP turned off"
			}
		case ch.Field == "invokerIamDisabled":
			if ch.After != "false" {
				bad = "invoker IAM check disabled"
			}
		case ch.Field == "annotations["+iapsetup.ManagedAnnotation+"]":
			if !iapsetup.IsManagedMarker(ch.After) {
				bad = "managed marker changed"
			}
		default:
			bad = "a change to a field iapguard does not own"
		}
		if bad != "" {
			t.Fatalf("case %s\nPlanFor plans %+v: %s", c, ch, bad)
		}
	}
	if !enforce && (p.Outcome == outcome.Remediated || len(p.Changes) > 0) {
		t.Fatalf("case %s\nPlanFor plans %s for an unmanaged service", c, p.Outcome)
	}
}

// TestNeverWeakenPropertyEmulated runs -prop.emulated random starting
// states (ones the emulator accepts) through the real adapters and the
// official clients against the emulator: seeded directly, reconciled once,
// read back through the API.
func TestNeverWeakenPropertyEmulated(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	// The members the generated policies name exist (IAM rejects a policy
	// naming an unknown service account).
	e.Core.Accounts.Add("ci@"+propProject+".iam.gserviceaccount.com", propAgent)
	r, err := iapsetup.New(e.Clients.Deps(), propOptions())
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(*propSeed, 0xe3))
	outcomes := map[outcome.Kind]int{}
	for i := range *propEmulated {
		c := propGenCase(rnd, fmt.Sprintf("emu%03d", i), true)
		propSeedCase(t, e, c)
		before := propEmulatedPosture(t, e, c)
		snap := e.Snapshot()
		ref := iapsetup.ServiceRef{Project: propProject, Region: propRegion, Name: c.name}
		res, err := r.Reconcile(t.Context(), ref)
		writes := int(emulatortest.Writes(e.Snapshot().Sub(snap)))
		after := propEmulatedPosture(t, e, c)
		if bad := propCheckNeverWeaker(c, before, after, nil, writes); len(bad) > 0 {
			t.Fatalf("case %s\nweakened the posture (%v):\n  %s", c, err, strings.Join(bad, "\n  "))
		}
		if err != nil {
			t.Fatalf("case %s\nreconcile: %v", c, err)
		}
		if bad := propCheckComplies(c, res, before, after); len(bad) > 0 {
			t.Fatalf("case %s\nreconciled (%s) but does not comply:\n  %s", c, res.Outcome, strings.Join(bad, "\n  "))
		}
		outcomes[res.Outcome]++
		snap = e.Snapshot()
		if res2, err := r.Reconcile(t.Context(), ref); err != nil || emulatortest.Writes(e.Snapshot().Sub(snap)) != 0 || len(res2.Changes) != 0 {
			t.Fatalf("case %s\nsecond reconcile: %v, changes %+v", c, err, res2.Changes)
		}
	}
	t.Logf("%d emulated cases; outcomes %v", *propEmulated, outcomes)
}

func propSeedCase(t *testing.T, e *testEnv, c *propCase) {
	t.Helper()
	e.SeedService(t, emulatortest.Svc{
		Name: c.name, Labels: c.labels, Annotations: c.annotations,
		Ingress: runpb.IngressTraffic(runpb.IngressTraffic_value[string(c.ingress)]), IAP: c.iapOn, NoInvokerIAM: c.invokerOff,
	})
	p := &iampb.Policy{Version: c.version}
	for _, b := range c.bindings {
		nb := &iampb.Binding{Role: b.role, Members: b.members}
		if b.cond != "" {
			nb.Condition = &expr.Expr{Title: b.cond, Expression: `request.path.startsWith("/` + b.cond + `")`}
		}
		p.Bindings = append(p.Bindings, nb)
	}
	e.SeedPolicy(t, c.name, p)
	for _, n := range c.negs {
		op, err := e.Clients.Compute.RegionNetworkEndpointGroups.Insert(propProject, n.region, &computeapi.NetworkEndpointGroup{
			Name: n.name, NetworkEndpointType: "SERVERLESS",
			CloudRun: &computeapi.NetworkEndpointGroupCloudRun{Service: n.service, UrlMask: n.urlMask},
		}).Do()
		if err != nil || op.Error != nil {
			t.Fatalf("inserting NEG %s: %v %+v", n.name, err, op)
		}
	}
	for _, be := range c.backends {
		var groups []string
		for _, j := range be.negs {
			groups = append(groups, propNEGLink(c.negs[j]))
		}
		link := e.AddBackend(t, emulatortest.Backend{Name: be.name, Region: be.region, Groups: groups, CDN: be.cdn, IAP: be.iap})
		if be.frontend {
			e.AddFrontend(t, be.name+"-fe", link, be.https)
		}
	}
}

func propEmulatedPosture(t *testing.T, e *testEnv, c *propCase) propPosture {
	t.Helper()
	s := e.Service(t, c.name)
	p := propPosture{
		labels: s.GetLabels(), annotations: s.GetAnnotations(), ingress: s.GetIngress().String(),
		invokerOff: s.GetInvokerIamDisabled(), iapOn: s.GetIapEnabled(), grants: map[propGrant]bool{}, backends: map[string][2]bool{},
	}
	for _, b := range e.Policy(t, c.name).GetBindings() {
		for _, m := range b.GetMembers() {
			p.grants[propGrant{b.GetRole(), b.GetCondition().GetTitle(), m}] = true
		}
	}
	for _, be := range c.backends {
		b := e.GetBackend(t, emulatortest.Backend{Name: be.name, Region: be.region})
		p.backends[propBackendPath(be)] = [2]bool{b.Iap != nil && b.Iap.Enabled, b.EnableCDN}
	}
	return p
}
