package scope

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
	"github.com/iapguard/iapguard/pkg/iapsetup/internal/sentinel"
)

// fakeTree is an AncestryReader over a fixed hierarchy that counts calls:
//
//	organizations/1
//	├── folders/10 ── folders/20 ── folders/30 ── deep (and 7001, its number)
//	│              └─ mid
//	├── folders/11 ── sibling
//	└── top
//	orphan (no parent); hidden (PERMISSION_DENIED)
type fakeTree struct {
	mu       sync.Mutex
	projects map[string]string
	folders  map[string]string
	calls    map[string]int // "p/ID" or "f/ID"
	fail     map[string]error
	gate     chan struct{} // when not nil, every call waits for it
}

func newFakeTree() *fakeTree {
	return &fakeTree{
		projects: map[string]string{
			"deep": "folders/30", "7001": "folders/30", "mid": "folders/10", "sibling": "folders/11",
			"top": "organizations/1", "orphan": "",
		},
		folders: map[string]string{"10": "organizations/1", "11": "organizations/1", "20": "folders/10", "30": "folders/20"},
		calls:   map[string]int{},
		fail:    map[string]error{},
	}
}

func (f *fakeTree) read(ctx context.Context, key string, m map[string]string, id string) (string, error) {
	f.mu.Lock()
	f.calls[key]++
	gate, err := f.gate, f.fail[key]
	parent, ok := m[id]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	switch {
	case err != nil:
		return "", err
	case !ok:
		// As internal/gcp's adapters classify it: the API's error, and the sentinel.
		return "", errors.Join(status.Errorf(codes.PermissionDenied, "Permission denied on %s (or it may not exist)", key), sentinel.ErrPermission)
	}
	return parent, nil
}

func (f *fakeTree) ProjectParent(ctx context.Context, p string) (string, error) {
	return f.read(ctx, "p/"+p, f.projects, p)
}

func (f *fakeTree) FolderParent(ctx context.Context, id string) (string, error) {
	return f.read(ctx, "f/"+id, f.folders, id)
}

func (f *fakeTree) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeTree) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = map[string]int{}
}

func (f *fakeTree) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

func TestScopeCheckFolders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, scope, project string
		want                 bool
		wantReason           string // in the reason when out
		wantCalls            map[string]int
	}{
		{name: "listed id: no call", scope: "folders/10,top", project: "top", want: true, wantCalls: map[string]int{}},
		{name: "pattern: no call", scope: "folders/10,s*", project: "sibling", want: true, wantCalls: map[string]int{}},
		{name: "direct child of a listed folder", scope: "folders/10", project: "mid", want: true,
			wantCalls: map[string]int{"p/mid": 1}},
		{name: "three folders deep", scope: "folders/10", project: "deep", want: true,
			wantCalls: map[string]int{"p/deep": 1, "f/30": 1, "f/20": 1}},
		{name: "named by number", scope: "folders/10", project: "7001", want: true,
			wantCalls: map[string]int{"p/7001": 1, "f/30": 1, "f/20": 1}},
		{name: "the nearest listed folder ends the walk", scope: "folders/10,folders/30", project: "deep", want: true,
			wantCalls: map[string]int{"p/deep": 1}},
		{name: "sibling folder: out, ancestry in the reason", scope: "folders/10", project: "sibling",
			wantReason: "project sibling is outside iapguard's scope (folders/10); ancestry checked: projects/sibling → folders/11 → organizations/1",
			wantCalls:  map[string]int{"p/sibling": 1, "f/11": 1}},
		{name: "directly under the organisation: out", scope: "folders/10", project: "top",
			wantReason: "ancestry checked: projects/top → organizations/1", wantCalls: map[string]int{"p/top": 1}},
		{name: "no parent: out", scope: "folders/10", project: "orphan",
			wantReason: "ancestry checked: projects/orphan (no parent)", wantCalls: map[string]int{"p/orphan": 1}},
		{name: "permission denied: out, saying what is missing", scope: "folders/10", project: "hidden",
			wantReason: "its ancestry could not be read past projects/hidden: rpc error: code = PermissionDenied",
			wantCalls:  map[string]int{"p/hidden": 1}},
		{name: "no folder entries: no call", scope: "team-*", project: "deep",
			wantReason: "project deep is outside iapguard's scope (team-*)", wantCalls: map[string]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tree := newFakeTree()
			sc, err := Parse(tc.scope)
			if err != nil {
				t.Fatal(err)
			}
			sc = sc.WithAncestry(tree, AncestryOptions{})
			in, reason, err := sc.Check(context.Background(), tc.project)
			if err != nil {
				t.Fatalf("Check(%s): %v", tc.project, err)
			}
			if in != tc.want || !in && !strings.Contains(reason, tc.wantReason) {
				t.Errorf("Check(%s) = %v, %q; want %v, reason containing %q", tc.project, in, reason, tc.want, tc.wantReason)
			}
			if diff := cmp.Diff(tc.wantCalls, tree.snapshot()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			// Warm: the same answer with zero calls.
			tree.reset()
			in2, reason2, err := sc.Check(context.Background(), tc.project)
			if err != nil || in2 != in || reason2 != reason {
				t.Errorf("second Check(%s) = %v, %q, %v; want the first answer", tc.project, in2, reason2, err)
			}
			if n := tree.total(); n != 0 {
				t.Errorf("second Check(%s) made %d calls, want 0 (cached)", tc.project, n)
			}
		})
	}
}

