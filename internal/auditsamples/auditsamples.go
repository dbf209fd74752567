// Package auditsamples locates the real Cloud Audit Logs samples that tests
// compare against: shared/testdata/auditlog, checked out beside the
// repository (CI lays ../shared next to its clone). Their absence is a test
// failure, never a skip: the real samples are the ground truth.
package auditsamples

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the samples directory, found by walking up from the working
// directory (a package directory under go test).
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		cand := filepath.Join(dir, "shared", "testdata", "auditlog")
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("shared/testdata/auditlog not found above the package directory; check shared/ out beside the repository")
		}
		dir = parent
	}
}

// Read returns one sample file's bytes.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), name))
	if err != nil {
		t.Fatalf("reading audit-log sample %s: %v", name, err)
	}
	return b
}
