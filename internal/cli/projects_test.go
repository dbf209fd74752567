package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/event"
)

// orgProjects: team-a and team-b match the scope team-*; legacy-c does not.
var orgProjects = []core.Project{
	{ID: "team-a", Number: 111111111111},
	{ID: "team-b", Number: 222222222222},
	{ID: "legacy-c", Number: 333333333333},
}

const searchProjects = "google.cloud.resourcemanager.v3.Projects.SearchProjects"

// orgEmulator runs the emulator with orgProjects, each with a public
// labelled service "web", and team-a with an unlabelled "docs" too.
func orgEmulator(t *testing.T) *emulator.Emulator {
	t.Helper()
	em := webEmulator(t, orgProjects)
	if _, err := em.Run.Seed("team-a", testRegion, "docs", &runpb.Service{Template: helloTemplate}); err != nil {
		t.Fatal(err)
	}
	return em
}

var helloTemplate = &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}

// webEmulator runs the emulator with projects, each with a public labelled
// service "web" in testRegion.
func webEmulator(tb testing.TB, projects []core.Project) *emulator.Emulator {
	tb.Helper()
	em, err := emulator.New(emulator.Options{Projects: projects})
	if err != nil {
		tb.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = em.Close() })
	for _, p := range projects {
		if _, err := em.Run.Seed(p.ID, testRegion, "web", &runpb.Service{Labels: map[string]string{"iap": "enabled"}, Template: helloTemplate}); err != nil {
			tb.Fatal(err)
		}
	}
	return em
}

func runOrg(t *testing.T, em *emulator.Emulator, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	m := map[string]string{envEmulatorHost: em.Addr()}
	for k, v := range env {
		m[k] = v
	}
	return runWithEnv(t, withEnv(t.Context(), m), args...)
}

func TestAuditAllProjects(t *testing.T) {
	t.Parallel()
	em := orgEmulator(t)
	before := em.Core.Stats.Snapshot()

	code, out, errOut := runOrg(t, em, nil, "audit", "--all-projects", "--scope", "team-*")
	if code != ExitNonCompliant || errOut != "" {
		t.Fatalf("exit %d, want %d; stderr %q\n%s", code, ExitNonCompliant, errOut, out)
	}
	golden(t, "audit-all-projects.golden", out)
	calls := em.Core.Stats.Snapshot().Sub(before).Calls
	if n := calls[searchProjects]; n != 1 {
		t.Errorf("SearchProjects calls = %d, want 1", n)
	}
	// Every region of a project is one Cloud Asset search (Cloud Run v2
	// refuses the "-" wildcard; issue #18); the index's copies are not
	// fresh, so each labelled service (team-a/web, team-b/web) is read
	// once before it is reconciled, and nothing is listed per region.
	if n := calls["google.cloud.asset.v1.AssetService.SearchAllResources"]; n != 2 {
		t.Errorf("SearchAllResources calls = %d, want 2 (one per project)", n)
	}
	if n := calls["google.cloud.run.v2.Services.GetService"]; n != 2 {
		t.Errorf("GetService calls = %d, want 2 (one per labelled service)", n)
	}
	if n := calls["google.cloud.run.v2.Services.ListServices"]; n != 0 {
		t.Errorf("ListServices calls = %d, want 0", n)
	}

	// The per-region path: each labelled service is reconciled from its
	// listed copy, the listing being its only read; the report is the same.
	before = em.Core.Stats.Snapshot()
	code, out, errOut = runOrg(t, em, map[string]string{envDiscovery: "regions"}, "audit", "--all-projects", "--scope", "team-*")
	if code != ExitNonCompliant || errOut != "" {
		t.Fatalf("regions: exit %d, want %d; stderr %q\n%s", code, ExitNonCompliant, errOut, out)
	}
	golden(t, "audit-all-projects.golden", out)
	calls = em.Core.Stats.Snapshot().Sub(before).Calls
	if n := calls["google.cloud.run.v2.Services.GetService"]; n != 0 {
		t.Errorf("regions: GetService calls = %d, want 0 (the listing already read every service)", n)
	}
	if n := calls["run.projects.locations.list"]; n != 2 {
		t.Errorf("regions: locations.list calls = %d, want 2 (one per project)", n)
	}
	if n := calls["google.cloud.asset.v1.AssetService.SearchAllResources"]; n != 0 {
		t.Errorf("regions: SearchAllResources calls = %d, want 0", n)
	}

	// The scope defaults to the function's (IAPGUARD_PROJECTS); JSON names
	// each project and each service's project.
	code, out, _ = runOrg(t, em, map[string]string{envProjects: "team-*"}, "audit", "--all-projects", "-o", "json")
	if code != ExitNonCompliant {
		t.Fatalf("exit %d, want %d", code, ExitNonCompliant)
	}
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit JSON: %v", err)
	}
	wantProjects := []projectResult{{Project: "team-a", Services: 2}, {Project: "team-b", Services: 1}}
	if diff := cmp.Diff(wantProjects, rep.Projects); diff != "" {
		t.Errorf("projects (-want +got):\n%s", diff)
	}
	var got []string
	for _, s := range rep.Services {
		got = append(got, s.Project+"/"+s.Service)
	}
	if diff := cmp.Diff([]string{"team-a/docs", "team-a/web", "team-b/web"}, got); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if want := (auditSummary{Services: 3, Labelled: 2, NonCompliant: 2, Unmanaged: 1}); rep.Summary != want || rep.Scope != "team-*" {
		t.Errorf("scope %q, summary %+v; want team-*, %+v", rep.Scope, rep.Summary, want)
	}

	// One project in scope: today's table, without a PROJECT column.
	_, out, _ = runOrg(t, em, nil, "audit", "--all-projects", "--scope", "team-b")
	if strings.Contains(out, "PROJECT") || !strings.Contains(out, "project team-b, all regions: 1 services") {
		t.Errorf("audit of one project in scope:\n%s", out)
	}

	// A project that cannot be scanned is reported; the others still are:
	// exit 1.
	code, out, errOut = runOrg(t, em, nil, "audit", "--all-projects", "--scope", "team-*,ghost-project")
	if code != ExitError || !strings.Contains(errOut, "1 of 3 project(s) could not be scanned; first: ghost-project") {
		t.Errorf("exit %d, stderr %q; want 1 and the failed project", code, errOut)
	}
	if !strings.Contains(out, "project ghost-project: not scanned: project ghost-project not found") || !strings.Contains(out, "team-b/web: non-compliant") {
		t.Errorf("audit with an unknown project:\n%s", out)
	}
}

