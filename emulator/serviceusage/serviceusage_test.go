package serviceusage_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	su "google.golang.org/api/serviceusage/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/serviceusage"
)

var project = core.Project{ID: "demo-project", Number: 123456789012}

func newClient(t *testing.T) (*su.APIService, *serviceusage.Server, *core.Core) {
	t.Helper()
	c := core.New("", project)
	s := serviceusage.New(c)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	cl, err := su.NewService(context.Background(), option.WithEndpoint(ts.URL+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	return cl, s, c
}

func identityOf(t *testing.T, op *su.Operation) su.ServiceIdentity {
	t.Helper()
	var id su.ServiceIdentity
	if err := json.Unmarshal(op.Response, &id); err != nil {
		t.Fatalf("decoding response %s: %v", op.Response, err)
	}
	return id
}

func TestGenerateServiceIdentity(t *testing.T) {
	tests := []struct {
		name      string
		parent    string
		wantEmail string
	}{
		{"iap by number", "projects/123456789012/services/iap.googleapis.com", "service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"},
		{"iap by id", "projects/demo-project/services/iap.googleapis.com", "service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"},
		{"cloud run", "projects/demo-project/services/run.googleapis.com", "service-123456789012@serverless-robot-prod.iam.gserviceaccount.com"},
		{"service without agent", "projects/demo-project/services/example.googleapis.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, _, _ := newClient(t)
			op, err := cl.Services.GenerateServiceIdentity(tt.parent).Do()
			if err != nil {
				t.Fatalf("GenerateServiceIdentity: %v", err)
			}
			if !op.Done || op.Name == "" {
				t.Errorf("operation = {name %q done %v}, want a named done operation", op.Name, op.Done)
			}
			id := identityOf(t, op)
			if id.Email != tt.wantEmail {
				t.Errorf("email = %q, want %q", id.Email, tt.wantEmail)
			}
			if (id.UniqueId != "") != (tt.wantEmail != "") {
				t.Errorf("uniqueId = %q; want one exactly when there is an email", id.UniqueId)
			}
			var raw map[string]any
			_ = json.Unmarshal(op.Response, &raw)
			if raw["@type"] != serviceusage.ServiceIdentityType {
				t.Errorf("response @type = %v, want %s", raw["@type"], serviceusage.ServiceIdentityType)
			}
		})
	}
}

func TestGenerateServiceIdentityIsStableAndAuditedOnce(t *testing.T) {
	cl, s, c := newClient(t)
	if email, created := s.Identity("demo-project", "iap.googleapis.com"); created || email == "" {
		t.Fatalf("Identity before = (%q, %v), want the email and not created", email, created)
	}
	var ids []su.ServiceIdentity
	for range 2 {
		op, err := cl.Services.GenerateServiceIdentity("projects/demo-project/services/iap.googleapis.com").Do()
		if err != nil {
			t.Fatalf("GenerateServiceIdentity: %v", err)
		}
		ids = append(ids, identityOf(t, op))
	}
	if diff := cmp.Diff(ids[0], ids[1]); diff != "" {
		t.Errorf("second identity differs (-first +second):\n%s", diff)
	}
	email, created := s.Identity("123456789012", "iap.googleapis.com")
	if !created || email != ids[0].Email {
		t.Errorf("Identity after = (%q, %v), want (%q, true)", email, created, ids[0].Email)
	}
	entries := c.Audit.Entries()
	if len(entries) != 1 {
		t.Fatalf("audit entries = %d, want 1", len(entries))
	}
	p := entries[0].ProtoPayload
	got := []string{p.ServiceName, p.MethodName, p.ResourceName, entries[0].LogName}
	want := []string{
		"serviceusage.googleapis.com",
		"google.api.serviceusage.v1beta1.ServiceUsage.GenerateServiceIdentity",
		"projects/123456789012/services/iap.googleapis.com",
		"projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit entry (-want +got):\n%s", diff)
	}
	calls := c.Stats.Snapshot().Calls
	if calls[serviceusage.KeyGenerate] != 2 {
		t.Errorf("calls of %s = %d, want 2", serviceusage.KeyGenerate, calls[serviceusage.KeyGenerate])
	}
}

func TestOperationNotDoneUntilPolled(t *testing.T) {
	cl, s, _ := newClient(t)
	s.SetOperationPolls(2)
	op, err := cl.Services.GenerateServiceIdentity("projects/demo-project/services/iap.googleapis.com").Do()
	if err != nil {
		t.Fatalf("GenerateServiceIdentity: %v", err)
	}
	if op.Done || op.Response != nil {
		t.Fatalf("operation done=%v response=%s, want not done", op.Done, op.Response)
	}
	var dones []bool
	for range 3 {
		got, err := cl.Operations.Get(op.Name).Do()
		if err != nil {
			t.Fatalf("Operations.Get(%s): %v", op.Name, err)
		}
		dones = append(dones, got.Done)
		if got.Done {
			if id := identityOf(t, got); id.Email != "service-123456789012@gcp-sa-iap.iam.gserviceaccount.com" {
				t.Errorf("email = %q", id.Email)
			}
		}
		if _, created := s.Identity("demo-project", "iap.googleapis.com"); created != got.Done {
			t.Errorf("Identity created = %v while operation done = %v", created, got.Done)
		}
	}
	if diff := cmp.Diff([]bool{false, true, true}, dones); diff != "" {
		t.Errorf("done per poll (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		call     func(cl *su.APIService) error
		wantCode int
	}{
		{"unknown project", func(cl *su.APIService) error {
			_, err := cl.Services.GenerateServiceIdentity("projects/nope/services/iap.googleapis.com").Do()
			return err
		}, http.StatusForbidden},
		{"folder parent", func(cl *su.APIService) error {
			_, err := cl.Services.GenerateServiceIdentity("folders/123/services/iap.googleapis.com").Do()
			return err
		}, http.StatusBadRequest},
		{"malformed parent", func(cl *su.APIService) error {
			_, err := cl.Services.GenerateServiceIdentity("projects/demo-project/iap.googleapis.com").Do()
			return err
		}, http.StatusBadRequest},
		{"unknown operation", func(cl *su.APIService) error {
			_, err := cl.Operations.Get("operations/does-not-exist").Do()
			return err
		}, http.StatusNotFound},
		{"unserved method", func(cl *su.APIService) error {
			_, err := cl.Services.Get("projects/demo-project/services/iap.googleapis.com").Do()
			return err
		}, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, _, c := newClient(t)
			err := tt.call(cl)
			var gerr *googleapi.Error
			if !errors.As(err, &gerr) {
				t.Fatalf("error = %v, want *googleapi.Error", err)
			}
			if gerr.Code != tt.wantCode {
				t.Errorf("code = %d (%v), want %d", gerr.Code, gerr, tt.wantCode)
			}
			if n := len(c.Audit.Entries()); n != 0 {
				t.Errorf("audit entries = %d, want 0", n)
			}
		})
	}
}

func TestInjectedFault(t *testing.T) {
	cl, s, c := newClient(t)
	if err := c.Faults.FailNext(serviceusage.KeyGenerate, 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	_, err := cl.Services.GenerateServiceIdentity("projects/demo-project/services/iap.googleapis.com").Do()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != http.StatusServiceUnavailable {
		t.Fatalf("error = %v, want 503", err)
	}
	if _, created := s.Identity("demo-project", "iap.googleapis.com"); created {
		t.Error("identity created by a failed call")
	}
	if _, err := cl.Services.GenerateServiceIdentity("projects/demo-project/services/iap.googleapis.com").Do(); err != nil {
		t.Fatalf("retry: %v", err)
	}
}
