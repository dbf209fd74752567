package emulator_test

// Contract tests for the places where the emulator is as strict as Google
// (issue #14), with the official clients over real loopback connections.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/googleapi"
	iap "google.golang.org/api/iap/v1"
	"google.golang.org/api/option"
	serviceusage "google.golang.org/api/serviceusage/v1beta1"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/internal/demo"
)

const (
	strictProject = "demo-project"
	strictRegion  = "us-central1"
	strictAgent   = "service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"
)

type strictEnv struct {
	emu *emulator.Emulator
	cl  *demo.Clients
	iap *iap.Service
	su  *serviceusage.APIService
}

func newStrictEnv(t *testing.T, opts emulator.Options) *strictEnv {
	t.Helper()
	emu, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	ctx := t.Context()
	cl, err := demo.Dial(ctx, emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ic, err := iap.NewService(ctx, option.WithEndpoint("http://"+emu.Addr()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	su, err := serviceusage.NewService(ctx, option.WithEndpoint("http://"+emu.Addr()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return &strictEnv{emu: emu, cl: cl, iap: ic, su: su}
}

func (e *strictEnv) service(t *testing.T, name string) string {
	t.Helper()
	if _, err := e.cl.CreateService(t.Context(), strictProject, strictRegion, demo.ServiceSpec{Name: name}); err != nil {
		t.Fatal(err)
	}
	return "projects/" + strictProject + "/locations/" + strictRegion + "/services/" + name
}

func (e *strictEnv) setRun(ctx context.Context, res, role string, members ...string) error {
	_, err := e.cl.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{
		Bindings: []*iampb.Binding{{Role: role, Members: members}}}})
	return err
}

func (e *strictEnv) setIAP(ctx context.Context, res, role string, members ...string) error {
	_, err := e.iap.V1.SetIamPolicy(res, &iap.SetIamPolicyRequest{Policy: &iap.Policy{
		Bindings: []*iap.Binding{{Role: role, Members: members}}}}).Context(ctx).Do()
	return err
}

// wantGRPC checks a gRPC error's code and exact message.
func wantGRPC(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if st, _ := status.FromError(err); st.Code() != code || st.Message() != msg {
		t.Errorf("error = %v, want %s %q", err, code, msg)
	}
}

// wantREST checks a REST error's HTTP status, status name and exact message.
func wantREST(t *testing.T, err error, httpCode int, statusName, msg string) {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error = %v, want a googleapi.Error", err)
	}
	if ge.Code != httpCode || ge.Message != msg || !strings.Contains(string(ge.Body), `"status": "`+statusName+`"`) && !strings.Contains(string(ge.Body), `"status":"`+statusName+`"`) {
		t.Errorf("error = %d %q (body %s), want %d %s %q", ge.Code, ge.Message, ge.Body, httpCode, statusName, msg)
	}
}

// Item 1: IAM rejects members that do not exist, on Cloud Run and IAP.
func TestStrictUnknownServiceAccountMember(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{ServiceAccounts: []string{"ci@demo-project.iam.gserviceaccount.com"}})
	ctx := t.Context()
	res := e.service(t, "hello")
	const ghost = "ghost@demo-project.iam.gserviceaccount.com"
	wantGRPC(t, e.setRun(ctx, res, "roles/run.invoker", "serviceAccount:"+ghost), codes.InvalidArgument,
		"Service account "+ghost+" does not exist.")
	iapRes := "projects/123456789012/iap_web/cloud_run-" + strictRegion + "/services/hello"
	wantREST(t, e.setIAP(ctx, iapRes, "roles/iap.httpsResourceAccessor", "serviceAccount:"+ghost), 400, "INVALID_ARGUMENT",
		"Service account "+ghost+" does not exist.")
	// Known accounts, the Compute default account and users pass.
	for _, m := range []string{"serviceAccount:ci@demo-project.iam.gserviceaccount.com",
		"serviceAccount:123456789012-compute@developer.gserviceaccount.com", "user:a@example.com"} {
		if err := e.setRun(ctx, res, "roles/run.invoker", m); err != nil {
			t.Errorf("SetIamPolicy with %s: %v", m, err)
		}
	}
}

// Item 1: a service agent generateServiceIdentity just created stays
// unknown to IAM for the propagation window, then binds.
func TestStrictNewAgentPropagationWindow(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{IdentityPropagation: time.Hour})
	var mu sync.Mutex
	now := time.Now()
	e.emu.Core.SetNow(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	ctx := t.Context()
	res := e.service(t, "hello")
	agent := "serviceAccount:" + strictAgent
	// Before it was ever generated, the agent does not exist either.
	wantGRPC(t, e.setRun(ctx, res, "roles/run.invoker", agent), codes.InvalidArgument, "Service account "+strictAgent+" does not exist.")
	if _, err := e.su.Services.GenerateServiceIdentity("projects/" + strictProject + "/services/iap.googleapis.com").Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	wantGRPC(t, e.setRun(ctx, res, "roles/run.invoker", agent), codes.InvalidArgument, "Service account "+strictAgent+" does not exist.")
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if err := e.setRun(ctx, res, "roles/run.invoker", agent); err != nil {
		t.Errorf("SetIamPolicy after the propagation window: %v", err)
	}
}

// Item 2: roles that do not apply to the resource are refused.
func TestStrictRolesOnTheWrongResource(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{})
	ctx := t.Context()
	res := e.service(t, "hello")
	for _, role := range []string{"roles/does.notExist", "roles/iap.httpsResourceAccessor"} {
		wantGRPC(t, e.setRun(ctx, res, role, "user:a@example.com"), codes.InvalidArgument, "Role "+role+" is not supported for this resource.")
	}
	iapRes := "projects/123456789012/iap_web/cloud_run-" + strictRegion + "/services/hello"
	wantREST(t, e.setIAP(ctx, iapRes, "roles/run.invoker", "user:a@example.com"), 400, "INVALID_ARGUMENT",
		"Role roles/run.invoker is not supported for this resource.")
	for _, role := range []string{"roles/run.invoker", "roles/run.developer", "roles/owner", "projects/demo-project/roles/custom"} {
		if err := e.setRun(ctx, res, role, "user:a@example.com"); err != nil {
			t.Errorf("SetIamPolicy with %s: %v", role, err)
		}
	}
	if err := e.setIAP(ctx, iapRes, "roles/iap.httpsResourceAccessor", "user:a@example.com"); err != nil {
		t.Errorf("IAP SetIamPolicy with the accessor role: %v", err)
	}
}

