package gcp_test

import (
	"errors"
	"slices"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/cloudrun"
	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

var helloRef = iapsetup.ServiceRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "hello"}

func TestRunServices(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: map[string]string{"iap": "enabled", "team": "web"},
		Annotations: map[string]string{"owner": "web"}, NoInvokerIAM: true})
	e.SeedService(t, emulatortest.Svc{Name: "other", Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY})
	a := e.Clients.RunAdapter
	ctx := t.Context()

	got, err := a.GetService(ctx, helloRef)
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	want := &iapsetup.Service{Ref: helloRef, Labels: map[string]string{"iap": "enabled", "team": "web"},
		Annotations: map[string]string{"owner": "web"}, Ingress: "INGRESS_TRAFFIC_ALL", InvokerIAMDisabled: true, Etag: got.Etag}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Source" }, cmp.Ignore()),
		cmpopts.IgnoreUnexported(iapsetup.Service{})); diff != "" {
		t.Errorf("GetService (-want +got):\n%s", diff)
	}
	if got.Etag == "" {
		t.Error("GetService: empty etag")
	}

	list, err := a.ListServices(ctx, emulatortest.Project, emulatortest.Region)
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Ref.Name+"="+string(s.Ingress))
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"hello=INGRESS_TRAFFIC_ALL", "other=INGRESS_TRAFFIC_INTERNAL_ONLY"}, names); diff != "" {
		t.Errorf("ListServices (-want +got):\n%s", diff)
	}

	if _, err := a.GetService(ctx, iapsetup.ServiceRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "missing"}); !gcperr.IsNotFound(err) || !errors.Is(err, iapsetup.ErrNotFound) {
		t.Errorf("GetService(missing) = %v, want NOT_FOUND", err)
	}

	// Validate-only changes nothing.
	before := e.Service(t, "hello")
	u := &iapsetup.ServiceUpdate{Ref: helloRef, Etag: got.Etag, Ingress: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", RequireInvokerIAM: true,
		EnableIAP: true, Annotations: map[string]string{"owner": "web", "iapguard.dev/managed": "true"}, Source: got.Source, ValidateOnly: true}
	vs, err := a.UpdateService(ctx, u)
	if err != nil {
		t.Fatalf("UpdateService(validate only): %v", err)
	}
	if vs.Ingress != "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" || !vs.IAPEnabled || vs.InvokerIAMDisabled {
		t.Errorf("UpdateService(validate only) returned %+v, want the would-be service", vs)
	}
	if after := e.Service(t, "hello"); after.GetEtag() != before.GetEtag() || after.GetIngress() != before.GetIngress() {
		t.Errorf("validate-only update changed the service: etag %q → %q, ingress %v → %v", before.GetEtag(), after.GetEtag(), before.GetIngress(), after.GetIngress())
	}

	// A real update applies exactly the masked fields.
	u.ValidateOnly = false
	us, err := a.UpdateService(ctx, u)
	if err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	stored := e.Service(t, "hello")
	if stored.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER || !stored.GetIapEnabled() || stored.GetInvokerIamDisabled() {
		t.Errorf("stored service after UpdateService: ingress %v iap %v invokerIamDisabled %v", stored.GetIngress(), stored.GetIapEnabled(), stored.GetInvokerIamDisabled())
	}
	if diff := cmp.Diff(map[string]string{"owner": "web", "iapguard.dev/managed": "true"}, stored.GetAnnotations()); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"iap": "enabled", "team": "web"}, stored.GetLabels()); diff != "" {
		t.Errorf("labels changed (-want +got):\n%s", diff)
	}
	if us.Etag == got.Etag || us.Etag != stored.GetEtag() {
		t.Errorf("UpdateService returned etag %q; before %q, stored %q", us.Etag, got.Etag, stored.GetEtag())
	}

	// The old etag is now stale: ABORTED, a conflict.
	_, err = a.UpdateService(ctx, &iapsetup.ServiceUpdate{Ref: helloRef, Etag: got.Etag, EnableIAP: true})
	if !gcperr.IsConflict(err) || !errors.Is(err, iapsetup.ErrConflict) || !errors.Is(err, iapsetup.ErrTransient) {
		t.Errorf("UpdateService(stale etag) = %v, want a conflict", err)
	}

	// The writes — the accepted one and the refused stale one, which Google
	// logs as a failed call — are attributed to iapguard's principal.
	var principals []string
	var failed int
	for _, en := range e.Core.Audit.Entries() {
		principals = append(principals, en.ProtoPayload.AuthenticationInfo.PrincipalEmail)
		if en.ProtoPayload.Status != nil {
			failed++
		}
	}
	if len(principals) != 2 || principals[0] != emulatortest.Principal || principals[1] != emulatortest.Principal || failed != 1 {
		t.Errorf("audit principals = %v (%d failed), want [%s %[3]s], the second failed", principals, failed, emulatortest.Principal)
	}
}