func TestScopeCheckSharesFolders(t *testing.T) {
	t.Parallel()
	tree := newFakeTree()
	sc := New("folders/10").WithAncestry(tree, AncestryOptions{})
	ctx := context.Background()
	for _, p := range []string{"deep", "7001"} {
		if in, reason, err := sc.Check(ctx, p); !in || err != nil {
			t.Fatalf("Check(%s) = %v, %q, %v", p, in, reason, err)
		}
	}
	// The second name of the project cost one GetProject: folders 30 and 20
	// were cached by the first.
	want := map[string]int{"p/deep": 1, "p/7001": 1, "f/30": 1, "f/20": 1}
	if diff := cmp.Diff(want, tree.snapshot()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	projects, folders := sc.anc.projects.Stats(), sc.anc.folders.Stats()
	if projects.Len != 2 || folders.Len != 2 || projects.Max != cache.DefaultSize {
		t.Errorf("ancestry caches = %+v, %+v, want 2 projects, 2 folders, bound %d", projects, folders, cache.DefaultSize)
	}
}

func TestScopeCheckExpiry(t *testing.T) {
	t.Parallel()
	tree := newFakeTree()
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sc := New("folders/10").WithAncestry(tree, AncestryOptions{TTL: 10 * time.Minute, DeniedTTL: time.Minute, now: clock})
	ctx := context.Background()
	check := func(p string) {
		t.Helper()
		if _, _, err := sc.Check(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	check("mid")
	check("hidden")
	tree.reset()
	advance(2 * time.Minute) // the refusal expired, the parent did not
	check("mid")
	check("hidden")
	if diff := cmp.Diff(map[string]int{"p/hidden": 1}, tree.snapshot()); diff != "" {
		t.Errorf("after 2 minutes: calls (-want +got):\n%s", diff)
	}
	tree.reset()
	advance(10 * time.Minute)
	check("mid")
	if diff := cmp.Diff(map[string]int{"p/mid": 1}, tree.snapshot()); diff != "" {
		t.Errorf("after 12 minutes: calls (-want +got):\n%s", diff)
	}
}

func TestScopeCheckBounded(t *testing.T) {
	t.Parallel()
	tree := newFakeTree()
	for i := range 10 {
		tree.projects[fmt.Sprintf("p%d", i)] = "folders/10"
	}
	sc := New("folders/10").WithAncestry(tree, AncestryOptions{Size: 4})
	for i := range 10 {
		if in, _, err := sc.Check(context.Background(), fmt.Sprintf("p%d", i)); !in || err != nil {
			t.Fatalf("Check(p%d) = %v, %v", i, in, err)
		}
	}
	if c := sc.anc.projects.Stats(); c.Len != 4 || c.Evictions != 6 {
		t.Errorf("project cache = %+v, want 4 entries after 6 evictions", c)
	}
}

func TestScopeCheckSingleflight(t *testing.T) {
	t.Parallel()
	tree := newFakeTree()
	tree.gate = make(chan struct{})
	sc := New("folders/10").WithAncestry(tree, AncestryOptions{})
	const burst = 50
	var wg sync.WaitGroup
	var ins atomic.Int32
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if in, _, err := sc.Check(context.Background(), "deep"); in && err == nil {
				ins.Add(1)
			}
		}()
	}
	// Let the burst pile up on the first call, then open the gate.
	for deadline := time.Now().Add(5 * time.Second); tree.total() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(tree.gate)
	wg.Wait()
	if ins.Load() != burst {
		t.Errorf("%d of %d checks in scope, want all", ins.Load(), burst)
	}
	want := map[string]int{"p/deep": 1, "f/30": 1, "f/20": 1}
	if diff := cmp.Diff(want, tree.snapshot()); diff != "" {
		t.Errorf("calls for a burst of %d checks (-want +got):\n%s", burst, diff)
	}
}

func TestScopeCheckErrors(t *testing.T) {
	t.Parallel()
	tree := newFakeTree()
	tree.fail["f/20"] = errors.Join(status.Error(codes.Unavailable, "try again"), sentinel.ErrTransient)
	sc := New("folders/10").WithAncestry(tree, AncestryOptions{})
	_, _, err := sc.Check(context.Background(), "deep")
	if err == nil || !errors.Is(err, sentinel.ErrTransient) || !strings.Contains(err.Error(), "projects/deep → folders/30 → folders/20") {
		t.Fatalf("Check with GetFolder UNAVAILABLE: error %v, want a transient error naming the chain", err)
	}
	// Errors are not cached; the links read before are.
	delete(tree.fail, "f/20")
	tree.reset()
	if in, _, err := sc.Check(context.Background(), "deep"); !in || err != nil {
		t.Fatalf("retry: %v, %v", in, err)
	}
	if diff := cmp.Diff(map[string]int{"f/20": 1}, tree.snapshot()); diff != "" {
		t.Errorf("retry calls (-want +got):\n%s", diff)
	}

	// A cycle (impossible in Google; a broken reader) ends with an error.
	loop := newFakeTree()
	loop.folders["30"] = "folders/31"
	loop.folders["31"] = "folders/30"
	_, _, err = New("folders/10").WithAncestry(loop, AncestryOptions{}).Check(context.Background(), "deep")
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("cycle: error %v, want 'more than … levels'", err)
	}

	// Folder entries without a reader: out, saying why, no panic.
	in, reason, err := New("folders/10").Check(context.Background(), "deep")
	if in || err != nil || !strings.Contains(reason, "no Resource Manager client") {
		t.Errorf("no reader: %v, %q, %v", in, reason, err)
	}
	// A cancelled context is an error, not a verdict.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gated := newFakeTree()
	gated.gate = make(chan struct{})
	defer close(gated.gate) // the shared read outlives the cancelled caller
	_, _, err = New("folders/10").WithAncestry(gated, AncestryOptions{}).Check(ctx, "deep")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
}

