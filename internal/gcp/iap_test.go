package gcp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// TestIAPAdapter is the adapter's contract test: the official IAP v1 client
// against the emulated IAP API, on every kind of resource iapguard uses.
func TestIAPAdapter(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	e.SeedService(t, emulatortest.Svc{Name: "hello"})
	e.AddBackend(t, emulatortest.Backend{Name: "web"})
	bs, err := e.Clients.ComputeAdapter.GetBackendService(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Name: "web"})
	if err != nil {
		t.Fatalf("GetBackendService: %v", err)
	}
	a := e.Clients.IAPAdapter
	ctx := t.Context()
	number := "123456789012"
	runRes := "projects/" + number + "/iap_web/cloud_run-" + helloRef.Region + "/services/" + helloRef.Name
	backendRes := "projects/" + number + "/iap_web/compute/services/" + bs.ID

	for _, res := range []string{runRes, backendRes, "projects/" + number + "/iap_web"} {
		t.Run(res, func(t *testing.T) {
			empty, err := a.GetIAPPolicy(ctx, res)
			if err != nil {
				t.Fatalf("GetIAPPolicy: %v", err)
			}
			if len(empty.Bindings) != 0 || len(empty.Etag) == 0 {
				t.Fatalf("GetIAPPolicy(new resource) = %+v, want no bindings and an etag", empty)
			}
			want := &iapsetup.Policy{Version: 3, Etag: empty.Etag, Bindings: []iapsetup.Binding{
				{Role: roleAccessor, Members: []string{"group:web@example.com", "user:a@example.com"}},
				{Role: roleAccessor, Members: []string{"user:b@example.com"},
					Condition: &iapsetup.Condition{Title: "office-hours", Expression: "request.time.getHours('Europe/Berlin') >= 9"}},
			}}
			set, err := a.SetIAPPolicy(ctx, res, want)
			if err != nil {
				t.Fatalf("SetIAPPolicy: %v", err)
			}
			if string(set.Etag) == string(empty.Etag) {
				t.Error("SetIAPPolicy returned the old etag")
			}
			got, err := a.GetIAPPolicy(ctx, res)
			if err != nil {
				t.Fatalf("GetIAPPolicy: %v", err)
			}
			want.Etag = got.Etag
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("policy round trip (-want +got):\n%s", diff)
			}
			// A write with the stale etag loses: ABORTED, a conflict.
			stale := *got
			stale.Etag = empty.Etag
			if _, err := a.SetIAPPolicy(ctx, res, &stale); !gcperr.IsConflict(err) || !errors.Is(err, iapsetup.ErrConflict) || !errors.Is(err, iapsetup.ErrTransient) {
				t.Errorf("SetIAPPolicy(stale etag) = %v, want a conflict", err)
			}
			// Removing every binding is a real write (bindings: []).
			cleared, err := a.SetIAPPolicy(ctx, res, &iapsetup.Policy{Version: 3, Etag: got.Etag})
			if err != nil {
				t.Fatalf("SetIAPPolicy(no bindings): %v", err)
			}
			if after, _ := a.GetIAPPolicy(ctx, res); len(after.Bindings) != 0 || string(after.Etag) != string(cleared.Etag) {
				t.Errorf("after clearing: %+v, want no bindings", after)
			}
		})
	}

	// The backend service name addresses the same policy as its id.
	byName := "projects/" + number + "/iap_web/compute/services/web"
	if _, err := a.GetIAPPolicy(ctx, byName); err != nil {
		t.Errorf("GetIAPPolicy(%s): %v", byName, err)
	}

	for _, bad := range []string{
		"projects/" + number + "/iap_web/cloud_run-" + emulatortest.Region + "/services/missing",
		"projects/" + number + "/iap_web/compute/services/missing",
	} {
		if _, err := a.GetIAPPolicy(ctx, bad); !gcperr.IsNotFound(err) || !errors.Is(err, iapsetup.ErrNotFound) {
			t.Errorf("GetIAPPolicy(%s) = %v, want NOT_FOUND", bad, err)
		}
	}
	// The IAP API refuses a member without a kind: INVALID_ARGUMENT, which
	// the reconciler reports as a rejected access step.
	p, _ := a.GetIAPPolicy(ctx, runRes)
	p.Bindings = []iapsetup.Binding{{Role: roleAccessor, Members: []string{"alice"}}}
	_, err = a.SetIAPPolicy(ctx, runRes, p)
	if err == nil || !strings.Contains(err.Error(), runRes) || gcperr.Code(err) != codes.InvalidArgument || !errors.Is(err, iapsetup.ErrInvalid) {
		t.Errorf("SetIAPPolicy(bad member) = %v, want INVALID_ARGUMENT naming the resource", err)
	}
}

// roleAccessor is the IAP-secured Web App User role.
const roleAccessor = "roles/iap.httpsResourceAccessor"