func TestRunIAMPolicy(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{Run: cloudrun.Options{LRO: cloudrun.LROImmediate}})
	e.SeedService(t, emulatortest.Svc{Name: "hello"})
	e.SeedPolicy(t, "hello", &iampb.Policy{Version: 3, Bindings: []*iampb.Binding{
		{Role: "roles/run.invoker", Members: []string{"allUsers", "user:a@example.com"}},
		{Role: "roles/run.invoker", Members: []string{"group:g@example.com"}, Condition: &expr.Expr{Title: "t", Expression: "request.time < timestamp('2030-01-01T00:00:00Z')"}},
	}})
	a := e.Clients.RunAdapter
	ctx := t.Context()
	p, err := a.GetIAMPolicy(ctx, helloRef)
	if err != nil {
		t.Fatalf("GetIAMPolicy: %v", err)
	}
	if p.Version != 3 || len(p.Bindings) != 2 || len(p.Etag) == 0 {
		t.Fatalf("GetIAMPolicy = %+v, want version 3 with 2 bindings and an etag", p)
	}
	cond := slices.IndexFunc(p.Bindings, func(b iapsetup.Binding) bool { return b.Condition != nil })
	if cond < 0 || p.Bindings[cond].Condition.Title != "t" {
		t.Fatalf("conditional binding lost: %+v", p.Bindings)
	}
	next := *p
	next.Bindings = slices.Clone(p.Bindings)
	plain := 1 - cond
	next.Bindings[plain] = iapsetup.Binding{Role: "roles/run.invoker", Members: []string{"user:a@example.com", "serviceAccount:" + emulatortest.Agent}}
	e.Core.Accounts.Add(emulatortest.Agent) // IAM rejects unknown service accounts
	np, err := a.SetIAMPolicy(ctx, helloRef, &next)
	if err != nil {
		t.Fatalf("SetIAMPolicy: %v", err)
	}
	if string(np.Etag) == string(p.Etag) {
		t.Error("SetIAMPolicy did not change the etag")
	}
	stored := e.Policy(t, "hello")
	var members []string
	for _, b := range stored.GetBindings() {
		if b.GetCondition() == nil {
			members = b.GetMembers()
		}
	}
	if diff := cmp.Diff([]string{"serviceAccount:" + emulatortest.Agent, "user:a@example.com"}, members); diff != "" {
		t.Errorf("stored invoker members (-want +got):\n%s", diff)
	}
	// Stale etag → ABORTED.
	if _, err := a.SetIAMPolicy(ctx, helloRef, &next); !gcperr.IsConflict(err) || !errors.Is(err, iapsetup.ErrConflict) || !errors.Is(err, iapsetup.ErrTransient) {
		t.Errorf("SetIAMPolicy(stale etag) = %v, want a conflict", err)
	}
	// Forced race: the emulator bumps the etag before checking ours.
	if err := e.Core.Faults.ForceRaces("google.cloud.run.v2.Services.SetIamPolicy", 1); err != nil {
		t.Fatal(err)
	}
	cur, err := a.GetIAMPolicy(ctx, helloRef)
	if err != nil {
		t.Fatalf("GetIAMPolicy: %v", err)
	}
	if _, err := a.SetIAMPolicy(ctx, helloRef, cur); !gcperr.IsConflict(err) || !errors.Is(err, iapsetup.ErrConflict) || !errors.Is(err, iapsetup.ErrTransient) {
		t.Errorf("SetIAMPolicy(forced race) = %v, want a conflict", err)
	}
	// Injected throttling is retried by the adapter (ratelimit.go).
	if err := e.Core.Faults.FailNext("google.cloud.run.v2.Services.GetIamPolicy", 1, codes.ResourceExhausted); err != nil {
		t.Fatal(err)
	}
	before := e.Snapshot()
	if _, err := a.GetIAMPolicy(ctx, helloRef); err != nil {
		t.Errorf("GetIAMPolicy(RESOURCE_EXHAUSTED once) = %v, want it retried and nil", err)
	}
	if n := e.Snapshot().Sub(before).Calls["google.cloud.run.v2.Services.GetIamPolicy"]; n != 2 {
		t.Errorf("GetIAMPolicy calls = %d, want 2 (throttled, retried)", n)
	}
}

