package cloudrun

import (
	"bytes"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

const invoker = "roles/run.invoker"

func TestIAMPolicyReadModifyWrite(t *testing.T) {
	h := newHarness(t, Options{})
	h.create(t, "hello", nil)
	res := svcName(testProject, "hello")
	ctx := ctxT(t)

	empty, err := h.client.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: res})
	if err != nil {
		t.Fatalf("GetIamPolicy: %v", err)
	}
	if diff := cmp.Diff(&iampb.Policy{Etag: []byte{0x00, 0x20, 0x01}}, empty, protocmp.Transform()); diff != "" {
		t.Errorf("initial policy mismatch (-want +got):\n%s", diff)
	}

	agent := "serviceAccount:service-" + testNumberStr + "@gcp-sa-iap.iam.gserviceaccount.com"
	h.c.Accounts.Add(strings.TrimPrefix(agent, "serviceAccount:"))
	set, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{
		Etag: empty.GetEtag(),
		Bindings: []*iampb.Binding{
			{Role: invoker, Members: []string{agent, "user:b@example.com"}},
			{Role: "roles/run.developer", Members: []string{"group:devs@example.com"}},
			{Role: invoker, Members: []string{"user:a@example.com", agent}},
			{Role: "roles/run.viewer"},
		},
	}})
	if err != nil {
		t.Fatalf("SetIamPolicy: %v", err)
	}
	want := &iampb.Policy{Version: 1, Bindings: []*iampb.Binding{
		{Role: "roles/run.developer", Members: []string{"group:devs@example.com"}},
		{Role: invoker, Members: []string{agent, "user:a@example.com", "user:b@example.com"}},
	}}
	if diff := cmp.Diff(want, set, protocmp.Transform(), protocmp.IgnoreFields(&iampb.Policy{}, "etag")); diff != "" {
		t.Errorf("stored policy mismatch (-want +got):\n%s", diff)
	}
	if len(set.GetEtag()) == 0 || bytes.Equal(set.GetEtag(), empty.GetEtag()) {
		t.Errorf("etag after set = %x, want a new one (was %x)", set.GetEtag(), empty.GetEtag())
	}
	got, err := h.client.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: svcName(testNumberStr, "hello")})
	if err != nil {
		t.Fatalf("GetIamPolicy by project number: %v", err)
	}
	if diff := cmp.Diff(set, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetIamPolicy differs from SetIamPolicy's answer (-set +get):\n%s", diff)
	}

	t.Run("stale etag aborted", func(t *testing.T) {
		_, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Etag: empty.GetEtag()}})
		wantCode(t, err, codes.Aborted, concurrentPolicyChange)
	})
	t.Run("forced race aborts the current etag", func(t *testing.T) {
		if err := h.c.Faults.ForceRaces(methodSetIAM, 1); err != nil {
			t.Fatal(err)
		}
		cur, _ := h.client.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: res})
		_, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: cur})
		wantCode(t, err, codes.Aborted, concurrentPolicyChange)
		again, _ := h.client.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: res})
		if bytes.Equal(again.GetEtag(), cur.GetEtag()) {
			t.Error("forced race did not change the policy etag")
		}
		if diff := cmp.Diff(cur.GetBindings(), again.GetBindings(), protocmp.Transform()); diff != "" {
			t.Errorf("forced race changed the bindings (-before +after):\n%s", diff)
		}
		if _, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: again}); err != nil {
			t.Fatalf("retry after re-read: %v", err)
		}
	})
	t.Run("empty etag overwrites blindly", func(t *testing.T) {
		p, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{
			Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"allUsers"}}},
		}})
		if err != nil {
			t.Fatalf("blind SetIamPolicy: %v", err)
		}
		if len(p.GetBindings()) != 1 || p.GetBindings()[0].GetMembers()[0] != "allUsers" {
			t.Errorf("policy after blind overwrite = %v", p)
		}
	})
	t.Run("mask without bindings keeps them", func(t *testing.T) {
		before, _ := h.client.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: res})
		p, err := h.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Etag: before.GetEtag()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"etag"}}})
		if err != nil {
			t.Fatalf("SetIamPolicy(mask etag): %v", err)
		}
		if diff := cmp.Diff(before.GetBindings(), p.GetBindings(), protocmp.Transform()); diff != "" {
			t.Errorf("bindings changed (-before +after):\n%s", diff)
		}
	})
}

