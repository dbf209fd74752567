package iapsetup_test

// Folder scopes at the transport seam: the reconciler with a scope of
// folders/N, resolving ancestries through internal/gcp.ProjectDirectory
// against the emulated Resource Manager v3, call counts from the emulator.

import (
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

const (
	mGetProject = "google.cloud.resourcemanager.v3.Projects.GetProject"
	mGetFolder  = "google.cloud.resourcemanager.v3.Folders.GetFolder"
)

// TestReconcileFolderScope: organizations/1 → folders/10 → folders/20 →
// team-deep; organizations/1 → folders/11 → team-sibling. The scope is
// emulatortest.Project and folders/10.
func TestReconcileFolderScope(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	e.Core.Projects.Add(core.Project{ID: "team-deep", Number: 700000000001, Parent: "folders/20"})
	e.Core.Projects.Add(core.Project{ID: "team-sibling", Number: 700000000002, Parent: "folders/11"})
	if err := e.Core.Projects.AddFolders(
		core.Folder{ID: "10", Parent: "organizations/1"},
		core.Folder{ID: "11", Parent: "organizations/1"},
		core.Folder{ID: "20", Parent: "folders/10"},
	); err != nil {
		t.Fatal(err)
	}
	dir, err := gcp.NewProjectDirectory(t.Context(), gcp.Options{EmulatorHost: e.Addr, Principal: emulatortest.Principal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	sc := scope.New(emulatortest.Project, "folders/10").WithAncestry(dir, scope.AncestryOptions{})
	r, err := iapsetup.New(e.Clients.Deps(), iapsetup.FastRetries(iapsetup.Options{Scope: sc}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"team-deep", "team-sibling", emulatortest.Project} {
		svc := &runpb.Service{
			Labels:   map[string]string{"iap": "enabled"},
			Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}},
		}
		if _, err := e.Run.Seed(p, emulatortest.Region, "hello", svc); err != nil {
			t.Fatal(err)
		}
	}
	reconcile := func(project string) (*iapsetup.Result, map[string]int64) {
		t.Helper()
		before := e.Snapshot()
		res, err := r.Reconcile(t.Context(), iapsetup.ServiceRef{Project: project, Region: emulatortest.Region, Name: "hello"})
		if err != nil {
			t.Fatalf("Reconcile in %s: %v", project, err)
		}
		return res, e.Snapshot().Sub(before).Calls
	}
	rm := func(calls map[string]int64) map[string]int64 {
		out := map[string]int64{}
		for k, v := range calls {
			if strings.HasPrefix(k, "google.cloud.resourcemanager.") {
				out[k] = v
			}
		}
		return out
	}

	// Two folders deep: enforced; the ancestry costs GetProject and one
	// GetFolder (folders/20, whose parent folders/10 is listed).
	res, calls := reconcile("team-deep")
	if res.Outcome != outcome.Remediated {
		t.Errorf("team-deep: outcome %s (%s), want remediated", res.Outcome, res.Reason)
	}
	checkCalls(t, "team-deep, cold: Resource Manager", rm(calls), map[string]int64{mGetProject: 1, mGetFolder: 1})
	t.Logf("first event from a project two folders deep: %d calls in all (%v)", sum(calls), calls)

	// Warm: the scope decision costs nothing.
	res, calls = reconcile("team-deep")
	if res.Outcome != outcome.Compliant {
		t.Errorf("team-deep again: outcome %s (%s), want compliant", res.Outcome, res.Reason)
	}
	checkCalls(t, "team-deep, warm", calls, warmReads)

	// The same project named by number: one GetProject, the folders cached.
	_, calls = reconcile("700000000001")
	checkCalls(t, "team-deep by number: Resource Manager", rm(calls), map[string]int64{mGetProject: 1})

	// A sibling folder: rejected, the ancestry in the reason, no other call.
	res, calls = reconcile("team-sibling")
	if res.Outcome != outcome.Rejected ||
		!strings.Contains(res.Reason, "ancestry checked: projects/team-sibling → folders/11 → organizations/1") {
		t.Errorf("team-sibling: outcome %s (%s), want rejected with the ancestry", res.Outcome, res.Reason)
	}
	checkCalls(t, "team-sibling, cold", calls, map[string]int64{mGetProject: 1, mGetFolder: 1})
	_, calls = reconcile("team-sibling")
	checkCalls(t, "team-sibling, warm", calls, map[string]int64{})

	// A listed project: no Resource Manager call at all.
	_, calls = reconcile(emulatortest.Project)
	checkCalls(t, "listed project: Resource Manager", rm(calls), map[string]int64{})

	// An unknown project: PERMISSION_DENIED from GetProject → rejected.
	res, calls = reconcile("nobody-knows")
	if res.Outcome != outcome.Rejected || !strings.Contains(res.Reason, "resourcemanager.projects.get") {
		t.Errorf("unknown project: outcome %s (%s), want rejected naming the permission", res.Outcome, res.Reason)
	}
	checkCalls(t, "unknown project", calls, map[string]int64{mGetProject: 1})

	// Resource Manager out of quota (the client itself retries UNAVAILABLE):
	// failed and transient (redelivered); the error is not cached.
	e.Core.Projects.Add(core.Project{ID: "team-new", Number: 700000000003, Parent: "folders/10"})
	if err := e.Core.Faults.FailNext(mGetProject, 1, codes.ResourceExhausted); err != nil {
		t.Fatal(err)
	}
	newRef := iapsetup.ServiceRef{Project: "team-new", Region: emulatortest.Region, Name: "hello"}
	res, err = r.Reconcile(t.Context(), newRef)
	if res.Outcome != outcome.Failed || !errors.Is(err, iapsetup.ErrTransient) {
		t.Errorf("GetProject RESOURCE_EXHAUSTED: outcome %s, error %v; want failed, transient", res.Outcome, err)
	}
	if res, err = r.Reconcile(t.Context(), newRef); res.Outcome != outcome.Skipped || err != nil {
		t.Errorf("redelivered: outcome %s (%s), error %v; want skipped (in scope, no such service)", res.Outcome, res.Reason, err)
	}

	// A region in the deep project, each listed copy reconciled: the
	// scope checks are cached too.
	before := e.Snapshot()
	cs, err := r.ResolveRegion(t.Context(), "team-deep", emulatortest.Region)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if _, err := r.Reconcile(t.Context(), c.Ref, iapsetup.Listed(c.Listed)); err != nil {
			t.Fatal(err)
		}
	}
	checkCalls(t, "ResolveRegion and Reconcile: Resource Manager", rm(e.Snapshot().Sub(before).Calls), map[string]int64{})
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
