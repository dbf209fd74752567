package test

// The soak's world: services built through the official clients, the
// user who labels them, and a foreign administrator who edits their IAM
// policies at the same time. Every call here may hit an injected fault, so
// each one retries what Google would have it retry.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
)

// foreignPrincipal is the administrator whose IAM edits iapguard must keep.
const foreignPrincipal = "platform-admin@example.com"

// soakKind is how a soak service is exposed before iapguard sees it.
type soakKind int

const (
	// kindLB: public, ingress all, behind an HTTPS load balancer.
	kindLB soakKind = iota
	// kindDirect: public, no load balancer (Cloud Run's built-in IAP).
	kindDirect
	// kindDirectNoIAM: like kindDirect with invokerIamDisabled=true.
	kindDirectNoIAM
	// kindLBInternal: ingress internal-only behind an HTTPS load balancer
	// (stricter than required: kept).
	kindLBInternal
	// kindLBHTTP: behind a load balancer with an HTTP-only frontend.
	kindLBHTTP
	// kindLBIAPOn: public, ingress all, backend IAP already on.
	kindLBIAPOn
)

// soakKindCycle assigns kinds by index: 40 % kindLB, every other kind at
// least 10 %, so even the CI size has several of each.
var soakKindCycle = []soakKind{kindLB, kindDirect, kindLB, kindDirectNoIAM, kindLBInternal, kindLB, kindDirect, kindLBHTTP, kindLBIAPOn, kindLB}

func (k soakKind) String() string {
	return [...]string{"lb", "direct", "direct-no-invoker-iam", "lb-internal-only", "lb-http-only", "lb-iap-on"}[k]
}

func (k soakKind) lb() bool { return k != kindDirect && k != kindDirectNoIAM }

// soakSvc is one Cloud Run service of the soak.
type soakSvc struct {
	project core.Project
	name    string
	kind    soakKind
	// control services are never labelled: iapguard must not touch them.
	control bool
	lb      demo.LB
	// access: labelled iap-access=soak-users too (direct services only);
	// an IAP administrator granted soakForeignAccessor(s) by hand first.
	access bool
	// group: s is one of several services behind one shared backend
	// service (nil: the backend, if any, is s's own).
	group *soakGroup
	// groupAccess labels a grouped service iap-access=soak-users.
	groupAccess bool
}

// soakGroup is a backend service fronting several labelled Cloud Run
// services, each through its own serverless NEG. iapguard changes a shared
// backend only when every service behind it is labelled with the same
// access policy (#19 item 2): an agreeing group must converge with IAP on;
// a disagreeing one must end conflict with the backend untouched and
// nothing granted on its IAP resource.
type soakGroup struct {
	name    string
	agree   bool
	members []*soakSvc
}

// soakGroups lays out the shared backends: one agreeing group of three
// (no access policy on any) and one disagreeing group of two (one names
// soak-users, the other no policy).
func soakGroups(p core.Project) []*soakGroup {
	mk := func(name string, agree bool, access ...bool) *soakGroup {
		g := &soakGroup{name: name, agree: agree}
		for i, a := range access {
			s := &soakSvc{project: p, name: fmt.Sprintf("%s%c", name, 'a'+i), kind: kindLB, group: g, groupAccess: a}
			s.lb = demo.LB{BackendService: name + "-backend"}
			g.members = append(g.members, s)
		}
		return g
	}
	return []*soakGroup{mk("g0", true, false, false, false), mk("g1", false, true, false)}
}

// soakAccessPolicy is the soak's access policy file.
const soakAccessPolicy = `policies:
  soak-users:
    members: [group:soak-users@example.com, user:soak-a@example.com]
`

// soakAccessMembers are soak-users' members.
var soakAccessMembers = []string{"group:soak-users@example.com", "user:soak-a@example.com"}

// soakForeignAccessor is the member an IAP administrator granted on s's
// IAP resource by hand: iapguard must never revoke it.
func soakForeignAccessor(s *soakSvc) string { return "user:boss-" + s.name + "@example.com" }

// iapResource is s's Cloud Run IAP resource.
func (s *soakSvc) iapResource() string {
	return "projects/" + s.project.NumberString() + "/iap_web/cloud_run-" + s.ref().Region + "/services/" + s.ref().Name
}

