package deploy

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/eventarc"
)

var update = flag.Bool("update", false, "rewrite golden files and the committed generated deployment files")

// repoRoot is the module root, found by walking up to go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
}

// readRepoFile reads a file given relative to the repository root.
func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatalf("reading %s: %v", rel, err)
	}
	return b
}

// checkGolden compares got with the file at path (rewriting it with
// -update); what names the artefact in the failure message.
func checkGolden(t *testing.T, path, what string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (go test ./internal/deploy -update writes it): %v", path, err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from %s; if the change is intended run go test ./internal/deploy -update (-file +generated):\n%s", path, what, diff)
	}
}

func syntheticTriggers(t *testing.T) []eventarc.Trigger {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "synthetic-triggers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := eventarc.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func liveTriggers(t *testing.T) []eventarc.Trigger {
	t.Helper()
	ts, err := Triggers()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

var testConfig = Config{
	Project:         "demo-project",
	Region:          "us-central1",
	FunctionService: "iapguard-enforcer",
	ServiceAccount:  "iapguard-trigger@demo-project.iam.gserviceaccount.com",
}
