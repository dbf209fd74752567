package iapsetup

import (
	"context"
	"errors"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// testRecord is a signed access record of members on the test service's
// Cloud Run IAP resource.
func testRecord(members ...string) string {
	return formatRecord(tService().Ref.String(), map[string][]string{"projects/123456/iap_web/cloud_run-us-central1/services/hello": members}, nil, &testRecordKey)
}

func TestCheckServiceUpdate(t *testing.T) {
	t.Parallel()
	before := tService(ingress(ingressInternalOnly), func(s *Service) { s.Annotations = map[string]string{"owner": "web"} })
	ok := func(mods ...func(*ServiceUpdate)) *ServiceUpdate {
		u := &ServiceUpdate{Ref: before.Ref, Etag: before.Etag}
		for _, m := range mods {
			m(u)
		}
		return u
	}
	tests := []struct {
		name   string
		before *Service
		u      *ServiceUpdate
		unsafe bool
	}{
		{"tighten ingress from all", tService(), ok(func(u *ServiceUpdate) { u.Ingress = ingressInternalLoadBalancer }), false},
		{"keep internal-only", before, ok(func(u *ServiceUpdate) { u.Ingress = ingressInternalOnly }), false},
		{"loosen internal-only to load balancer", before, ok(func(u *ServiceUpdate) { u.Ingress = ingressInternalLoadBalancer }), true},
		{"ingress all", tService(), ok(func(u *ServiceUpdate) { u.Ingress = ingressAll }), true},
		{"ingress unspecified", tService(), ok(func(u *ServiceUpdate) { u.Ingress = ingressUnspecified }), true},
		{"add managed marker", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", managedAnnotation: managedValue}
		}), false},
		{"drop a foreign annotation", before, ok(func(u *ServiceUpdate) { u.Annotations = map[string]string{managedAnnotation: managedValue} }), true},
		{"change a foreign annotation", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "x", managedAnnotation: managedValue}
		}), true},
		{"add a foreign annotation", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", "other": "1"}
		}), true},
		{"marker with another value", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", managedAnnotation: "false"}
		}), true},
		{"record access grants", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: testRecord("group:web@example.com", "user:a@example.com")}
		}), false},
		{"change recorded grants", tService(grantedAnn("user:a@example.com")), ok(func(u *ServiceUpdate) {
			u.Etag = tService().Etag
			u.Annotations = map[string]string{accessAnnotation: testRecord("group:web@example.com")}
		}), false},
		{"remove recorded grants", tService(grantedAnn("user:a@example.com")), ok(func(u *ServiceUpdate) {
			u.Etag = tService().Etag
			u.Annotations = map[string]string{}
		}), false},
		{"record a public member", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: "allUsers"}
		}), true},
		{"record a malformed member", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: "user:a@example.com,bob"}
		}), true},
		{"record unsorted members", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: `{"granted":{"projects/1/iap_web/compute/services/web":["user:b@example.com","user:a@example.com"]}}`}
		}), true},
		{"record a plain member list", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: "user:a@example.com"}
		}), true},
		{"record on a resource that is not IAP", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: `{"granted":{"projects/1/iap_web":["user:a@example.com"]}}`}
		}), true},
		{"record an empty value", before, ok(func(u *ServiceUpdate) {
			u.Annotations = map[string]string{"owner": "web", accessAnnotation: ""}
		}), true},
		{"no etag", before, ok(func(u *ServiceUpdate) { u.Etag = "" }), true},
		{"stale etag", before, ok(func(u *ServiceUpdate) { u.Etag = "other" }), true},
		{"other service", before, ok(func(u *ServiceUpdate) { u.Ref.Name = "other" }), true},
		{"no before", nil, ok(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkServiceUpdate(tc.before, tc.u)
			if got := errors.Is(err, errUnsafeWrite); got != tc.unsafe {
				t.Errorf("checkServiceUpdate() = %v, want unsafe=%v", err, tc.unsafe)
			}
		})
	}
}

