package iapsetup_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// rendezvous holds the first call of each kind it waits for until every
// kind has a call in flight. When the calls are not made concurrently the
// first one waits out bound and is recorded as alone; the bound only ever
// expires then, so the test cannot flake on a slow machine, it only fails
// slowly.
type rendezvous struct {
	bound time.Duration

	mu      sync.Mutex
	want    []string
	arrived []string
	alone   []string
	all     chan struct{}
}

func newRendezvous(bound time.Duration, kinds ...string) *rendezvous {
	return &rendezvous{bound: bound, want: kinds, all: make(chan struct{})}
}

func (r *rendezvous) meet(ctx context.Context, kind string) {
	r.mu.Lock()
	if slices.Contains(r.want, kind) && !slices.Contains(r.arrived, kind) {
		r.arrived = append(r.arrived, kind)
		if len(r.arrived) == len(r.want) {
			close(r.all)
		}
	}
	r.mu.Unlock()
	t := time.NewTimer(r.bound)
	defer t.Stop()
	select {
	case <-r.all:
	case <-ctx.Done():
	case <-t.C:
		r.mu.Lock()
		r.alone = append(r.alone, kind)
		r.mu.Unlock()
	}
}

// Wrappers over the real adapters: the calls of the IAM write ∥ second
// read round meet at the rendezvous; the writes that must follow the IAM
// write check that it has returned.
type (
	meetPolicies struct {
		iapsetup.CloudRun
		rv      *rendezvous
		iamDone *atomic.Bool
	}
	meetFrontends struct {
		iapsetup.Compute
		rv *rendezvous
	}
	meetIAP struct {
		iapsetup.IAPPolicies
		rv *rendezvous
	}
	afterIAMServices struct {
		iapsetup.CloudRun
		iamDone *atomic.Bool
		early   *atomic.Int32
	}
	afterIAMBackends struct {
		iapsetup.Compute
		iamDone *atomic.Bool
		early   *atomic.Int32
	}
)

func (m meetPolicies) SetIAMPolicy(ctx context.Context, ref iapsetup.ServiceRef, p *iapsetup.Policy) (*iapsetup.Policy, error) {
	m.rv.meet(ctx, "SetIAMPolicy")
	defer m.iamDone.Store(true)
	return m.CloudRun.SetIAMPolicy(ctx, ref, p)
}

func (m meetFrontends) HTTPSFrontend(ctx context.Context, b *iapsetup.BackendService) (iapsetup.Frontend, error) {
	m.rv.meet(ctx, "HTTPSFrontend")
	return m.Compute.HTTPSFrontend(ctx, b)
}

func (m meetIAP) GetIAPPolicy(ctx context.Context, resource string) (*iapsetup.Policy, error) {
	m.rv.meet(ctx, "GetIAPPolicy")
	return m.IAPPolicies.GetIAPPolicy(ctx, resource)
}

func (a afterIAMServices) UpdateService(ctx context.Context, u *iapsetup.ServiceUpdate) (*iapsetup.Service, error) {
	if !a.iamDone.Load() {
		a.early.Add(1)
	}
	return a.CloudRun.UpdateService(ctx, u)
}

func (a afterIAMBackends) EnableIAP(ctx context.Context, ref iapsetup.BackendRef, fingerprint string) error {
	if !a.iamDone.Load() {
		a.early.Add(1)
	}
	return a.Compute.EnableIAP(ctx, ref, fingerprint)
}

// TestReconcileIAMWriteConcurrentWithSecondReads checks the critical path
// of a remediation (issue #10): the IAM policy write runs concurrently with
// the second read round (the HTTPS-frontend check of the backend about to
// change, the IAP policy reads), while the service update and the backend
// patch still start only after the IAM write returned. The calls made are
// those of the sequential version.
func TestReconcileIAMWriteConcurrentWithSecondReads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lb    bool
		kinds []string
		calls map[string]int64
	}{
		{
			name: "load balancer", lb: true, kinds: []string{"SetIAMPolicy", "HTTPSFrontend", "GetIAPPolicy"},
			calls: plus(warmReads, plus(coldIAP, map[string]int64{mSecret: 1, // the signing key of the managed marker
				mIdentity: 1, mProxies: 1, mRules: 1,
				mSetPolicy: 1, mUpdateService: 1, mGetOperation: 1, mPatchBackend: 1, mWaitGlobal: 1,
			})),
		},
		{
			name: "direct", kinds: []string{"SetIAMPolicy", "GetIAPPolicy"},
			calls: plus(warmReads, plus(coldIAP, map[string]int64{mSecret: 1, mIdentity: 1, mSetPolicy: 1, mUpdateService: 1, mGetOperation: 1})),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envOptions{})
			e.SeedService(t, emulatortest.Svc{Name: "hello", Labels: labelled()})
			e.SeedPolicy(t, "hello", publicPolicy())
			if tc.lb {
				addLB(t, e, emulatortest.Backend{Name: "web"}, true)
			}
			rv := newRendezvous(5*time.Second, tc.kinds...)
			var iamDone atomic.Bool
			var early atomic.Int32
			d := e.Clients.Deps()
			d.CloudRun = meetPolicies{d.CloudRun, rv, &iamDone}
			d.Compute = meetFrontends{d.Compute, rv}
			d.IAP = meetIAP{d.IAP, rv}
			d.CloudRun = afterIAMServices{d.CloudRun, &iamDone, &early}
			d.Compute = afterIAMBackends{d.Compute, &iamDone, &early}
			r, err := iapsetup.New(d, iapsetup.FastRetries(iapsetup.Options{Scope: scope.New(emulatortest.Project)}))
			if err != nil {
				t.Fatal(err)
			}
			before := e.Snapshot()
			res, err := r.Reconcile(t.Context(), ref)
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if res.Outcome != outcome.Remediated {
				t.Errorf("outcome %s (%s), want remediated", res.Outcome, res.Reason)
			}
			if len(rv.alone) > 0 {
				t.Errorf("calls made alone instead of concurrently with %v: %v", tc.kinds, rv.alone)
			}
			if diff := cmp.Diff(tc.kinds, rv.arrived, cmpSorted); diff != "" {
				t.Errorf("calls that met (-want +got):\n%s", diff)
			}
			if n := early.Load(); n != 0 {
				t.Errorf("%d service or backend writes started before the IAM write returned", n)
			}
			checkCalls(t, "reconcile", e.Snapshot().Sub(before).Calls, tc.calls)
		})
	}
}

var cmpSorted = cmp.Transformer("sorted", func(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
})
