package emulator_test

import (
	"net/http"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/googleapi"
	iap "google.golang.org/api/iap/v1"
	"google.golang.org/api/option"

	"github.com/iapguard/iapguard/emulator"
)

// Cloud Run v2 REST binds query parameters as Google's HTTP transcoding
// does: a value that does not parse as the field's type is 400
// INVALID_ARGUMENT "Invalid value at 'FIELD' (TYPE_...), "V"" (never
// read as false or 0: a "validateOnly=1" delete must not delete), a
// parameter that names no field of the request is 400 "Cannot bind query
// parameter", and the proto spelling of a field binds like the JSON one.
// The official REST client's own parameters all bind.
func TestRunRESTQueryParameters(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{})
	ctx := t.Context()
	svc := e.service(t, "web")
	base := "http://" + e.emu.Addr() + "/v2/"
	parent := "projects/" + strictProject + "/locations/" + strictRegion
	do := func(method, path, body string) error {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return googleapi.CheckResponse(resp)
	}
	const newSvc = `{"template":{"containers":[{"image":"us-docker.pkg.dev/cloudrun/container/hello"}]}}`
	for _, tc := range []struct {
		name, method, path, body, msg string
	}{
		{"create validateOnly not a bool", "POST", parent + "/services?serviceId=maybe&validateOnly=maybe", newSvc,
			`Invalid value at 'validate_only' (TYPE_BOOL), "maybe"`},
		{"delete validateOnly=1", "DELETE", svc + "?validateOnly=1", "",
			`Invalid value at 'validate_only' (TYPE_BOOL), "1"`},
		{"update allowMissing not a bool", "PATCH", svc + "?allowMissing=yes", `{"labels":{"a":"b"}}`,
			`Invalid value at 'allow_missing' (TYPE_BOOL), "yes"`},
		{"list pageSize not a number", "GET", parent + "/services?pageSize=ten", "",
			`Invalid value at 'page_size' (TYPE_INT32), "ten"`},
		{"list showDeleted not a bool", "GET", parent + "/services?showDeleted=TRUE!", "",
			`Invalid value at 'show_deleted' (TYPE_BOOL), "TRUE!"`},
		{"getIamPolicy version not a number", "GET", svc + ":getIamPolicy?options.requestedPolicyVersion=three", "",
			`Invalid value at 'options.requested_policy_version' (TYPE_INT32), "three"`},
		{"list operations pageSize out of range", "GET", parent + "/operations?pageSize=99999999999", "",
			`Invalid value at 'page_size' (TYPE_INT32), "99999999999"`},
		{"unknown parameter on get", "GET", svc + "?showDeleted=true", "",
			`Invalid JSON payload received. Unknown name "showDeleted": Cannot bind query parameter. Field 'showDeleted' could not be found in request message.`},
		{"unknown parameter on create", "POST", parent + "/services?serviceId=x&validate=true", newSvc,
			`Invalid JSON payload received. Unknown name "validate": Cannot bind query parameter. Field 'validate' could not be found in request message.`},
		{"unknown parameter on delete", "DELETE", svc + "?force=true", "",
			`Invalid JSON payload received. Unknown name "force": Cannot bind query parameter. Field 'force' could not be found in request message.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantREST(t, do(tc.method, tc.path, tc.body), 400, "INVALID_ARGUMENT", tc.msg)
		})
	}
	// v1 projects.locations.list (how iapguard finds regions): the same
	// binding, and a filter is refused rather than ignored.
	v1 := "http://" + e.emu.Addr() + "/v1/projects/" + strictProject + "/locations"
	for q, msg := range map[string]string{
		"?pageSize=ten":        `Invalid value at 'page_size' (TYPE_INT32), "ten"`,
		"?locationId=us-east1": `Invalid JSON payload received. Unknown name "locationId": Cannot bind query parameter. Field 'locationId' could not be found in request message.`,
		"?filter=labels.a%3Db": `filter "labels.a=b" is not supported by the emulator`,
	} {
		resp, err := http.Get(v1 + q)
		if err != nil {
			t.Fatal(err)
		}
		wantREST(t, googleapi.CheckResponse(resp), 400, "INVALID_ARGUMENT", msg)
		resp.Body.Close()
	}
	if resp, err := http.Get(v1 + "?pageSize=2&alt=json"); err != nil || resp.StatusCode != 200 {
		t.Errorf("locations.list with pageSize = %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// None of the refused calls changed anything.
	rc, err := run.NewServicesRESTClient(ctx, option.WithEndpoint("http://"+e.emu.Addr()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	got, err := rc.GetService(ctx, &runpb.GetServiceRequest{Name: svc})
	if err != nil || len(got.GetLabels()) != 0 {
		t.Fatalf("service after refused calls = %v, %v; want it unchanged", got, err)
	}
	for _, id := range []string{"maybe", "x"} {
		if _, err := rc.GetService(ctx, &runpb.GetServiceRequest{Name: parent + "/services/" + id}); err == nil {
			t.Errorf("a refused create made service %s", id)
		}
	}
	// The proto spelling binds: validate_only=true validates only.
	if err := do("POST", parent+"/services?service_id=snake&validate_only=true", newSvc); err != nil {
		t.Fatalf("create with validate_only=true: %v", err)
	}
	if _, err := rc.GetService(ctx, &runpb.GetServiceRequest{Name: parent + "/services/snake"}); err == nil {
		t.Error("validate_only=true (proto spelling) created the service")
	}
	// System parameters are not the method's and are accepted.
	if err := do("GET", svc+"?alt=json&prettyPrint=false&$.xgafv=2&fields=name", ""); err != nil {
		t.Errorf("get with system parameters: %v", err)
	}
	// Every parameter the official REST client sends binds.
	it := rc.ListServices(ctx, &runpb.ListServicesRequest{Parent: parent, PageSize: 5, ShowDeleted: true})
	if _, err := it.Next(); err != nil {
		t.Errorf("ListServices with pageSize and showDeleted: %v", err)
	}
	oit := rc.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: parent, PageSize: 5, Filter: "done=true", ReturnPartialSuccess: true})
	if _, err := oit.Next(); err != nil {
		t.Errorf("ListOperations with every parameter: %v", err)
	}
	if _, err := rc.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: svc, Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}}); err != nil {
		t.Errorf("GetIamPolicy with a requested version: %v", err)
	}
	dop, err := rc.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: svc, ValidateOnly: true, Etag: got.GetEtag()})
	if err != nil {
		t.Fatalf("DeleteService validateOnly with etag: %v", err)
	}
	if _, err := rc.GetService(ctx, &runpb.GetServiceRequest{Name: svc}); err != nil {
		t.Errorf("validate-only delete (%s) deleted the service: %v", dop.Name(), err)
	}
}

// IAP and Service Usage take every request field from the path or the
// body, so a query parameter other than Google's system ones (alt,
// prettyPrint, fields, ...) binds to nothing: 400 "Cannot bind query
// parameter", and the call does nothing. The official clients' own
// parameters are system ones.
func TestIAPAndServiceUsageQueryParameters(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t, emulator.Options{})
	ctx := t.Context()
	base := "http://" + e.emu.Addr() + "/"
	do := func(method, path, body string) error {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return googleapi.CheckResponse(resp)
	}
	unknown := func(name string) string {
		return `Invalid JSON payload received. Unknown name "` + name + `": Cannot bind query parameter. Field '` + name + `' could not be found in request message.`
	}
	before := len(e.emu.Core.Audit.Entries())
	wantREST(t, do("POST", "v1/projects/123456789012/iap_web:setIamPolicy?updateMask=bindings",
		`{"policy":{"bindings":[{"role":"roles/iap.httpsResourceAccessor","members":["user:a@example.com"]}]}}`),
		400, "INVALID_ARGUMENT", unknown("updateMask"))
	wantREST(t, do("POST", "v1/projects/123456789012/iap_web:getIamPolicy?options.requestedPolicyVersion=3", `{}`),
		400, "INVALID_ARGUMENT", unknown("options.requestedPolicyVersion"))
	wantREST(t, do("POST", "v1beta1/projects/"+strictProject+"/services/iap.googleapis.com:generateServiceIdentity?force=true", ""),
		400, "INVALID_ARGUMENT", unknown("force"))
	if n := len(e.emu.Core.Audit.Entries()); n != before {
		t.Errorf("refused calls wrote %d audit entries, want none", n-before)
	}
	p, err := e.iap.V1.GetIamPolicy("projects/123456789012/iap_web", &iap.GetIamPolicyRequest{}).Context(ctx).Do()
	if err != nil || len(p.Bindings) != 0 {
		t.Errorf("IAP policy after a refused setIamPolicy = %+v, %v; want none set", p, err)
	}
	op, err := e.su.Services.GenerateServiceIdentity("projects/" + strictProject + "/services/iap.googleapis.com").Context(ctx).Do()
	if err != nil {
		t.Fatalf("generateServiceIdentity with the official client: %v", err)
	}
	wantREST(t, do("GET", "v1beta1/"+op.Name+"?name=x", ""), 400, "INVALID_ARGUMENT", unknown("name"))
	if _, err := e.su.Operations.Get(op.Name).Context(ctx).Do(); err != nil {
		t.Errorf("operations.get with the official client: %v", err)
	}
	if err := do("POST", "v1/projects/123456789012/iap_web:getIamPolicy?alt=json&prettyPrint=false&$.xgafv=2", `{}`); err != nil {
		t.Errorf("getIamPolicy with system parameters: %v", err)
	}
}