// Item 7: requested policy versions are honoured, and a version-1 write
// that carries an etag cannot clobber conditional bindings.
func TestStrictPolicyVersions(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{})
	ctx := t.Context()
	res := e.service(t, "hello")
	cond := &expr.Expr{Expression: `request.time < timestamp("2030-01-01T00:00:00Z")`, Title: "until 2030"}
	set, err := e.cl.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Version: 3,
		Bindings: []*iampb.Binding{
			{Role: "roles/run.invoker", Members: []string{"user:a@example.com"}, Condition: cond},
			{Role: "roles/run.viewer", Members: []string{"user:b@example.com"}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int32{0, 1} {
		got, err := e.cl.Run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: res, Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: v}})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetVersion() != 1 || len(got.GetBindings()) != 2 || got.GetBindings()[0].GetCondition() != nil ||
			!strings.HasPrefix(got.GetBindings()[0].GetRole(), "roles/run.invoker_withcond_") {
			t.Errorf("GetIamPolicy(requested %d) = %v, want version 1 with roles/run.invoker_withcond_… and no condition", v, got)
		}
	}
	got, err := e.cl.Run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: res, Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}})
	if err != nil || got.GetVersion() != 3 || got.GetBindings()[0].GetCondition().GetTitle() != "until 2030" {
		t.Errorf("GetIamPolicy(requested 3) = %v, %v; want the conditional binding", got, err)
	}
	// A version-1 read-modify-write (with the etag) would drop the condition: refused.
	_, err = e.cl.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Version: 1, Etag: set.GetEtag(),
		Bindings: []*iampb.Binding{{Role: "roles/run.viewer", Members: []string{"user:b@example.com"}}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("version-1 write with etag over a conditional policy = %v, want INVALID_ARGUMENT", err)
	}
	// A blind write (no etag) may overwrite it, as the Policy docs warn.
	if _, err := e.cl.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{
		Bindings: []*iampb.Binding{{Role: "roles/run.viewer", Members: []string{"user:b@example.com"}}}}}); err != nil {
		t.Errorf("blind version-1 write: %v", err)
	}

	// IAP: the same reading rule.
	iapRes := "projects/123456789012/iap_web/cloud_run-" + strictRegion + "/services/hello"
	if _, err := e.iap.V1.SetIamPolicy(iapRes, &iap.SetIamPolicyRequest{Policy: &iap.Policy{Version: 3, Bindings: []*iap.Binding{{
		Role: "roles/iap.httpsResourceAccessor", Members: []string{"user:a@example.com"},
		Condition: &iap.Expr{Expression: cond.Expression, Title: cond.Title}}}}}).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	ip, err := e.iap.V1.GetIamPolicy(iapRes, &iap.GetIamPolicyRequest{}).Context(ctx).Do()
	if err != nil || ip.Version != 1 || len(ip.Bindings) != 1 || ip.Bindings[0].Condition != nil ||
		!strings.HasPrefix(ip.Bindings[0].Role, "roles/iap.httpsResourceAccessor_withcond_") {
		t.Errorf("IAP getIamPolicy without a requested version = %+v, %v; want version 1 with a _withcond_ role", ip, err)
	}
}

