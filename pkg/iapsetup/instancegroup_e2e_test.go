package iapsetup_test

import (
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// TestInstanceGroupBackendsAreNotCloudRun: a backend service of virtual
// machines (an unmanaged instance group, as real projects have beside
// their serverless ones) resolves to no Cloud Run service with one read,
// and does not disturb a labelled service's reconcile in the same project.
func TestInstanceGroupBackendsAreNotCloudRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	vms := emulatortest.Backend{Name: "vm-web", Groups: []string{f.e.AddInstanceGroup(t, "vms")}}
	f.e.AddBackend(t, vms)
	f.e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled(), Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
		Annotations: map[string]string{iapsetup.ManagedAnnotation: "true"}})
	f.e.SeedPolicy(t, "hello", &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"serviceAccount:" + emulatortest.Agent}}}})

	before := f.e.Snapshot()
	cs, err := f.r.ResolveBackend(t.Context(), iapsetup.BackendRef{Project: emulatortest.Project, Name: vms.Name})
	if err != nil || len(cs) != 0 {
		t.Fatalf("ResolveBackend(vm-web) = %v, %v; want no candidate and no error", cs, err)
	}
	// One read of the backend service: no NEG read, no write.
	checkCalls(t, "ResolveBackend", f.e.Snapshot().Sub(before).Calls, map[string]int64{mGetBackend: 1})
	res, err, _ := f.reconcile(t, ref)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.Outcome != outcome.Remediated && res.Outcome != outcome.Compliant {
		t.Fatalf("outcome %s (%s), want the service converged", res.Outcome, res.Reason)
	}
	if got := f.e.GetBackend(t, vms); got.Iap != nil && got.Iap.Enabled {
		t.Error("IAP was switched on for a backend service of virtual machines")
	}
}