func TestCheckPolicyWrite(t *testing.T) {
	t.Parallel()
	before := func() *Policy {
		return &Policy{Version: 3, Etag: []byte("e1"), Bindings: []Binding{
			bind(roleInvoker, "user:a@example.com", allUsers),
			condBind(roleInvoker, "t", allAuthenticatedUsers, "user:b@example.com"),
			bind("roles/run.admin", "user:o@example.com"),
			bind("roles/run.viewer", allUsers),
		}}
	}
	tests := []struct {
		name   string
		after  func(p *Policy)
		unsafe bool
	}{
		{"unchanged", func(p *Policy) {}, false},
		{"add agent, remove public", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com", agentMember(tAgent)}
			p.Bindings[1].Members = []string{"user:b@example.com"}
		}, false},
		{"add a public member", func(p *Policy) { p.Bindings[1].Members = append(p.Bindings[1].Members, allUsers) }, true},
		{"leave a public invoker", func(p *Policy) { p.Bindings[0].Members = append(p.Bindings[0].Members, agentMember(tAgent)) }, true},
		{"remove a foreign member", func(p *Policy) { p.Bindings[2].Members = nil }, true},
		{"remove a non-invoker public member", func(p *Policy) { p.Bindings = p.Bindings[:3] }, true},
		{"remove a foreign invoker", func(p *Policy) { p.Bindings[0].Members = []string{agentMember(tAgent)} }, true},
		{"add someone else", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com", "user:mallory@example.com"}
			p.Bindings[1].Members = []string{"user:b@example.com"}
		}, true},
		{"add agent to another role", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com"}
			p.Bindings[1].Members = []string{"user:b@example.com"}
			p.Bindings[2].Members = append(p.Bindings[2].Members, agentMember(tAgent))
		}, true},
		{"add agent under a condition", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com"}
			p.Bindings[1].Members = []string{"user:b@example.com", agentMember(tAgent)}
		}, true},
		{"change a condition", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com"}
			p.Bindings[1].Members = []string{"user:b@example.com"}
			p.Bindings[1].Condition.Expression = "true"
		}, true},
		{"drop the etag", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com"}
			p.Bindings[1].Members = []string{"user:b@example.com"}
			p.Etag = nil
		}, true},
		{"lower the version", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:a@example.com"}
			p.Bindings[1].Members = []string{"user:b@example.com"}
			p.Version = 1
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := before()
			a := b.clone()
			tc.after(a)
			err := checkPolicyWrite(b, a, tAgent)
			// "unchanged" still leaves public invokers: unsafe by the
			// no-public-invoker rule.
			want := tc.unsafe || tc.name == "unchanged"
			if got := errors.Is(err, errUnsafeWrite); got != want {
				t.Errorf("checkPolicyWrite() = %v, want unsafe=%v", err, want)
			}
		})
	}
}

func TestCheckAccessWrite(t *testing.T) {
	t.Parallel()
	wanted := []string{"group:web@example.com", "user:new@example.com"}
	granted := []string{"group:web@example.com", "user:old@example.com"}
	before := func() *Policy {
		return &Policy{Version: 3, Etag: []byte("e1"), Bindings: []Binding{
			bind(roleAccessor, "group:web@example.com", "user:old@example.com", "user:boss@example.com"),
			condBind(roleAccessor, "t", "user:old@example.com"),
			bind("roles/iap.admin", "user:o@example.com"),
		}}
	}
	tests := []struct {
		name   string
		after  func(p *Policy)
		unsafe bool
	}{
		{"unchanged", func(p *Policy) {}, false},
		{"grant a wanted member, revoke an own one", func(p *Policy) {
			p.Bindings[0].Members = []string{"group:web@example.com", "user:boss@example.com", "user:new@example.com"}
		}, false},
		{"grant a wanted member in another case", func(p *Policy) {
			p.Bindings[0].Members = append(p.Bindings[0].Members, "user:NEW@example.com")
		}, false},
		{"revoke a foreign member", func(p *Policy) {
			p.Bindings[0].Members = []string{"group:web@example.com", "user:old@example.com"}
		}, true},
		{"revoke a member the policy lists", func(p *Policy) {
			p.Bindings[0].Members = []string{"user:old@example.com", "user:boss@example.com"}
		}, true},
		{"revoke an own member from a conditional binding", func(p *Policy) { p.Bindings = append(p.Bindings[:1], p.Bindings[2]) }, true},
		{"grant allUsers", func(p *Policy) { p.Bindings[0].Members = append(p.Bindings[0].Members, allUsers) }, true},
		{"grant allAuthenticatedUsers", func(p *Policy) {
			p.Bindings = append(p.Bindings, bind(roleAccessor, allAuthenticatedUsers))
		}, true},
		{"grant a member the policy does not list", func(p *Policy) {
			p.Bindings[0].Members = append(p.Bindings[0].Members, "user:mallory@example.com")
		}, true},
		{"grant a wanted member another role", func(p *Policy) {
			p.Bindings[2].Members = append(p.Bindings[2].Members, "user:new@example.com")
		}, true},
		{"grant a wanted member under a condition", func(p *Policy) {
			p.Bindings[1].Members = append(p.Bindings[1].Members, "user:new@example.com")
		}, true},
		{"touch another role", func(p *Policy) { p.Bindings[2].Members = nil }, true},
		{"drop the etag", func(p *Policy) { p.Etag = nil }, true},
		{"lower the version", func(p *Policy) { p.Version = 1 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := before()
			a := b.clone()
			tc.after(a)
			err := checkAccessWrite(b, a, wanted, granted)
			if got := errors.Is(err, errUnsafeWrite); got != tc.unsafe {
				t.Errorf("checkAccessWrite() = %v, want unsafe=%v", err, tc.unsafe)
			}
		})
	}
	if err := checkAccessWrite(nil, before(), wanted, granted); !errors.Is(err, errUnsafeWrite) {
		t.Errorf("checkAccessWrite(no before) = %v, want errUnsafeWrite", err)
	}
}