func TestComputeAdapter(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	neg := e.AddNEG(t, "hello-neg", "hello", "")
	mask := e.AddNEG(t, "mask-neg", "", "<service>.example.com")
	web := emulatortest.Backend{Name: "web", Groups: []string{neg}}
	internal := emulatortest.Backend{Name: "internal", Region: emulatortest.Region, Groups: []string{neg}}
	cdn := emulatortest.Backend{Name: "cdn", Groups: []string{mask}, CDN: true}
	plainHTTP := emulatortest.Backend{Name: "plain", Groups: []string{neg}}
	e.AddBackend(t, web)
	e.AddBackend(t, internal)
	e.AddBackend(t, cdn)
	e.AddBackend(t, plainHTTP)
	e.AddFrontend(t, "web", emulatortest.Link(web.Path()), true)
	e.AddFrontend(t, "plain", emulatortest.Link(plainHTTP.Path()), false)
	a := e.Clients.ComputeAdapter
	ctx := t.Context()

	negs, err := a.ListServerlessNEGs(ctx, emulatortest.Project, emulatortest.Region)
	if err != nil {
		t.Fatalf("ListServerlessNEGs: %v", err)
	}
	wantNEGs := []iapsetup.NEG{
		{SelfLink: neg, Name: "hello-neg", Project: emulatortest.Project, Region: emulatortest.Region, Type: "SERVERLESS", CloudRun: &iapsetup.CloudRunTarget{Service: "hello"}},
		{SelfLink: mask, Name: "mask-neg", Project: emulatortest.Project, Region: emulatortest.Region, Type: "SERVERLESS", CloudRun: &iapsetup.CloudRunTarget{URLMask: "<service>.example.com"}},
	}
	slices.SortFunc(negs, func(a, b iapsetup.NEG) int { return cmpString(a.Name, b.Name) })
	if diff := cmp.Diff(wantNEGs, negs); diff != "" {
		t.Errorf("ListServerlessNEGs (-want +got):\n%s", diff)
	}
	if n, err := a.GetNEG(ctx, iapsetup.NEGRef{Project: emulatortest.Project, Region: emulatortest.Region, Name: "hello-neg"}); err != nil || n.CloudRun.Service != "hello" {
		t.Errorf("GetNEG = %+v, %v", n, err)
	}

	bss, err := a.ListBackendServices(ctx, emulatortest.Project)
	if err != nil {
		t.Fatalf("ListBackendServices: %v", err)
	}
	var paths []string
	for _, b := range bss {
		paths = append(paths, b.Ref.String())
		if b.Fingerprint == "" || b.ID == "0" || b.SelfLink == "" {
			t.Errorf("backend service %s lacks fingerprint/id/selfLink: %+v", b.Ref, b)
		}
	}
	slices.Sort(paths)
	if diff := cmp.Diff([]string{cdn.Path(), plainHTTP.Path(), web.Path(), internal.Path()}, paths); diff != "" {
		t.Errorf("ListBackendServices (-want +got):\n%s", diff)
	}
	if calls := e.Snapshot().Calls["compute.backendServices.aggregatedList"]; calls != 1 {
		t.Errorf("aggregatedList calls = %d, want 1", calls)
	}

	// Frontends.
	for _, tc := range []struct {
		b     emulatortest.Backend
		https bool
	}{{web, true}, {plainHTTP, false}, {internal, false}} {
		got, err := a.GetBackendService(ctx, iapsetup.BackendRef{Project: emulatortest.Project, Region: tc.b.Region, Name: tc.b.Name})
		if err != nil {
			t.Fatalf("GetBackendService(%s): %v", tc.b.Name, err)
		}
		fe, err := a.HTTPSFrontend(ctx, got)
		if err != nil {
			t.Fatalf("HTTPSFrontend(%s): %v", tc.b.Name, err)
		}
		if fe.HTTPS != tc.https {
			t.Errorf("HTTPSFrontend(%s).HTTPS = %v, want %v (%+v)", tc.b.Name, fe.HTTPS, tc.https, fe)
		}
	}

	// EnableIAP with the current fingerprint, then with a stale one.
	for _, b := range []emulatortest.Backend{web, internal} {
		ref := iapsetup.BackendRef{Project: emulatortest.Project, Region: b.Region, Name: b.Name}
		cur, err := a.GetBackendService(ctx, ref)
		if err != nil {
			t.Fatalf("GetBackendService: %v", err)
		}
		if err := a.EnableIAP(ctx, ref, cur.Fingerprint); err != nil {
			t.Fatalf("EnableIAP(%s): %v", b.Name, err)
		}
		after := e.GetBackend(t, b)
		if after.Iap == nil || !after.Iap.Enabled {
			t.Errorf("%s: iap = %+v after EnableIAP, want enabled", b.Name, after.Iap)
		}
		if after.Fingerprint == cur.Fingerprint {
			t.Errorf("%s: fingerprint unchanged after EnableIAP", b.Name)
		}
		if len(after.Backends) != 1 || after.Protocol != "HTTPS" || after.LoadBalancingScheme != "EXTERNAL_MANAGED" {
			t.Errorf("%s: EnableIAP changed other fields: %+v", b.Name, after)
		}
		if err := a.EnableIAP(ctx, ref, cur.Fingerprint); !gcperr.IsConflict(err) || !errors.Is(err, iapsetup.ErrConflict) || !errors.Is(err, iapsetup.ErrTransient) {
			t.Errorf("EnableIAP(%s, stale fingerprint) = %v, want a conflict (412)", b.Name, err)
		}
	}
	if _, err := a.GetBackendService(ctx, iapsetup.BackendRef{Project: emulatortest.Project, Name: "missing"}); !gcperr.IsNotFound(err) || !errors.Is(err, iapsetup.ErrNotFound) {
		t.Errorf("GetBackendService(missing) = %v, want NOT_FOUND", err)
	}
	if _, err := a.ListBackendServices(ctx, "no-such-project"); err == nil || gcperr.IsTransient(err) || errors.Is(err, iapsetup.ErrTransient) {
		t.Errorf("ListBackendServices(unknown project) = %v, want a permanent error", err)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestIdentityAdapter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		polls int
	}{{"done at once", 0}, {"done on the second poll", 2}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envOptions{})
			if tc.polls > 0 {
				e.ServiceUsage.SetOperationPolls(tc.polls)
			}
			got, err := e.Clients.IdentityAdapter.IAPServiceAgent(t.Context(), emulatortest.Project)
			if err != nil {
				t.Fatalf("IAPServiceAgent: %v", err)
			}
			if got != emulatortest.Agent {
				t.Errorf("IAPServiceAgent = %q, want %q", got, emulatortest.Agent)
			}
			snap := e.Snapshot()
			if n := snap.Calls["serviceusage.operations.get"]; n != int64(tc.polls) {
				t.Errorf("operations.get calls = %d, want %d", n, tc.polls)
			}
			_, err = e.Clients.IdentityAdapter.IAPServiceAgent(t.Context(), "no-such-project")
			if err == nil || !gcperr.IsPermissionDenied(err) || !errors.Is(err, iapsetup.ErrPermission) {
				t.Errorf("IAPServiceAgent(unknown project) = %v, want PERMISSION_DENIED", err)
			}
		})
	}
}

