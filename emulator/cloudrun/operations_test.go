package cloudrun

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
)

const getOperation = "google.longrunning.Operations.GetOperation"

func TestLROModes(t *testing.T) {
	tests := []struct {
		name          string
		opts          Options
		firstDone     bool
		wantGetOps    int64 // GetOperation calls made by op.Wait
		reconcilingAt bool  // GetService right after create shows reconciling
	}{
		{"on-first-poll", Options{}, false, 1, false},
		{"immediate", Options{LRO: LROImmediate}, true, 0, false},
		{"delay", Options{LRO: LRODelay, Delay: 150 * time.Millisecond}, false, -1, true},
		{"duration string", Options{LRO: "150ms"}, false, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.opts)
			ctx := ctxT(t)
			op, err := h.client.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "hello", Service: minimalService()})
			if err != nil {
				t.Fatalf("CreateService: %v", err)
			}
			if op.Done() != tt.firstDone {
				t.Errorf("first response done = %v, want %v", op.Done(), tt.firstDone)
			}
			if !regexp.MustCompile(`^projects/` + testProject + `/locations/us-central1/operations/[0-9a-f-]{36}$`).MatchString(op.Name()) {
				t.Errorf("operation name %q, want projects/P/locations/R/operations/UUID", op.Name())
			}
			md, err := op.Metadata()
			if err != nil || md.GetName() != svcName(testProject, "hello") {
				t.Errorf("metadata = %v, %v; want the service", md, err)
			}
			now := h.get(t, "hello")
			if now.GetReconciling() != tt.reconcilingAt {
				t.Errorf("reconciling right after create = %v, want %v", now.GetReconciling(), tt.reconcilingAt)
			}
			if tt.reconcilingAt {
				if now.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_RECONCILING || now.GetObservedGeneration() != 0 || now.GetLatestReadyRevision() != "" {
					t.Errorf("reconciling service: terminal %v observed %d ready %q; want RECONCILING, 0, empty",
						now.GetTerminalCondition().GetState(), now.GetObservedGeneration(), now.GetLatestReadyRevision())
				}
				// WaitOperation blocks on the server until the delay passes.
				w, err := h.client.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: op.Name(), Timeout: durationpb.New(5 * time.Second)})
				if err != nil || !w.GetDone() || w.GetResponse() == nil {
					t.Fatalf("WaitOperation = %v, %v; want done with a response", w, err)
				}
			}
			before := h.c.Stats.Snapshot()
			got, err := op.Wait(ctx)
			if err != nil {
				t.Fatalf("op.Wait: %v", err)
			}
			if n := h.c.Stats.Snapshot().Sub(before).Calls[getOperation]; tt.wantGetOps >= 0 && n != tt.wantGetOps {
				t.Errorf("op.Wait made %d GetOperation calls, want %d", n, tt.wantGetOps)
			}
			if got.GetReconciling() || got.GetObservedGeneration() != 1 || got.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_SUCCEEDED || got.GetLatestReadyRevision() == "" {
				t.Errorf("done service: reconciling %v observed %d terminal %v ready %q; want settled",
					got.GetReconciling(), got.GetObservedGeneration(), got.GetTerminalCondition().GetState(), got.GetLatestReadyRevision())
			}
			if after := h.get(t, "hello"); after.GetReconciling() || after.GetLatestReadyRevision() != got.GetLatestReadyRevision() {
				t.Errorf("service after the operation: reconciling %v ready %q", after.GetReconciling(), after.GetLatestReadyRevision())
			}
		})
	}
}

func TestDelayModeUpdateKeepsServingRevision(t *testing.T) {
	h := newHarness(t, Options{LRO: LRODelay, Delay: time.Hour})
	clock := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	h.c.SetNow(func() time.Time { return clock })
	op, err := h.client.CreateService(ctxT(t), &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "hello", Service: minimalService()})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	clock = clock.Add(time.Hour)
	first, err := op.Wait(ctxT(t))
	if err != nil {
		t.Fatalf("op.Wait after the delay: %v", err)
	}
	svc := h.get(t, "hello")
	svc.Template.Containers[0].Image += ":v2"
	uop, err := h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{Service: svc})
	if err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	mid := h.get(t, "hello")
	if !mid.GetReconciling() || mid.GetGeneration() != 2 || mid.GetObservedGeneration() != 1 ||
		mid.GetLatestReadyRevision() != first.GetLatestReadyRevision() || mid.GetLatestCreatedRevision() == first.GetLatestCreatedRevision() {
		t.Errorf("mid-rollout: reconciling %v generation %d observed %d ready %q created %q",
			mid.GetReconciling(), mid.GetGeneration(), mid.GetObservedGeneration(), mid.GetLatestReadyRevision(), mid.GetLatestCreatedRevision())
	}
	polled, err := h.client.GetOperation(ctxT(t), &longrunningpb.GetOperationRequest{Name: uop.Name()})
	if err != nil || polled.GetDone() {
		t.Errorf("GetOperation before the delay = done %v, %v; want not done", polled.GetDone(), err)
	}
	w, err := h.client.WaitOperation(ctxT(t), &longrunningpb.WaitOperationRequest{Name: uop.Name(), Timeout: durationpb.New(30 * time.Millisecond)})
	if err != nil || w.GetDone() {
		t.Errorf("WaitOperation with a short timeout = done %v, %v; want the pending operation", w.GetDone(), err)
	}
	clock = clock.Add(time.Hour)
	done := h.get(t, "hello")
	if done.GetReconciling() || done.GetObservedGeneration() != 2 || done.GetLatestReadyRevision() != done.GetLatestCreatedRevision() {
		t.Errorf("after the delay: reconciling %v observed %d ready %q created %q", done.GetReconciling(), done.GetObservedGeneration(),
			done.GetLatestReadyRevision(), done.GetLatestCreatedRevision())
	}
}

