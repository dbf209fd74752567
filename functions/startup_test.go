package functions

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp/syntax"
	"strconv"
	"strings"
	"testing"
)

// maxInitRegexpInsts bounds the compiled size of a package-level regular
// expression in code the function links. boundedre compiles it on first
// use (the first event that needs it); a counted repetition such as
// {1,255} multiplies the program (and its compile time) by its bound, so
// lengths are checked apart (internal/boundedre).
const maxInitRegexpInsts = 120

// No iapguard package linked into the function compiles a regular
// expression at package initialisation: Go runs it at every process start,
// before the first request can be answered, whether or not the expression
// is used (about 0.3 ms of the start for a dozen of them). Package-level
// expressions go through boundedre.MustCompile, compiled on first use;
// each is parsed here (a bad one fails this test) and its program kept
// small.
func TestNoHeavyRegexpAtPackageInit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.ImportPath}} {{.Dir}} {{join .GoFiles ","}}{{end}}`, "./cmd/enforcer").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 3 || !strings.HasPrefix(f[0], "github.com/iapguard/iapguard") {
			continue
		}
		for _, name := range strings.Split(f[2], ",") {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(f[1], name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.VAR {
					continue
				}
				ast.Inspect(g, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok || len(call.Args) == 0 {
						return true
					}
					sel, ok := call.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "regexp" && strings.Contains(sel.Sel.Name, "Compile") {
						t.Errorf("%s/%s: regexp.%s at package level runs at every process start: use boundedre.MustCompile (compiled on first use)",
							f[0], name, sel.Sel.Name)
						return true
					}
					if sel.Sel.Name != "MustCompile" {
						return true
					}
					lit, ok := call.Args[0].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						return true
					}
					expr, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					re, err := syntax.Parse(expr, syntax.Perl)
					if err != nil {
						t.Fatalf("%s/%s: %v", f[0], name, err)
					}
					prog, err := syntax.Compile(re.Simplify())
					if err != nil {
						t.Fatal(err)
					}
					checked++
					if len(prog.Inst) > maxInitRegexpInsts {
						t.Errorf("%s/%s: %s compiles to %d instructions at every process start (at most %d): write the counted repetition as + or * and check the length apart (internal/boundedre)",
							f[0], name, expr, len(prog.Inst), maxInitRegexpInsts)
					}
					return true
				})
			}
		}
	}
	if checked < 5 {
		t.Fatalf("found %d package-level expressions; the scan is not seeing the code", checked)
	}
}

// The function reaches every Google API through its discovery-based REST
// client (google.golang.org/api/...): no generated gRPC client or protobuf
// API package is linked into it. Those packages register their descriptors
// at every process start whether or not a client is built: Cloud Run v2's
// runpb 0.22 ms, the shared annotations 0.14 ms, pubsubpb 0.12 ms, iampb
// 0.08 ms, with longrunning and location (docs/performance.md). Tests and
// iapctl may use them.
func TestEnforcerLinksNoGeneratedAPIClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "./cmd/enforcer").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"cloud.google.com/go/pubsub", "cloud.google.com/go/run", "cloud.google.com/go/longrunning",
		"cloud.google.com/go/iam", "cloud.google.com/go/resourcemanager", "cloud.google.com/go/asset",
		"cloud.google.com/go/secretmanager", "cloud.google.com/go/logging",
		"google.golang.org/genproto/googleapis/api/annotations", "google.golang.org/genproto/googleapis/cloud/",
	}
	want := map[string]bool{"google.golang.org/api/pubsub/v1": false, "google.golang.org/api/run/v2": false}
	for line := range strings.Lines(string(out)) {
		pkg := strings.TrimSpace(line)
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("the function links %s: use the API's discovery-based REST client (google.golang.org/api/...)", pkg)
			}
		}
		if _, ok := want[pkg]; ok {
			want[pkg] = true
		}
	}
	for pkg, seen := range want {
		if !seen {
			t.Errorf("the function does not link %s; the scan is not seeing its dependencies", pkg)
		}
	}
}