// folderEmulator runs the emulator with organizations/1 → folders/10 →
// team-a, folders/10 → folders/20 → team-b and legacy-c in the sibling
// folders/11; each project has a public labelled service "web", and team-a
// an unlabelled "docs" too.
func folderEmulator(t *testing.T) *emulator.Emulator {
	t.Helper()
	em, err := emulator.New(emulator.Options{
		Projects: []core.Project{
			{ID: "team-a", Number: 111111111111, Parent: "folders/10"},
			{ID: "team-b", Number: 222222222222, Parent: "folders/20"},
			{ID: "legacy-c", Number: 333333333333, Parent: "folders/11"},
		},
		Folders: []core.Folder{{ID: "10", Parent: "organizations/1"}, {ID: "11", Parent: "organizations/1"}, {ID: "20", Parent: "folders/10"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	tmpl := &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}
	for _, p := range []string{"team-a", "team-b", "legacy-c"} {
		if _, err := em.Run.Seed(p, testRegion, "web", &runpb.Service{Labels: map[string]string{"iap": "enabled"}, Template: tmpl}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := em.Run.Seed("team-a", testRegion, "docs", &runpb.Service{Template: tmpl}); err != nil {
		t.Fatal(err)
	}
	return em
}

// TestAuditAllProjectsFolders: the scope folders/10 is team-a and team-b
// (folderEmulator), found with one ListFolders and one SearchProjects
// "parent:…" per folder of the tree, never a call per project; the
// reconciler's scope check then costs nothing.
func TestAuditAllProjectsFolders(t *testing.T) {
	t.Parallel()
	em := folderEmulator(t)
	before := em.Core.Stats.Snapshot()
	code, out, errOut := runOrg(t, em, nil, "audit", "--all-projects", "--scope", "folders/10")
	if code != ExitNonCompliant || errOut != "" {
		t.Fatalf("exit %d, want %d; stderr %q\n%s", code, ExitNonCompliant, errOut, out)
	}
	golden(t, "audit-all-projects-folders.golden", out)
	calls := em.Core.Stats.Snapshot().Sub(before).Calls
	rm := map[string]int64{}
	for k, v := range calls {
		if strings.HasPrefix(k, "google.cloud.resourcemanager.") {
			rm[k] = v
		}
	}
	want := map[string]int64{searchProjects: 2, "google.cloud.resourcemanager.v3.Folders.ListFolders": 2}
	if diff := cmp.Diff(want, rm); diff != "" {
		t.Errorf("Resource Manager calls (-want +got):\n%s", diff)
	}

	// With a pattern too: one SearchProjects of every project (with their
	// parents) instead of one per folder.
	before = em.Core.Stats.Snapshot()
	_, out, _ = runOrg(t, em, nil, "audit", "--all-projects", "--scope", "folders/20,legacy-*", "-o", "json")
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit JSON: %v", err)
	}
	wantProjects := []projectResult{{Project: "legacy-c", Services: 1}, {Project: "team-b", Services: 1}}
	if diff := cmp.Diff(wantProjects, rep.Projects); diff != "" {
		t.Errorf("projects of folders/20,legacy-* (-want +got):\n%s", diff)
	}
	calls = em.Core.Stats.Snapshot().Sub(before).Calls
	if calls[searchProjects] != 1 || calls["google.cloud.resourcemanager.v3.Folders.ListFolders"] != 1 ||
		calls["google.cloud.resourcemanager.v3.Projects.GetProject"] != 0 || calls["google.cloud.resourcemanager.v3.Folders.GetFolder"] != 0 {
		t.Errorf("calls with a pattern: %v; want 1 SearchProjects, 1 ListFolders, no GetProject or GetFolder", calls)
	}
}

func TestAllProjectsFlags(t *testing.T) {
	t.Parallel()
	em := orgEmulator(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "scope without --all-projects", args: []string{"audit", "--project", "team-a", "--scope", "team-*"}, want: "--scope needs --all-projects"},
		{name: "no scope anywhere", args: []string{"audit", "--all-projects"}, want: "--all-projects needs --scope or IAPGUARD_PROJECTS"},
		{name: "bad scope", args: []string{"audit", "--all-projects", "--scope", "organizations/12"}, want: "organizations are not scope entries"},
		{name: "bad folder", args: []string{"audit", "--all-projects", "--scope", "folders/x"}, want: "a folder entry is folders/ followed by the folder's number"},
		{name: "project and all projects", args: []string{"audit", "--all-projects", "--scope", "*", "--project", "team-a"}, want: "give --project or --all-projects, not both"},
		{name: "enforce service and all projects", args: []string{"enforce", "web", "--all-projects", "--scope", "*"}, want: "give a SERVICE or --all-projects, not both"},
		{name: "replay service and all projects", args: []string{"replay", "--all-projects", "--scope", "*", "--project", "team-a", "--service", "web", "--region", testRegion}, want: "give --service, --all or --all-projects, not several"},
		{name: "replay from logs and all projects", args: []string{"replay", "--all-projects", "--scope", "*", "--from-logs", "--project", "team-a"}, want: "--from-logs reads one project's audit log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runOrg(t, em, tc.env, tc.args...)
			checkOneLineError(t, code, stdout, stderr, tc.want)
		})
	}
}

func TestEnforceAllProjects(t *testing.T) {
	t.Parallel()
	em := orgEmulator(t)
	code, out, _ := runOrg(t, em, nil, "enforce", "--all", "--all-projects", "--scope", "team-*", "--dry-run", "-o", "json")
	if code != ExitNonCompliant {
		t.Fatalf("exit %d, want %d\n%s", code, ExitNonCompliant, out)
	}
	var rep enforceReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	wantProjects := []projectResult{{Project: "team-a", Services: 2}, {Project: "team-b", Services: 1}}
	if diff := cmp.Diff(wantProjects, rep.Projects); diff != "" || !rep.DryRun {
		t.Errorf("dryRun %v, projects (-want +got):\n%s", rep.DryRun, diff)
	}

	// For real: every labelled service in scope is fixed, legacy-c's is not.
	code, out, _ = runOrg(t, em, nil, "enforce", "--all-projects", "--scope", "team-*")
	if code != ExitOK {
		t.Fatalf("exit %d, want 0\n%s", code, out)
	}
	if !strings.Contains(out, "2 project(s) in scope team-*") {
		t.Errorf("enforce --all-projects:\n%s", out)
	}
	for _, p := range orgProjects {
		svc, _ := em.Run.Service(p.ID, testRegion, "web")
		if inScope := p.ID != "legacy-c"; svc.GetIapEnabled() != inScope {
			t.Errorf("%s/web: iapEnabled %v, want %v", p.ID, svc.GetIapEnabled(), inScope)
		}
	}
}

// TestReplayAllProjectsViaTopic: one project replay message per project in
// scope, on the host project's replay topic.
func TestReplayAllProjectsViaTopic(t *testing.T) {
	t.Parallel()
	em := orgEmulator(t)
	ctx := t.Context()
	ps := testPubSub(t, em.Addr(), "team-a")
	sub := "projects/team-a/subscriptions/sweep"
	createTopicSubscription(t, ps, "projects/team-a/topics/"+functions.DefaultReplayTopic, sub)

	code, out, errOut := runOrg(t, em, map[string]string{envProjects: "team-*"},
		"replay", "--via-topic", "--all-projects", "--project", "team-a", "--requested-by", "scheduler")
	if code != ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	golden(t, "replay-via-topic-all-projects.golden", out)

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []string
	err := ps.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(m.Data))
		if len(got) == 2 {
			// Wait a little for a third that must not come.
			time.AfterFunc(200*time.Millisecond, cancel)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Strings(got)
	var want []string
	for _, p := range []string{"team-a", "team-b"} {
		b, err := json.Marshal(event.ReplayMessageFor(event.Target{Kind: event.TargetProject, Project: p}, "scheduler"))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(b))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published messages (-want +got):\n%s", diff)
	}
}

// TestReplayAllProjectsLocally: without --via-topic, the function's
// handler reconciles each project in scope here (dry run: plans only).
func TestReplayAllProjectsLocally(t *testing.T) {
	t.Parallel()
	em := orgEmulator(t)
	code, out, errOut := runOrg(t, em, nil, "replay", "--all-projects", "--scope", "team-*", "--dry-run", "-o", "json")
	if code != ExitNonCompliant || errOut != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	var got []string
	for _, m := range parseOutcomes(t, out) {
		if m.Resource.Service != "" {
			got = append(got, m.Resource.Project+"/"+m.Resource.Service+" "+string(m.Outcome))
		}
	}
	sort.Strings(got)
	// Whole-project replays discover the services labelled iap (Cloud
	// Asset query labels.iap:*): the unlabelled docs is not replayed.
	want := []string{"team-a/web remediated", "team-b/web remediated"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

// TestReplayAllProjectsLocallyFolders: the projects found under a folder
// entry pass the local reconciler's scope check (it is given the scope
// With them, as audit's and enforce's are), with no GetProject or
// GetFolder call; legacy-c, outside folders/10, is not replayed.
func TestReplayAllProjectsLocallyFolders(t *testing.T) {
	t.Parallel()
	em := folderEmulator(t)
	before := em.Core.Stats.Snapshot()
	code, out, errOut := runOrg(t, em, nil, "replay", "--all-projects", "--scope", "folders/10", "--dry-run", "-o", "json")
	if code != ExitNonCompliant || errOut != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	var got []string
	for _, m := range parseOutcomes(t, out) {
		got = append(got, m.Resource.Project+"/"+m.Resource.Service+" "+string(m.Outcome))
	}
	sort.Strings(got)
	// Whole-project replays discover the services labelled iap (Cloud
	// Asset query labels.iap:*): the unlabelled docs is not replayed.
	want := []string{"team-a/web remediated", "team-b/web remediated"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	calls := em.Core.Stats.Snapshot().Sub(before).Calls
	if n := calls["google.cloud.resourcemanager.v3.Projects.GetProject"] + calls["google.cloud.resourcemanager.v3.Folders.GetFolder"]; n != 0 {
		t.Errorf("GetProject + GetFolder calls = %d, want 0", n)
	}
}

// TestAuditAllProjectsOneSearchPerParent (issue #18): the projects of
// --all-projects that share a parent are discovered by one Cloud Asset
// search of that parent, not one search (or 1 + regions listings) each;
// a project alone under its parent is searched by itself.
func TestAuditAllProjectsOneSearchPerParent(t *testing.T) {
	t.Parallel()
	var projects []core.Project
	for i := range 5 {
		projects = append(projects, core.Project{ID: fmt.Sprintf("team-%d", i), Number: int64(700000000000 + i), Parent: "folders/10"})
	}
	projects = append(projects, core.Project{ID: "solo", Number: 700000000099, Parent: "folders/11"})
	em, err := emulator.New(emulator.Options{Projects: projects,
		Folders: []core.Folder{{ID: "10", Parent: "organizations/1"}, {ID: "11", Parent: "organizations/1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	for _, p := range projects {
		if _, err := em.Run.Seed(p.ID, testRegion, "web", &runpb.Service{Labels: map[string]string{"iap": "enabled"}, Template: helloTemplate}); err != nil {
			t.Fatal(err)
		}
	}
	const search = "google.cloud.asset.v1.AssetService.SearchAllResources"
	for _, tt := range []struct {
		mode     string
		searches int64
	}{{"", 2}, {"regions", 0}} {
		before := em.Core.Stats.Snapshot()
		_, out, errOut := runOrg(t, em, map[string]string{envDiscovery: tt.mode}, "audit", "--all-projects", "--scope", "folders/10,folders/11", "-o", "json")
		var rep auditReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("mode %q: audit JSON: %v (stderr %s)", tt.mode, err, errOut)
		}
		if len(rep.Projects) != 6 || rep.Summary.Labelled != 6 {
			t.Errorf("mode %q: %d projects, %d labelled services; want 6 and 6", tt.mode, len(rep.Projects), rep.Summary.Labelled)
		}
		calls := em.Core.Stats.Snapshot().Sub(before).Calls
		if calls[search] != tt.searches {
			t.Errorf("mode %q: %d searches, want %d (one per parent holding several projects, one per lone project)", tt.mode, calls[search], tt.searches)
		}
	}
}