func TestCheckBackendWrite(t *testing.T) {
	t.Parallel()
	b := tBackend("web", "")
	if err := checkBackendWrite(&b); err != nil {
		t.Errorf("checkBackendWrite(plain) = %v, want nil", err)
	}
	cdn := withCDN(b)
	if err := checkBackendWrite(&cdn); !errors.Is(err, errUnsafeWrite) {
		t.Errorf("checkBackendWrite(CDN) = %v, want errUnsafeWrite", err)
	}
	b.Fingerprint = ""
	if err := checkBackendWrite(&b); !errors.Is(err, errUnsafeWrite) {
		t.Errorf("checkBackendWrite(no fingerprint) = %v, want errUnsafeWrite", err)
	}
}

// recorder is a minimal in-memory stand-in for the pure-logic edge case
// below (a tampered plan); every other apply test runs the real adapters
// against the emulator.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	r.writes = append(r.writes, s)
	r.mu.Unlock()
}

func (r *recorder) GetService(context.Context, ServiceRef) (*Service, error) {
	return nil, errors.New("unused")
}
func (r *recorder) ListServices(context.Context, string, string) ([]*Service, error) {
	return nil, errors.New("unused")
}
func (r *recorder) UpdateService(_ context.Context, u *ServiceUpdate) (*Service, error) {
	r.note("UpdateService")
	return nil, nil
}
func (r *recorder) GetIAMPolicy(context.Context, ServiceRef) (*Policy, error) {
	return nil, errors.New("unused")
}
func (r *recorder) SetIAMPolicy(context.Context, ServiceRef, *Policy) (*Policy, error) {
	r.note("SetIamPolicy")
	return nil, nil
}
func (r *recorder) ListServerlessNEGs(context.Context, string, string) ([]NEG, error) {
	return nil, nil
}
func (r *recorder) GetNEG(context.Context, NEGRef) (*NEG, error) { return nil, errors.New("unused") }
func (r *recorder) ListBackendServices(context.Context, string) ([]BackendService, error) {
	return nil, nil
}
func (r *recorder) GetBackendService(context.Context, BackendRef) (*BackendService, error) {
	return nil, errors.New("unused")
}
func (r *recorder) EnableIAP(context.Context, BackendRef, string) error {
	r.note("EnableIAP")
	return nil
}
func (r *recorder) HTTPSFrontend(context.Context, *BackendService) (Frontend, error) {
	return Frontend{}, nil
}
func (r *recorder) IAPServiceAgent(context.Context, string) (string, error) { return tAgent, nil }
func (r *recorder) GetIAPPolicy(context.Context, string) (*Policy, error) {
	return nil, errors.New("unused")
}
func (r *recorder) SetIAPPolicy(context.Context, string, *Policy) (*Policy, error) {
	r.note("SetIAPPolicy")
	return nil, nil
}