func TestSetIamPolicyErrors(t *testing.T) {
	h := newHarness(t, Options{})
	h.create(t, "hello", nil)
	res := svcName(testProject, "hello")
	cond := &expr.Expr{Expression: `request.time < timestamp("2030-01-01T00:00:00Z")`, Title: "expires"}
	tests := []struct {
		name      string
		req       *iampb.SetIamPolicyRequest
		code      codes.Code
		fragments []string
	}{
		{"missing service", &iampb.SetIamPolicyRequest{Resource: svcName(testProject, "ghost"), Policy: &iampb.Policy{}}, codes.NotFound, nil},
		{"missing policy", &iampb.SetIamPolicyRequest{Resource: res}, codes.InvalidArgument, []string{"policy"}},
		{"malformed resource", &iampb.SetIamPolicyRequest{Resource: "hello", Policy: &iampb.Policy{}}, codes.InvalidArgument, []string{"resource"}},
		{"malformed member", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"alice@example.com"}}}}}, codes.InvalidArgument, []string{"policy.bindings[0].members[0]", "alice@example.com"}},
		{"member with unknown kind", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"robot:x@example.com"}}}}}, codes.InvalidArgument, []string{"members[0]"}},
		{"malformed role", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: "run.invoker", Members: []string{"allUsers"}}}}}, codes.InvalidArgument, []string{"policy.bindings[0].role"}},
		{"bad version", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Version: 2}}, codes.InvalidArgument, []string{"policy.version"}},
		{"condition without version 3", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{Version: 1, Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"allUsers"}, Condition: cond}}}}, codes.InvalidArgument, []string{"condition", "version 3"}},
		{"audit configs", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{AuditConfigs: []*iampb.AuditConfig{{Service: "allServices"}}}}, codes.InvalidArgument, []string{"audit_configs"}},
		{"unknown mask path", &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"owners"}}}, codes.InvalidArgument, []string{"update_mask"}},
	}
	before := h.auditCount()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.SetIamPolicy(ctxT(t), tt.req)
			wantCode(t, err, tt.code, tt.fragments...)
		})
	}
	// Refusals of what was asked are logged as failed calls; malformed
	// names and unknown projects are not (there is nothing to log in).
	checkRejectedEntries(t, h, before, 9)
	t.Run("conditional binding with version 3", func(t *testing.T) {
		p, err := h.client.SetIamPolicy(ctxT(t), &iampb.SetIamPolicyRequest{Resource: res, Policy: &iampb.Policy{
			Version: 3, Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"domain:example.com"}, Condition: cond}},
		}})
		if err != nil {
			t.Fatalf("SetIamPolicy(conditional): %v", err)
		}
		if p.GetVersion() != 3 {
			t.Errorf("version = %d, want 3", p.GetVersion())
		}
	})
	t.Run("get on missing service", func(t *testing.T) {
		_, err := h.client.GetIamPolicy(ctxT(t), &iampb.GetIamPolicyRequest{Resource: svcName(testProject, "ghost")})
		wantCode(t, err, codes.NotFound)
	})
	t.Run("get with bad requested version", func(t *testing.T) {
		_, err := h.client.GetIamPolicy(ctxT(t), &iampb.GetIamPolicyRequest{Resource: res, Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 2}})
		wantCode(t, err, codes.InvalidArgument, "requested_policy_version")
	})
}

func TestTestIamPermissions(t *testing.T) {
	h := newHarness(t, Options{})
	h.create(t, "hello", nil)
	tests := []struct {
		name     string
		resource string
		perms    []string
		want     []string
		code     codes.Code
	}{
		{"run permissions returned", svcName(testProject, "hello"),
			[]string{"run.services.get", "compute.backendServices.get", "run.services.setIamPolicy", "run.services.get"},
			[]string{"run.services.get", "run.services.setIamPolicy"}, codes.OK},
		{"none requested", svcName(testProject, "hello"), nil, nil, codes.OK},
		{"wildcard rejected", svcName(testProject, "hello"), []string{"run.*"}, nil, codes.InvalidArgument},
		{"missing service", svcName(testProject, "ghost"), []string{"run.services.get"}, nil, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.client.TestIamPermissions(ctxT(t), &iampb.TestIamPermissionsRequest{Resource: tt.resource, Permissions: tt.perms})
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got.GetPermissions()); diff != "" {
				t.Errorf("permissions mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
