package iapapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/api/googleapi"
	iap "google.golang.org/api/iap/v1"
	"google.golang.org/api/option"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/iapapi"
)

var project = core.Project{ID: "demo-project", Number: 123456789012}

// fakeCompute is a backend-service table keyed by project/region/name.
type fakeCompute struct {
	mu       sync.Mutex
	services map[string]uint64
}

func (f *fakeCompute) LookupBackendService(project, region, idOrName string) (string, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, id := range f.services {
		p, rest, _ := strings.Cut(k, "|")
		r, name, _ := strings.Cut(rest, "|")
		if p != project || r != region {
			continue
		}
		if name == idOrName || strconv.FormatUint(id, 10) == idOrName {
			return name, id, true
		}
	}
	return "", 0, false
}

func (f *fakeCompute) set(key string, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == 0 {
		delete(f.services, key)
		return
	}
	f.services[key] = id
}

type fakeRun map[string]bool

func (f fakeRun) ServiceExists(project, region, name string) bool {
	return f[project+"|"+region+"|"+name]
}

type env struct {
	cl      *iap.Service
	srv     *iapapi.Server
	c       *core.Core
	compute *fakeCompute
}

func newEnv(t *testing.T) env {
	t.Helper()
	c := core.New("", project)
	fc := &fakeCompute{services: map[string]uint64{
		"demo-project||web-backend":                  1111111111111111111,
		"demo-project|europe-west1|regional-backend": 2222222222222222222,
	}}
	run := fakeRun{"demo-project|us-central1|hello": true}
	s := iapapi.New(c, fc, run)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	cl, err := iap.NewService(context.Background(), option.WithEndpoint(ts.URL+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	return env{cl: cl, srv: s, c: c, compute: fc}
}

const accessor = "roles/iap.httpsResourceAccessor"

func accessorPolicy(etag string, members ...string) *iap.Policy {
	return &iap.Policy{Etag: etag, Bindings: []*iap.Binding{{Role: accessor, Members: members}}}
}

func set(cl *iap.Service, resource string, p *iap.Policy) (*iap.Policy, error) {
	return cl.V1.SetIamPolicy(resource, &iap.SetIamPolicyRequest{Policy: p}).Do()
}

func get(cl *iap.Service, resource string) (*iap.Policy, error) {
	return cl.V1.GetIamPolicy(resource, &iap.GetIamPolicyRequest{}).Do()
}

var ignoreServer = cmpopts.IgnoreFields(iap.Policy{}, "ServerResponse")

func TestSetThenGetAcrossNameForms(t *testing.T) {
	tests := []struct {
		name     string
		setOn    string
		readFrom []string
	}{
		{"project-wide", "projects/123456789012/iap_web", []string{"projects/demo-project/iap_web"}},
		{"web type", "projects/demo-project/iap_web/compute", []string{"projects/123456789012/iap_web/compute"}},
		{"global backend by name", "projects/123456789012/iap_web/compute/services/web-backend", []string{
			"projects/123456789012/iap_web/compute/services/1111111111111111111",
			"projects/demo-project/iap_web/compute/services/web-backend",
		}},
		{"regional backend by id", "projects/demo-project/iap_web/compute-europe-west1/services/2222222222222222222", []string{
			"projects/123456789012/iap_web/compute-europe-west1/services/regional-backend",
		}},
		{"cloud run", "projects/demo-project/iap_web/cloud_run-us-central1/services/hello", []string{
			"projects/123456789012/iap_web/cloud_run-us-central1/services/hello",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			before, err := get(e.cl, tt.setOn)
			if err != nil {
				t.Fatalf("GetIamPolicy: %v", err)
			}
			if before.Etag != "ACAB" || len(before.Bindings) != 0 {
				t.Errorf("initial policy = %+v, want empty with etag ACAB", before)
			}
			got, err := set(e.cl, tt.setOn, accessorPolicy(before.Etag, "user:b@example.com", "user:a@example.com", "user:a@example.com"))
			if err != nil {
				t.Fatalf("SetIamPolicy: %v", err)
			}
			want := &iap.Policy{Version: 1, Etag: got.Etag, Bindings: []*iap.Binding{{Role: accessor, Members: []string{"user:a@example.com", "user:b@example.com"}}}}
			if diff := cmp.Diff(want, got, ignoreServer); diff != "" {
				t.Errorf("SetIamPolicy response (-want +got):\n%s", diff)
			}
			if got.Etag == before.Etag || got.Etag == "" {
				t.Errorf("etag after set = %q, want a new one", got.Etag)
			}
			for _, other := range tt.readFrom {
				read, err := get(e.cl, other)
				if err != nil {
					t.Fatalf("GetIamPolicy(%s): %v", other, err)
				}
				if diff := cmp.Diff(got, read, ignoreServer); diff != "" {
					t.Errorf("GetIamPolicy(%s) (-set +read):\n%s", other, diff)
				}
			}
			entries := e.c.Audit.Entries()
			if len(entries) != 1 {
				t.Fatalf("audit entries = %d, want 1", len(entries))
			}
			p := entries[0].ProtoPayload
			gotAudit := []string{p.ServiceName, p.MethodName, p.ResourceName}
			wantAudit := []string{"iap.googleapis.com", "google.cloud.iap.v1.IdentityAwareProxyAdminService.SetIamPolicy", tt.setOn}
			if diff := cmp.Diff(wantAudit, gotAudit); diff != "" {
				t.Errorf("audit entry (-want +got):\n%s", diff)
			}
			if p.Response["etag"] != got.Etag {
				t.Errorf("audit response etag = %v, want %s", p.Response["etag"], got.Etag)
			}
		})
	}
}

func TestEtagRules(t *testing.T) {
	const res = "projects/demo-project/iap_web/cloud_run-us-central1/services/hello"
	e := newEnv(t)
	first, err := set(e.cl, res, accessorPolicy("", "user:a@example.com"))
	if err != nil {
		t.Fatalf("blind set: %v", err)
	}
	second, err := set(e.cl, res, accessorPolicy(first.Etag, "user:b@example.com"))
	if err != nil {
		t.Fatalf("set with current etag: %v", err)
	}
	if second.Etag == first.Etag {
		t.Fatal("etag unchanged by a write")
	}
	_, err = set(e.cl, res, accessorPolicy(first.Etag, "user:c@example.com"))
	assertCode(t, err, http.StatusConflict, "ABORTED")
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Message != iapapi.ConcurrentChangeMessage {
		t.Errorf("message = %q, want %q", gerr.Message, iapapi.ConcurrentChangeMessage)
	}
	// Blind overwrite still wins.
	if _, err := set(e.cl, res, accessorPolicy("", "user:d@example.com")); err != nil {
		t.Fatalf("blind overwrite: %v", err)
	}
	got, err := get(e.cl, res)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"user:d@example.com"}, got.Bindings[0].Members); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	var failed int
	for _, en := range e.c.Audit.Entries() {
		if en.Severity == "ERROR" {
			failed++
		}
	}
	if n := len(e.c.Audit.Entries()); n != 4 || failed != 1 {
		t.Errorf("audit entries = %d (%d failed), want 4: one per accepted set and one (ERROR) for the stale etag", n, failed)
	}
}