func (s *soakSvc) resource() string {
	return "projects/" + s.project.ID + "/locations/" + region + "/services/" + s.name
}

func (s *soakSvc) ref() iapsetup.ServiceRef {
	return iapsetup.ServiceRef{Project: s.project.ID, Region: region, Name: s.name}
}

func (s *soakSvc) backendPath() string {
	return "projects/" + s.project.ID + "/global/backendServices/" + s.lb.BackendService
}

// soakGrant is one member a foreign principal granted on a service.
type soakGrant struct {
	service, role, cond, member string
}

// soakEdit is one foreign IAM edit: add member to role (under cond when
// set). A drift edit adds a public member, which iapguard must remove.
type soakEdit struct {
	role, member string
	cond         *expr.Expr
	drift        bool
}

// soakTask is one scheduled action of the workload.
type soakTask struct {
	at    time.Duration
	svc   *soakSvc
	label bool
	edit  soakEdit
}

// soakWorld is the soak's view of the emulated projects.
type soakWorld struct {
	user    *demo.Clients
	foreign *run.ServicesClient
	svcs    []*soakSvc
	groups  []*soakGroup

	mu     sync.Mutex
	grants []soakGrant
	drifts map[string]int // service resource → public members added
	// intents: service resource → access grants recorded as intended
	// (from the function's logs, for the write accounting).
	intents map[string]int
	// clientFaults counts the faults the soak's own clients met, by code.
	clientFaults map[codes.Code]int

	foreignEdits, foreignConflicts atomic.Int64
}

// dialForeign returns an official Cloud Run client that names
// foreignPrincipal as its caller.
func dialForeign(ctx context.Context, addr string) (*run.ServicesClient, error) {
	named := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, "x-emulator-principal", foreignPrincipal), method, req, reply, cc, opts...)
	}
	c, err := run.NewServicesClient(ctx,
		option.WithEndpoint(addr),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithUnaryInterceptor(named)),
		option.WithoutAuthentication(),
		option.WithTelemetryDisabled(),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting the foreign administrator's Cloud Run client: %w", err)
	}
	return c, nil
}

// plan lays out the services: labelled ones cycle through the kinds,
// controls (never labelled) alternate between load-balanced and direct.
func (w *soakWorld) plan(projects []core.Project, labelled, controls int) {
	for i := range labelled {
		s := &soakSvc{project: projects[i%len(projects)], name: fmt.Sprintf("s%04d", i), kind: soakKindCycle[i%len(soakKindCycle)]}
		s.access = !s.kind.lb() && i%3 == 0
		w.svcs = append(w.svcs, s)
	}
	for _, g := range soakGroups(projects[0]) {
		w.groups = append(w.groups, g)
		w.svcs = append(w.svcs, g.members...)
	}
	for i := range controls {
		k := kindLB
		if i%2 == 1 {
			k = kindDirect
		}
		w.svcs = append(w.svcs, &soakSvc{project: projects[i%len(projects)], name: fmt.Sprintf("c%04d", i), kind: k, control: true})
	}
}

// build creates every service unlabelled, with someone else's bindings,
// and its load balancer. Run it before faults are injected.
func (w *soakWorld) build(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, s := range w.svcs {
		g.Go(func() error { return w.buildOne(gctx, s) })
	}
	return g.Wait()
}