func TestEmulatorHostFromEnv(t *testing.T) {
	// Not parallel: sets an environment variable.
	e := startEnv(t, envOptions{})
	e.SeedService(t, emulatortest.Svc{Name: "hello"})
	t.Setenv("IAPGUARD_EMULATOR_HOST", e.Addr)
	cl, err := newClientsFromEnv(t)
	if err != nil {
		t.Fatalf("NewClients from env: %v", err)
	}
	if _, err := cl.RunAdapter.GetService(t.Context(), helloRef); err != nil {
		t.Errorf("GetService through env-configured client: %v", err)
	}
	if _, err := cl.ComputeAdapter.ListBackendServices(t.Context(), emulatortest.Project); err != nil {
		t.Errorf("ListBackendServices through env-configured client: %v", err)
	}
}

func newClientsFromEnv(t *testing.T) (*gcp.Clients, error) {
	t.Helper()
	cl, err := gcp.NewClients(t.Context(), gcp.Options{})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl, nil
}

func TestNewClientsRejectsURLHost(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"http://127.0.0.1:1", "127.0.0.1:1/x"} {
		if _, err := gcp.NewClients(t.Context(), gcp.Options{EmulatorHost: host}); err == nil {
			t.Errorf("NewClients(EmulatorHost=%q) = nil error, want one", host)
		}
	}
}

