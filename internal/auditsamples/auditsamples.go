// Package auditsamples locates the real Cloud Audit Logs samples that tests
// compare against. They live in this package's testdata folder, copied
// byte-for-byte from public repositories; testdata/SOURCES.md names each
// file's origin, commit and licence. A plain clone of the repository is all a
// test needs: nothing is read from outside it.
package auditsamples

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir returns the samples directory (this package's testdata), located from
// this source file so it works from any package directory under go test.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("auditsamples: cannot locate the package source")
	}
	dir := filepath.Join(filepath.Dir(file), "testdata")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("audit-log samples not found at %s: %v", dir, err)
	}
	return dir
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