// Cloud Run Admin API v2 is served over REST too, as Google does: the
// official client's REST transport works against the emulator, update
// masks travel in their JSON (camelCase) form, and errors keep their codes.
func TestRunOverREST(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{})
	ctx := t.Context()
	rc, err := run.NewServicesRESTClient(ctx, option.WithEndpoint("http://"+e.emu.Addr()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	parent := "projects/" + strictProject + "/locations/" + strictRegion
	op, err := rc.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent, ServiceId: "rest",
		Service: &runpb.Service{Labels: map[string]string{"team": "web"},
			Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}}})
	if err != nil {
		t.Fatalf("CreateService over REST: %v", err)
	}
	svc, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("waiting over REST: %v", err)
	}
	if svc.GetName() != parent+"/services/rest" || svc.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
		t.Errorf("created service = %s ingress %s", svc.GetName(), svc.GetIngress())
	}
	uop, err := rc.UpdateService(ctx, &runpb.UpdateServiceRequest{
		Service:    &runpb.Service{Name: svc.GetName(), IapEnabled: true, Labels: map[string]string{"iap": "enabled"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"iap_enabled", "labels.iap"}}})
	if err != nil {
		t.Fatalf("UpdateService over REST: %v", err)
	}
	if _, err := uop.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := rc.GetService(ctx, &runpb.GetServiceRequest{Name: svc.GetName()})
	if err != nil || !got.GetIapEnabled() || got.GetLabels()["iap"] != "enabled" || got.GetLabels()["team"] != "web" {
		t.Errorf("GetService over REST = %v, %v; want iapEnabled and both labels", got, err)
	}
	// The same emulator, over gRPC, sees the same service.
	if g, err := e.cl.Run.GetService(ctx, &runpb.GetServiceRequest{Name: svc.GetName()}); err != nil || !g.GetIapEnabled() {
		t.Errorf("GetService over gRPC = %v, %v", g, err)
	}
	wantGRPC(t, func() error {
		_, err := rc.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: svc.GetName(), Policy: &iampb.Policy{
			Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"serviceAccount:ghost@demo-project.iam.gserviceaccount.com"}}}}})
		return err
	}(), codes.InvalidArgument, "Service account ghost@demo-project.iam.gserviceaccount.com does not exist.")
	if _, err := rc.GetService(ctx, &runpb.GetServiceRequest{Name: parent + "/services/missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetService of a missing service over REST = %v, want NOT_FOUND", err)
	}
	it := rc.ListServices(ctx, &runpb.ListServicesRequest{Parent: parent})
	if s, err := it.Next(); err != nil || s.GetName() != svc.GetName() {
		t.Errorf("ListServices over REST = %v, %v", s, err)
	}
}

// Item 5: a Compute operation that fails after it started ends DONE with
// an error, changes nothing, and its "last" audit entry carries the error
// (severity ERROR and status), as on Google.
func TestStrictFailedComputeOperation(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{})
	ctx := t.Context()
	if _, err := e.cl.CreateService(ctx, strictProject, strictRegion, demo.ServiceSpec{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	lb, err := e.cl.BuildLoadBalancer(ctx, strictProject, strictRegion, demo.LBSpec{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.emu.Core.Faults.FailOperations("compute.backendServices.patch", 1, codes.ResourceExhausted); err != nil {
		t.Fatal(err)
	}
	before := len(e.emu.Core.Audit.Entries())
	err = e.cl.SetBackendIAP(ctx, strictProject, lb.BackendService, true)
	if err == nil || !strings.Contains(err.Error(), "operation failed") {
		t.Errorf("patch whose operation fails = %v, want the operation's error", err)
	}
	bs, err := e.cl.Compute.BackendServices.Get(strictProject, lb.BackendService).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if bs.Iap != nil && bs.Iap.Enabled {
		t.Error("the failed operation changed the backend service")
	}
	var last int
	for _, en := range e.emu.Core.Audit.Entries()[before:] {
		if en.Operation == nil || !en.Operation.Last {
			continue
		}
		last++
		if en.Severity != "ERROR" || en.ProtoPayload.Status == nil || en.ProtoPayload.Status.Code != int32(codes.ResourceExhausted) {
			t.Errorf("last entry of the failed operation: severity %s status %+v, want ERROR and code 8", en.Severity, en.ProtoPayload.Status)
		}
	}
	if last != 1 {
		t.Errorf("last entries = %d, want 1", last)
	}
	// The next patch goes through.
	if err := e.cl.SetBackendIAP(ctx, strictProject, lb.BackendService, true); err != nil {
		t.Errorf("patch after the failed operation: %v", err)
	}
}