// The Cloud Run adapter goes through the discovery-based REST client,
// which retries nothing by itself; it applies the gRPC clients' default
// retries (cloud.google.com/go/run/apiv2 and longrunning): GetService,
// ListServices and the operation poll retried on UNAVAILABLE, nothing
// else. An update whose poll met an UNAVAILABLE must still succeed: failing
// it would make the reconciler write again on redelivery.
func TestRunAdapterRetriesAsTheGRPCClient(t *testing.T) {
	t.Parallel()
	const (
		get    = "google.cloud.run.v2.Services.GetService"
		list   = "google.cloud.run.v2.Services.ListServices"
		update = "google.cloud.run.v2.Services.UpdateService"
		poll   = "google.longrunning.Operations.GetOperation"
		setIAM = "google.cloud.run.v2.Services.SetIamPolicy"
	)
	for _, tc := range []struct {
		name   string
		method string
		code   codes.Code
		call   func(t *testing.T, a *gcp.RunAdapter, svc *iapsetup.Service) error
		calls  int64
		ok     bool
	}{
		{"get unavailable retried", get, codes.Unavailable, getHello, 2, true},
		{"get denied not retried", get, codes.PermissionDenied, getHello, 1, false},
		{"list unavailable retried", list, codes.Unavailable, listRegion, 2, true},
		{"poll unavailable retried", poll, codes.Unavailable, enableIAP, 2, true},
		{"poll denied not retried", poll, codes.PermissionDenied, enableIAP, 1, false},
		{"update unavailable not retried", update, codes.Unavailable, enableIAP, 1, false},
		{"set IAM unavailable not retried", setIAM, codes.Unavailable, setPolicy, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envOptions{})
			e.SeedService(t, emulatortest.Svc{Name: "hello"})
			a := e.Clients.RunAdapter
			svc, err := a.GetService(t.Context(), helloRef)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Core.Faults.FailNext(tc.method, 1, tc.code); err != nil {
				t.Fatal(err)
			}
			before := e.Snapshot()
			err = tc.call(t, a, svc)
			if (err == nil) != tc.ok {
				t.Errorf("call = %v, want success %v", err, tc.ok)
			}
			if n := e.Snapshot().Sub(before).Calls[tc.method]; n != tc.calls {
				t.Errorf("%s called %d times, want %d", tc.method, n, tc.calls)
			}
		})
	}
}

func getHello(t *testing.T, a *gcp.RunAdapter, _ *iapsetup.Service) error {
	_, err := a.GetService(t.Context(), helloRef)
	return err
}

func listRegion(t *testing.T, a *gcp.RunAdapter, _ *iapsetup.Service) error {
	_, err := a.ListServices(t.Context(), helloRef.Project, helloRef.Region)
	return err
}

func enableIAP(t *testing.T, a *gcp.RunAdapter, svc *iapsetup.Service) error {
	_, err := a.UpdateService(t.Context(), &iapsetup.ServiceUpdate{Ref: helloRef, Etag: svc.Etag, EnableIAP: true, Source: svc.Source})
	return err
}

func setPolicy(t *testing.T, a *gcp.RunAdapter, _ *iapsetup.Service) error {
	p, err := a.GetIAMPolicy(t.Context(), helloRef)
	if err != nil {
		return err
	}
	_, err = a.SetIAMPolicy(t.Context(), helloRef, p)
	return err
}