func TestOperationsAPI(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := ctxT(t)
	var names []string
	for _, id := range []string{"a", "b", "c"} {
		op, err := h.client.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: id, Service: minimalService()})
		if err != nil {
			t.Fatalf("CreateService(%s): %v", id, err)
		}
		names = append(names, op.Name())
	}
	// Complete the first one only.
	if _, err := h.client.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: names[0]}); err != nil {
		t.Fatalf("GetOperation: %v", err)
	}

	list := func(t *testing.T, name, filter string, pageSize int) []string {
		t.Helper()
		it := h.client.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: name, Filter: filter})
		var got []string
		if pageSize == 0 { // server default page size: plain iteration
			for {
				op, err := it.Next()
				if err == iterator.Done {
					return got
				}
				if err != nil {
					t.Fatalf("ListOperations(%s, %q): %v", name, filter, err)
				}
				got = append(got, op.GetName())
			}
		}
		p := iterator.NewPager(it, pageSize, "")
		for {
			var page []*longrunningpb.Operation
			tok, err := p.NextPage(&page)
			if err != nil {
				t.Fatalf("ListOperations(%s, %q): %v", name, filter, err)
			}
			for _, op := range page {
				got = append(got, op.GetName())
			}
			if tok == "" {
				return got
			}
		}
	}
	byNumber := func(ns ...string) []string {
		var out []string
		for _, n := range ns {
			out = append(out, strings.Replace(n, testProject, testNumberStr, 1))
		}
		return out
	}
	tests := []struct {
		name, parent, filter string
		pageSize             int
		want                 []string
	}{
		{"newest first", parent(testProject), "", 0, []string{names[2], names[1], names[0]}},
		{"paged", parent(testProject), "", 1, []string{names[2], names[1], names[0]}},
		{"done only", parent(testProject), "done = true", 0, []string{names[0]}},
		{"pending only", parent(testProject), "done=false", 0, []string{names[2], names[1]}},
		{"every location by number", "projects/" + testNumberStr + "/locations/-", "", 2, byNumber(names[2], names[1], names[0])},
		{"other region", "projects/" + testProject + "/locations/europe-west1", "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, list(t, tt.parent, tt.filter, tt.pageSize)); diff != "" {
				t.Errorf("operations mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("get by project number", func(t *testing.T) {
		op, err := h.client.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: byNumber(names[1])[0]})
		if err != nil {
			t.Fatalf("GetOperation: %v", err)
		}
		if op.GetName() != byNumber(names[1])[0] || !op.GetDone() {
			t.Errorf("operation %q done %v; want number-form name, done", op.GetName(), op.GetDone())
		}
		svc := &runpb.Service{}
		if err := op.GetResponse().UnmarshalTo(svc); err != nil || svc.GetName() != svcName(testNumberStr, "b") {
			t.Errorf("response service = %q, %v; want %q", svc.GetName(), err, svcName(testNumberStr, "b"))
		}
	})
	t.Run("wait completes", func(t *testing.T) {
		op, err := h.client.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: names[2]})
		if err != nil || !op.GetDone() {
			t.Fatalf("WaitOperation = done %v, %v; want done", op.GetDone(), err)
		}
	})
	t.Run("delete forgets", func(t *testing.T) {
		if err := h.client.DeleteOperation(ctx, &longrunningpb.DeleteOperationRequest{Name: names[0]}); err != nil {
			t.Fatalf("DeleteOperation: %v", err)
		}
		_, err := h.client.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: names[0]})
		wantCode(t, err, codes.NotFound)
		err = h.client.DeleteOperation(ctx, &longrunningpb.DeleteOperationRequest{Name: names[0]})
		wantCode(t, err, codes.NotFound)
		if !h.srv.ServiceExists(testProject, testRegion, "a") {
			t.Error("deleting the operation deleted the service")
		}
	})
	errs := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"get unknown", func() error {
			_, err := h.client.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: parent(testProject) + "/operations/0000"})
			return err
		}, codes.NotFound},
		{"get malformed", func() error {
			_, err := h.client.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: "operations/x"})
			return err
		}, codes.InvalidArgument},
		{"get unknown project", func() error {
			_, err := h.client.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: parent("ghost-project") + "/operations/x"})
			return err
		}, codes.PermissionDenied},
		{"wait unknown", func() error {
			_, err := h.client.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: parent(testProject) + "/operations/0000"})
			return err
		}, codes.NotFound},
		{"list bad filter", func() error {
			_, err := h.client.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: parent(testProject), Filter: "metadata.target=x"}).Next()
			return err
		}, codes.InvalidArgument},
		{"list bad token", func() error {
			_, err := h.client.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: parent(testProject), PageToken: "!!"}).Next()
			return err
		}, codes.InvalidArgument},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.code) })
	}
}