func TestForcedRace(t *testing.T) {
	const res = "projects/demo-project/iap_web/compute/services/web-backend"
	e := newEnv(t)
	cur, err := get(e.cl, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.Faults.ForceRaces(iapapi.KeySetIamPolicy, 1); err != nil {
		t.Fatal(err)
	}
	_, err = set(e.cl, res, accessorPolicy(cur.Etag, "user:a@example.com"))
	assertCode(t, err, http.StatusConflict, "ABORTED")
	cur, err = get(e.cl, res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set(e.cl, res, accessorPolicy(cur.Etag, "user:a@example.com")); err != nil {
		t.Fatalf("retry after race: %v", err)
	}
}

func TestPolicyFollowsResourceLifetime(t *testing.T) {
	const byName = "projects/demo-project/iap_web/compute/services/web-backend"
	e := newEnv(t)
	if _, err := set(e.cl, byName, accessorPolicy("", "user:a@example.com")); err != nil {
		t.Fatal(err)
	}
	e.compute.set("demo-project||web-backend", 0)
	_, err := get(e.cl, byName)
	assertCode(t, err, http.StatusNotFound, "NOT_FOUND")
	// Re-created with a new id: a fresh, empty policy.
	e.compute.set("demo-project||web-backend", 3333333333333333333)
	got, err := get(e.cl, byName)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Bindings) != 0 || got.Etag != "ACAB" {
		t.Errorf("policy of re-created backend = %+v, want empty", got)
	}
}

func TestErrors(t *testing.T) {
	const res = "projects/demo-project/iap_web/compute/services/web-backend"
	tests := []struct {
		name       string
		call       func(cl *iap.Service) error
		wantStatus int
		wantCode   string
	}{
		{"unknown backend", func(cl *iap.Service) error {
			_, err := get(cl, "projects/demo-project/iap_web/compute/services/nope")
			return err
		}, 404, "NOT_FOUND"},
		{"backend in other region", func(cl *iap.Service) error {
			_, err := get(cl, "projects/demo-project/iap_web/compute-us-east1/services/regional-backend")
			return err
		}, 404, "NOT_FOUND"},
		{"unknown cloud run service", func(cl *iap.Service) error {
			_, err := set(cl, "projects/demo-project/iap_web/cloud_run-us-central1/services/nope", accessorPolicy("", "user:a@example.com"))
			return err
		}, 404, "NOT_FOUND"},
		{"cloud-run with a dash", func(cl *iap.Service) error {
			_, err := get(cl, "projects/demo-project/iap_web/cloud-run-us-central1/services/hello")
			return err
		}, 404, "NOT_FOUND"},
		{"unknown project", func(cl *iap.Service) error {
			_, err := get(cl, "projects/nope/iap_web")
			return err
		}, 403, "PERMISSION_DENIED"}, // as Google: core.UnknownProject
		{"member without prefix", func(cl *iap.Service) error {
			_, err := set(cl, res, accessorPolicy("", "a@example.com"))
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"user without email", func(cl *iap.Service) error {
			_, err := set(cl, res, accessorPolicy("", "user:"))
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"bad role", func(cl *iap.Service) error {
			_, err := set(cl, res, &iap.Policy{Bindings: []*iap.Binding{{Role: "iap.httpsResourceAccessor", Members: []string{"user:a@example.com"}}}})
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"condition needs version 3", func(cl *iap.Service) error {
			_, err := set(cl, res, &iap.Policy{Bindings: []*iap.Binding{{
				Role: accessor, Members: []string{"user:a@example.com"},
				Condition: &iap.Expr{Expression: `request.path.startsWith("/admin")`, Title: "admin"},
			}}})
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"bad etag", func(cl *iap.Service) error {
			_, err := set(cl, res, accessorPolicy("not base64!", "user:a@example.com"))
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"missing policy", func(cl *iap.Service) error {
			_, err := cl.V1.SetIamPolicy(res, &iap.SetIamPolicyRequest{}).Do()
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"bad requested version", func(cl *iap.Service) error {
			_, err := cl.V1.GetIamPolicy(res, &iap.GetIamPolicyRequest{Options: &iap.GetPolicyOptions{RequestedPolicyVersion: 2}}).Do()
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"wildcard permission", func(cl *iap.Service) error {
			_, err := cl.V1.TestIamPermissions(res, &iap.TestIamPermissionsRequest{Permissions: []string{"iap.*"}}).Do()
			return err
		}, 400, "INVALID_ARGUMENT"},
		{"unserved iapSettings", func(cl *iap.Service) error {
			_, err := cl.V1.GetIapSettings(res).Do()
			return err
		}, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			assertCode(t, tt.call(e.cl), tt.wantStatus, tt.wantCode)
			// A refused setIamPolicy on a resource that resolves is logged
			// as a failed call (#14 item 5); nothing else writes an entry.
			for _, en := range e.c.Audit.Entries() {
				if en.ProtoPayload.MethodName != iapapi.MethodSetIamPolicy || tt.wantStatus != 400 && tt.wantStatus != 409 {
					t.Errorf("audit entry for %s (%d)", en.ProtoPayload.MethodName, tt.wantStatus)
				}
				if en.Severity != "ERROR" || en.ProtoPayload.Status == nil || en.ProtoPayload.Status.Code == 0 {
					t.Errorf("entry severity %s status %+v, want ERROR and a status", en.Severity, en.ProtoPayload.Status)
				}
			}
		})
	}
}

func TestConditionalBindingVersion3(t *testing.T) {
	const res = "projects/demo-project/iap_web/cloud_run-us-central1/services/hello"
	e := newEnv(t)
	p := &iap.Policy{Version: 3, Bindings: []*iap.Binding{{
		Role: accessor, Members: []string{"group:eng@example.com"},
		Condition: &iap.Expr{Expression: `request.path.startsWith("/admin")`, Title: "admin"},
	}}}
	got, err := set(e.cl, res, p)
	if err != nil {
		t.Fatalf("SetIamPolicy: %v", err)
	}
	if got.Version != 3 || got.Bindings[0].Condition == nil || got.Bindings[0].Condition.Title != "admin" {
		t.Errorf("policy = %+v, want version 3 with the condition", got)
	}
}

func TestTestIamPermissions(t *testing.T) {
	const res = "projects/demo-project/iap_web/cloud_run-us-central1/services/hello"
	perms := []string{"iap.webServices.getIamPolicy", "iap.webServices.setIamPolicy", "run.services.get"}
	tests := []struct {
		name   string
		filter func(principal, resource, permission string) bool
		want   []string
	}{
		{"default grants iap permissions", nil, []string{"iap.webServices.getIamPolicy", "iap.webServices.setIamPolicy"}},
		{"filter", func(principal, resource, permission string) bool {
			return principal == core.DefaultPrincipal && resource == res && permission == "iap.webServices.getIamPolicy"
		}, []string{"iap.webServices.getIamPolicy"}},
		{"nothing granted", func(string, string, string) bool { return false }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetPermissionFilter(tt.filter)
			got, err := e.cl.V1.TestIamPermissions(res, &iap.TestIamPermissionsRequest{Permissions: perms}).Do()
			if err != nil {
				t.Fatalf("TestIamPermissions: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Permissions); diff != "" {
				t.Errorf("permissions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCallsAreCounted(t *testing.T) {
	const res = "projects/demo-project/iap_web"
	e := newEnv(t)
	_, _ = get(e.cl, res)
	_, _ = set(e.cl, res, accessorPolicy("", "user:a@example.com"))
	_, _ = e.cl.V1.TestIamPermissions(res, &iap.TestIamPermissionsRequest{Permissions: []string{"iap.web.getIamPolicy"}}).Do()
	want := map[string]int64{iapapi.KeyGetIamPolicy: 1, iapapi.KeySetIamPolicy: 1, iapapi.KeyTestIamPermission: 1}
	if diff := cmp.Diff(want, e.c.Stats.Snapshot().Calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func assertCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("error = %v, want *googleapi.Error %d", err, status)
	}
	if gerr.Code != status {
		t.Errorf("HTTP status = %d (%v), want %d", gerr.Code, gerr, status)
	}
	if code != "" && !strings.Contains(gerr.Body, `"status":"`+code+`"`) {
		t.Errorf("body %s lacks status %s", gerr.Body, code)
	}
}
