package conformance

import (
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	corpus   = flag.String("corpus", "", "folder of _http.log files (and _vcr_cassettes/*.yaml) to replay (default: the committed synthetic corpus, testdata/synthetic)")
	minMatch = flag.Float64("min-match", 0.95, "with -corpus: the least share of replayed exchanges of the methods iapguard uses that must match")
	showDev  = flag.Int("show", 40, "how many deviations to print")
)

// TestConformance replays a corpus against the emulator. Without -corpus it
// replays the committed SYNTHETIC corpus (exchanges written by this project
// from Google's documentation, not recorded traffic), which must match in
// full. With -corpus DIR it replays any folder of _http.log files and
// go-vcr cassettes (_vcr_cassettes/*.yaml), prints
// the per-API counts and the deviations, and requires -min-match over the
// methods iapguard uses:
//
//	go test ./emulator/conformance -run TestConformance -v -corpus DIR
func TestConformance(t *testing.T) {
	dir := *corpus
	external := dir != ""
	if !external {
		dir = filepath.Join("testdata", "synthetic")
	}
	files := map[string]io.Reader{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		// k8s-config-connector's recordings: _http.log, and the older
		// go-vcr cassettes of real traffic in _vcr_cassettes/.
		if d.Name() != "_http.log" && (filepath.Base(filepath.Dir(p)) != "_vcr_cassettes" || filepath.Ext(p) != ".yaml") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		t.Cleanup(func() { f.Close() })
		rel, _ := filepath.Rel(dir, p)
		files[rel] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no _http.log files under %s", dir)
	}
	rep, err := Run(files)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.Format(&sb)
	t.Logf("corpus %s\n%s", dir, sb.String())
	for i, d := range rep.Deviations {
		if i == *showDev {
			t.Logf("… %d more deviations", len(rep.Deviations)-i)
			break
		}
		t.Logf("deviation %s:%d %s %s (%s)\n    %s", d.File, d.Line, d.Method, d.URL, d.Key, strings.Join(d.Diffs, "\n    "))
	}
	m, n := rep.Rate(IapguardUses)
	switch {
	case !external:
		if len(rep.Deviations) > 0 || n == 0 {
			t.Errorf("the synthetic corpus must replay in full: %d of %d matched, %d deviations", m, n, len(rep.Deviations))
		}
	case n == 0:
		t.Errorf("no exchange of a method iapguard uses was replayed")
	case float64(m)/float64(n) < *minMatch:
		t.Errorf("%d of %d exchanges of the methods iapguard uses matched (%.1f %%), want at least %.0f %%", m, n, 100*float64(m)/float64(n), 100**minMatch)
	}
}