func TestQuotaExhausted(t *testing.T) {
	h := newHarness(t, Options{LRO: LROImmediate})
	h.c.Faults.SetQuota("run", core.Write, 1)
	if _, err := h.client.CreateService(ctxT(t), &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "first", Service: minimalService()}); err != nil {
		t.Fatalf("first write within quota: %v", err)
	}
	before := h.auditCount()
	_, err := h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{
		Service:    &runpb.Service{Name: svcName(testProject, "first"), IapEnabled: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"iap_enabled"}},
	})
	wantCode(t, err, codes.ResourceExhausted, "Quota exceeded")
	if got := h.get(t, "first"); got.GetIapEnabled() || got.GetGeneration() != 1 {
		t.Errorf("throttled update was applied: iap_enabled %v generation %d", got.GetIapEnabled(), got.GetGeneration())
	}
	if n := h.auditCount() - before; n != 0 {
		t.Errorf("throttled update wrote %d audit entries", n)
	}
	if f := h.c.Stats.Snapshot().Faults[methodUpdate]; f != 1 {
		t.Errorf("faults counted for UpdateService = %d, want 1", f)
	}
}

// serviceOp is what the Run client's create, update and delete operations
// share.
type serviceOp interface {
	Metadata() (*runpb.Service, error)
}

// TestOperationMetadataAsRecorded: while a write's operation runs, its
// metadata is the service as written with the status of before the write,
// reconciling and CONDITION_PENDING; once done it is the finished service.
// A delete grows the generation. Shapes from Google's answers recorded in
// k8s-config-connector's runservicebasic cassette (create, update, delete).
func TestOperationMetadataAsRecorded(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := ctxT(t)
	meta := func(t *testing.T, op serviceOp) *runpb.Service {
		t.Helper()
		md, err := op.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		return md
	}
	// Create: nothing of the status yet but the pending state.
	cop, err := h.client.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "hello", Service: minimalService()})
	if err != nil {
		t.Fatal(err)
	}
	md := meta(t, cop)
	if cop.Done() || !md.Reconciling || md.Generation != 1 || md.ObservedGeneration != 0 || md.Uri != "" ||
		md.LatestCreatedRevision != "" || md.LatestReadyRevision != "" || len(md.Conditions) != 0 || len(md.TrafficStatuses) != 0 ||
		md.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_PENDING || md.GetTerminalCondition().GetType() != "" {
		t.Errorf("create's running metadata = %v; want generation 1, reconciling, terminal state PENDING and no other status", md)
	}
	created, err := cop.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md := meta(t, cop); md.Reconciling || md.ObservedGeneration != 1 || md.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_SUCCEEDED {
		t.Errorf("create's finished metadata = %v; want the ready service", md)
	}
	// Update with a new template: the old revision and generation until done.
	next := minimalService()
	next.Name = created.Name
	next.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "FOO", Values: &runpb.EnvVar_Value{Value: "bar"}}}
	uop, err := h.client.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: next})
	if err != nil {
		t.Fatal(err)
	}
	md = meta(t, uop)
	if uop.Done() || !md.Reconciling || md.Generation != 2 || md.ObservedGeneration != 1 ||
		md.LatestCreatedRevision != created.LatestCreatedRevision || md.LatestReadyRevision != created.LatestReadyRevision ||
		md.Uri != created.Uri || md.GetTerminalCondition().GetType() != "Ready" || md.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_PENDING {
		t.Errorf("update's running metadata = %v; want generation 2 observed 1, the first revision, Ready PENDING", md)
	}
	updated, err := uop.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if updated.ObservedGeneration != 2 || updated.LatestCreatedRevision == created.LatestCreatedRevision {
		t.Errorf("updated service = %v; want generation 2 observed and a new revision", updated)
	}
	// Delete: a generation of its own.
	dop, err := h.client.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: created.Name})
	if err != nil {
		t.Fatal(err)
	}
	md = meta(t, dop)
	if dop.Done() || !md.Reconciling || md.Generation != 3 || md.ObservedGeneration != 2 || md.DeleteTime == nil ||
		!md.UpdateTime.AsTime().Equal(md.DeleteTime.AsTime()) || md.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_PENDING {
		t.Errorf("delete's running metadata = %v; want generation 3 observed 2, update time = delete time, PENDING", md)
	}
	gone, err := dop.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gone.Generation != 3 || gone.ObservedGeneration != 3 || gone.Reconciling || gone.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_SUCCEEDED {
		t.Errorf("deleted service = %v; want generation 3 observed, not reconciling, SUCCEEDED", gone)
	}
}