func (w *soakWorld) buildOne(ctx context.Context, s *soakSvc) error {
	spec := demo.ServiceSpec{
		Name: s.name, Public: true,
		ExtraInvokers: []string{"group:team-" + s.name + "@example.com"},
		Bindings:      map[string][]string{"roles/run.developer": {"user:dev-" + s.name + "@example.com"}},
	}
	if s.kind == kindLBInternal {
		spec.Ingress = runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY
	}
	if _, err := w.user.CreateService(ctx, s.project.ID, region, spec); err != nil {
		return err
	}
	// The creation's bindings count as someone else's: they must survive.
	w.mu.Lock()
	w.grants = append(w.grants,
		soakGrant{s.resource(), "roles/run.invoker", "", "group:team-" + s.name + "@example.com"},
		soakGrant{s.resource(), "roles/run.developer", "", "user:dev-" + s.name + "@example.com"})
	w.mu.Unlock()
	if s.kind == kindDirectNoIAM {
		op, err := w.user.Run.UpdateService(ctx, &runpb.UpdateServiceRequest{
			Service:    &runpb.Service{Name: s.resource(), InvokerIamDisabled: true},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"invoker_iam_disabled"}},
		})
		if err != nil {
			return fmt.Errorf("disabling the invoker IAM check of %s: %w", s.name, err)
		}
		if _, err := op.Wait(ctx); err != nil {
			return fmt.Errorf("waiting to disable the invoker IAM check of %s: %w", s.name, err)
		}
	}
	if g := s.group; g != nil {
		if s != g.members[0] {
			return nil // the first member builds the shared load balancer
		}
		lb, err := w.user.BuildLoadBalancer(ctx, s.project.ID, region, demo.LBSpec{Service: s.name, Prefix: g.name})
		if err != nil {
			return err
		}
		s.lb = lb
		for _, o := range g.members[1:] {
			if err := w.user.AddServiceToBackend(ctx, s.project.ID, region, lb.BackendService, o.name, g.name+"-"+o.name+"-neg"); err != nil {
				return err
			}
		}
		return nil
	}
	if s.kind.lb() {
		lb, err := w.user.BuildLoadBalancer(ctx, s.project.ID, region, demo.LBSpec{
			Service: s.name, HTTPOnly: s.kind == kindLBHTTP, IAP: s.kind == kindLBIAPOn,
		})
		if err != nil {
			return err
		}
		s.lb = lb
	}
	return nil
}

// schedule returns the workload: every labelled service is labelled once
// at a random time within spread, and receives edits foreign IAM edits
// clustered around that time so they interleave with iapguard's
// reconciles; controls get non-drift edits at random times. About one edit
// in ten on a labelled service is drift (a public member).
func (w *soakWorld) schedule(rnd *rand.Rand, edits int, spread time.Duration) []soakTask {
	var tasks []soakTask
	n := 0
	for _, s := range w.svcs {
		at := time.Duration(rnd.Int64N(int64(spread)))
		if !s.control {
			tasks = append(tasks, soakTask{at: at, svc: s, label: true})
		}
		for range edits {
			n++
			ed := soakEdit{member: fmt.Sprintf("user:f%05d-%s@example.com", n, s.name)}
			switch r := rnd.Float64(); {
			case r < 0.1 && !s.control:
				ed.drift, ed.role, ed.member = true, "roles/run.invoker", "allUsers"
				if rnd.IntN(2) == 0 {
					ed.member = "allAuthenticatedUsers"
				}
			case r < 0.3:
				ed.role = "roles/run.invoker"
				ed.cond = &expr.Expr{
					Title:      fmt.Sprintf("until-2030-%05d", n),
					Expression: `request.time < timestamp("2030-01-01T00:00:00Z")`,
				}
			default:
				ed.role = []string{"roles/run.invoker", "roles/run.developer", "roles/run.viewer", "projects/" + s.project.ID + "/roles/soakAuditor"}[rnd.IntN(4)]
			}
			eat := at + time.Duration(rnd.Int64N(int64(750*time.Millisecond))) - 150*time.Millisecond
			if s.control {
				eat = time.Duration(rnd.Int64N(int64(spread)))
			}
			tasks = append(tasks, soakTask{at: max(eat, 0), svc: s, edit: ed})
		}
	}
	sort.SliceStable(tasks, func(i, j int) bool { return tasks[i].at < tasks[j].at })
	return tasks
}

// run executes tasks on workers goroutines, each task not before its time.
func (w *soakWorld) run(ctx context.Context, tasks []soakTask, workers int) error {
	start := time.Now()
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tasks) {
					return nil
				}
				tk := tasks[i]
				if err := soakSleep(gctx, time.Until(start.Add(tk.at))); err != nil {
					return err
				}
				var err error
				if tk.label {
					err = w.label(gctx, tk.svc)
				} else {
					err = w.edit(gctx, tk.svc, tk.edit)
				}
				if err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// label sets iap=enabled as the user, retrying injected faults.
func (w *soakWorld) label(ctx context.Context, s *soakSvc) error {
	var op *run.UpdateServiceOperation
	err := w.retry(ctx, "labelling "+s.name, func() error {
		var err error
		op, err = w.user.Run.UpdateService(ctx, &runpb.UpdateServiceRequest{
			Service:    &runpb.Service{Name: s.resource(), Labels: soakLabels(s)},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
		})
		return err
	})
	if err != nil {
		return err
	}
	return w.retry(ctx, "waiting for the label of "+s.name, func() error {
		_, err := op.Wait(ctx)
		return err
	})
}