func newRecorderReconciler(t *testing.T) (*Reconciler, *recorder) {
	t.Helper()
	rec := &recorder{}
	r, err := New(Deps{rec, rec, rec, rec, nil}, Options{Scope: scope.AllProjects()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, rec
}

// TestApplyRefusesUnsafeWrites tampers with computed plans and checks that
// the apply path refuses to send the write at all.
func TestApplyRefusesUnsafeWrites(t *testing.T) {
	t.Parallel()
	lbObs := func() *observed {
		return &observed{
			Service: tService(ingress(ingressInternalOnly)), Policy: tPolicy(bind(roleInvoker, allUsers), bind("roles/run.admin", "user:o@example.com")), Agent: tAgent,
			NEGs: []NEG{tNEG("hello-neg", "hello")}, Backends: []BackendService{tBackend("web", "", "hello-neg")},
		}
	}
	tests := []struct {
		name   string
		tamper func(p *plan)
		refuse string // the write that must not be sent
	}{
		{"loosen ingress", func(p *plan) { p.service.update.Ingress = ingressAll }, "UpdateService"},
		{"ingress below the stricter setting", func(p *plan) { p.service.update.Ingress = ingressInternalLoadBalancer }, "UpdateService"},
		{"drop foreign binding", func(p *plan) { p.policy.after.Bindings = p.policy.after.Bindings[1:] }, "SetIamPolicy"},
		{"add public member", func(p *plan) {
			p.policy.after.Bindings[0].Members = append(p.policy.after.Bindings[0].Members, allAuthenticatedUsers)
		}, "SetIamPolicy"},
		{"IAP on a CDN backend", func(p *plan) { p.backends[0].backend.EnableCDN = true }, "EnableIAP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, rec := newRecorderReconciler(t)
			obs := lbObs()
			p := planFor(DesiredFor(obs.Service), obs)
			if p.writes() != 3 {
				t.Fatalf("fixture plan has %d writes, want 3:\n%s", p.writes(), renderPlan(p))
			}
			tc.tamper(p)
			planned := renderPlan(p)
			asPlanned := view{p: p, parts: p.parts}.report()
			_, done, err := r.apply(t.Context(), p, nil)
			if !errors.Is(err, errUnsafeWrite) {
				t.Fatalf("apply(tampered plan) = %v, want errUnsafeWrite", err)
			}
			if transient(err) {
				t.Errorf("apply(tampered plan) error classified transient; an unsafe write is a bug, not worth redelivering")
			}
			for _, w := range rec.writes {
				if w == tc.refuse {
					t.Errorf("apply sent %s despite the guard; writes: %v", w, rec.writes)
				}
			}
			res := &Result{}
			res.fill(p, done)
			if res.Outcome != outcome.Failed {
				t.Errorf("outcome = %s, want failed", res.Outcome)
			}
			// apply writes its record, never the plan (#17).
			if got := renderPlan(p); got != planned || !reflect.DeepEqual(view{p: p, parts: p.parts}.report(), asPlanned) {
				t.Errorf("apply changed the plan:\nbefore %s\nafter  %s", planned, got)
			}
		})
	}
}

// TestApplyRefusesUnsafeAccessWrites tampers with planned IAP policy
// writes: the guard refuses them, and IAP is still enforced (security
// first).
func TestApplyRefusesUnsafeAccessWrites(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(p *Policy)
	}{
		{"revoke a foreign member", func(p *Policy) { p.Bindings[0].Members = p.Bindings[0].Members[1:] }},
		{"grant allUsers", func(p *Policy) { p.Bindings[0].Members = append(p.Bindings[0].Members, allUsers) }},
		{"grant an undeclared member", func(p *Policy) {
			p.Bindings[0].Members = append(p.Bindings[0].Members, "user:mallory@example.com")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, rec := newRecorderReconciler(t)
			obs := &observed{
				Service: tService(accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent, AccessPolicies: tPolicies(t),
				IAP: iapOf(tRunIAP, iapPolicy("user:boss@example.com"), tProjIAP, iapPolicy()),
			}
			p := planFor(DesiredFor(obs.Service), obs)
			if len(p.access.list()) != 1 || p.access.list()[0].after == nil {
				t.Fatalf("fixture plan grants nothing:\n%s", renderPlan(p))
			}
			tc.tamper(p.access.list()[0].after)
			_, done, err := r.apply(t.Context(), p, nil)
			if !errors.Is(err, errUnsafeWrite) {
				t.Fatalf("apply(tampered plan) = %v, want errUnsafeWrite", err)
			}
			if slices.Contains(rec.writes, "SetIAPPolicy") {
				t.Errorf("apply sent SetIAPPolicy despite the guard; writes: %v", rec.writes)
			}
			if !slices.Contains(rec.writes, "UpdateService") {
				t.Errorf("IAP was not enforced after a refused access write; writes: %v", rec.writes)
			}
			res := &Result{}
			res.fill(p, done)
			if res.Outcome != outcome.Failed {
				t.Errorf("outcome = %s, want failed", res.Outcome)
			}
			for _, s := range res.Steps {
				if s.Name == outcome.StepAccess && s.Result != outcome.StepFailed {
					t.Errorf("access step %s: %s", s.Result, s.Message)
				}
			}
			for _, c := range res.Changes {
				if strings.Contains(c.Field, accessAnnotation) {
					t.Errorf("a refused grant was recorded: %+v", c)
				}
			}
		})
	}
}

func TestScope(t *testing.T) {
	t.Parallel()
	if s := (scope.Scope{}); !s.Empty() || s.Allows("p") {
		t.Errorf("zero Scope: Empty=%v Allows(p)=%v, want true,false", s.Empty(), s.Allows("p"))
	}
	s, err := scope.Parse(" p1, 123 ,")
	if err != nil {
		t.Fatalf("scope.Parse: %v", err)
	}
	for p, want := range map[string]bool{"p1": true, "123": true, "p2": false, "": false} {
		if got := s.Allows(p); got != want {
			t.Errorf("Allows(%q) = %v, want %v", p, got, want)
		}
	}
	if got := s.String(); got != "123,p1" {
		t.Errorf("String() = %q, want %q", got, "123,p1")
	}
	all, err := scope.Parse("*")
	if err != nil || !all.Allows("anything") {
		t.Errorf("scope.Parse(*) = %v, %v; want a scope allowing everything", all, err)
	}
	for _, bad := range []string{"", " , ", "p1,projects/p2", "p?"} {
		if _, err := scope.Parse(bad); err == nil {
			t.Errorf("scope.Parse(%q) = nil error, want one", bad)
		}
	}
	if _, err := New(Deps{}, Options{Scope: scope.AllProjects()}); err == nil {
		t.Error("New(no deps) = nil error")
	}
	rec := &recorder{}
	if _, err := New(Deps{rec, rec, rec, rec, nil}, Options{}); err == nil {
		t.Error("New(no scope) = nil error")
	}
	if _, err := New(Deps{rec, rec, rec, rec, nil}, Options{Scope: scope.Scope{}}); err == nil {
		t.Error("New(empty scope) = nil error")
	}
}

// A scope with patterns reaches a reconcile like an explicit one: out of
// scope is rejected before any call.
func TestPatternScopeRejectsWithoutCalls(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r, err := New(Deps{rec, rec, rec, rec, nil}, Options{Scope: scope.New("team-*")})
	if err != nil {
		t.Fatal(err)
	}
	for _, project := range []string{"other", "123456789012"} {
		res, err := r.Reconcile(t.Context(), ServiceRef{Project: project, Region: "us-central1", Name: "web"})
		if err != nil || res.Outcome != outcome.Rejected || !strings.Contains(res.Reason, "outside iapguard's scope (team-*)") {
			t.Errorf("Reconcile(%s) = %+v, %v; want rejected as outside the scope", project, res, err)
		}
		cs, err := r.ResolveRegion(t.Context(), project, "-")
		var se *ScopeError
		if !errors.As(err, &se) || se.Err != nil || len(cs) != 0 || se.Result(false).Outcome != outcome.Rejected {
			t.Errorf("ResolveRegion(%s) = %+v, %v; want a rejecting *ScopeError", project, cs, err)
		}
	}
	if len(rec.writes) != 0 {
		t.Errorf("out-of-scope reconciles called %v", rec.writes)
	}
}