// fakeDirectory is a FolderDirectory over fakeTree that counts calls.
type fakeDirectory struct {
	tree  *fakeTree
	calls map[string]int
}

func (d *fakeDirectory) ListProjects(context.Context) ([]ProjectInfo, error) {
	d.calls["ListProjects"]++
	var out []ProjectInfo
	for p, parent := range d.tree.projects {
		if !isProjectNumber(p) {
			out = append(out, ProjectInfo{ID: p, Parent: parent})
		}
	}
	return out, nil
}

func (d *fakeDirectory) ListFolders(_ context.Context, parent string) ([]string, error) {
	d.calls["ListFolders"]++
	var out []string
	for id, p := range d.tree.folders {
		if p == parent {
			out = append(out, "folders/"+id)
		}
	}
	return out, nil
}

func (d *fakeDirectory) ListProjectsIn(_ context.Context, parent string) ([]ProjectInfo, error) {
	d.calls["ListProjectsIn"]++
	var out []ProjectInfo
	for p, pp := range d.tree.projects {
		if pp == parent && !isProjectNumber(p) {
			out = append(out, ProjectInfo{ID: p, Parent: pp})
		}
	}
	return out, nil
}

func TestScopeProjectsFolders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scope     string
		want      []string
		wantCalls map[string]int
	}{
		{scope: "folders/10", want: []string{"deep", "mid"},
			wantCalls: map[string]int{"ListFolders": 3, "ListProjectsIn": 3}},
		{scope: "folders/20,top", want: []string{"deep", "top"},
			wantCalls: map[string]int{"ListFolders": 2, "ListProjectsIn": 2}},
		{scope: "folders/11,o*", want: []string{"orphan", "sibling"},
			wantCalls: map[string]int{"ListFolders": 1, "ListProjects": 1}},
		{scope: "folders/10,folders/20", want: []string{"deep", "mid"},
			wantCalls: map[string]int{"ListFolders": 3, "ListProjectsIn": 3}},
	}
	for _, tc := range tests {
		t.Run(tc.scope, func(t *testing.T) {
			t.Parallel()
			sc, err := Parse(tc.scope)
			if err != nil {
				t.Fatal(err)
			}
			d := &fakeDirectory{tree: newFakeTree(), calls: map[string]int{}}
			ps, err := sc.Projects(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.Name())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Projects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCalls, d.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
	// A plain ProjectLister cannot expand folders.
	if _, err := New("folders/10").Projects(context.Background(), lister(nil)); !errors.Is(err, ErrNeedDirectory) {
		t.Errorf("Projects with a plain lister: %v, want ErrNeedDirectory", err)
	}
	if _, err := New("folders/10").Projects(context.Background(), nil); !errors.Is(err, ErrNeedDirectory) {
		t.Errorf("Projects without a lister: %v, want ErrNeedDirectory", err)
	}
}

// lister is a plain ProjectLister.
type lister []ProjectInfo

func (l lister) ListProjects(context.Context) ([]ProjectInfo, error) { return l, nil }

// BenchmarkScopeCheckFolderWarm measures the scope decision for an event of
// a project that is in scope through a folder entry, its ancestry cached,
// in a scope that also lists 1,000 projects: no call, and the cost must not
// grow with the listed entries.
func BenchmarkScopeCheckFolderWarm(b *testing.B) {
	s, _ := scopeOf1000()
	s = New(append(s.Listed(), "folders/10")...).WithAncestry(newFakeTree(), AncestryOptions{})
	ctx := context.Background()
	if in, _, err := s.Check(ctx, "deep"); !in || err != nil {
		b.Fatalf("Check(deep) = %v, %v", in, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if in, _, err := s.Check(ctx, "deep"); !in || err != nil {
			b.Fatalf("Check(deep) = %v, %v", in, err)
		}
	}
}