func soakLabels(s *soakSvc) map[string]string {
	l := map[string]string{"iap": "enabled", "team": "soak"}
	if s.access || s.groupAccess {
		l[access.LabelKey] = "soak-users"
	}
	return l
}

// edit is the foreign administrator's read-modify-write of s's IAM policy
// with the etag, redone on ABORTED as IAM asks. The grant is recorded once
// the write succeeded.
func (w *soakWorld) edit(ctx context.Context, s *soakSvc, ed soakEdit) error {
	for attempt := 1; ; attempt++ {
		var p *iampb.Policy
		err := w.retry(ctx, "reading the IAM policy of "+s.name, func() error {
			var err error
			p, err = w.foreign.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{
				Resource: s.resource(), Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3},
			})
			return err
		})
		if err != nil {
			return err
		}
		soakAddMember(p, ed)
		_, err = w.foreign.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: s.resource(), Policy: p})
		switch {
		case err == nil:
			w.foreignEdits.Add(1)
			w.mu.Lock()
			if ed.drift {
				w.drifts[s.resource()]++
			} else {
				g := soakGrant{s.resource(), ed.role, "", ed.member}
				if ed.cond != nil {
					g.cond = ed.cond.GetTitle()
				}
				w.grants = append(w.grants, g)
			}
			w.mu.Unlock()
			return nil
		case gcperr.IsConflict(err) && attempt < 100:
			w.foreignConflicts.Add(1)
		case gcperr.IsRetryable(err) && attempt < 100:
			w.noteFault(err)
		default:
			return fmt.Errorf("setting the IAM policy of %s as %s: %w", s.name, foreignPrincipal, err)
		}
		if err := soakSleep(ctx, soakPause(attempt)); err != nil {
			return err
		}
	}
}

// addMember adds ed's member to p in place.
func soakAddMember(p *iampb.Policy, ed soakEdit) {
	if ed.cond != nil {
		p.Version = 3
		p.Bindings = append(p.Bindings, &iampb.Binding{Role: ed.role, Members: []string{ed.member}, Condition: ed.cond})
		return
	}
	for _, b := range p.Bindings {
		if b.Role == ed.role && b.Condition == nil {
			b.Members = append(b.Members, ed.member)
			return
		}
	}
	p.Bindings = append(p.Bindings, &iampb.Binding{Role: ed.role, Members: []string{ed.member}})
}

// retry runs call until it succeeds, fails with an error that is not
// throttling or unavailability, or 100 attempts were made.
func (w *soakWorld) retry(ctx context.Context, what string, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		if !gcperr.IsRetryable(err) || attempt >= 100 || ctx.Err() != nil {
			return fmt.Errorf("%s (attempt %d): %w", what, attempt, err)
		}
		w.noteFault(err)
		if err := soakSleep(ctx, soakPause(attempt)); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

func (w *soakWorld) noteFault(err error) {
	w.mu.Lock()
	w.clientFaults[gcperr.Code(err)]++
	w.mu.Unlock()
}

// soakPause is a short jittered pause that grows with the attempt.
func soakPause(attempt int) time.Duration {
	base := time.Duration(min(attempt, 10)) * 5 * time.Millisecond
	return base + rand.N(base+time.Millisecond)
}

func soakSleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// grantForeignAccess has an IAP administrator grant each access service's
// soakForeignAccessor on its IAP resource, before iapguard manages access.
func (w *soakWorld) grantForeignAccess(ctx context.Context, a *gcp.IAPAdapter) error {
	for _, s := range w.svcs {
		if !s.access {
			continue
		}
		p, err := a.GetIAPPolicy(ctx, s.iapResource())
		if err != nil {
			return err
		}
		p.Bindings = append(p.Bindings, iapsetup.Binding{Role: "roles/iap.httpsResourceAccessor", Members: []string{soakForeignAccessor(s)}})
		if _, err := a.SetIAPPolicy(ctx, s.iapResource(), p); err != nil {
			return err
		}
	}
	return nil
}

func soakWriteAccessPolicies(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "access.yaml")
	if err := os.WriteFile(p, []byte(soakAccessPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
