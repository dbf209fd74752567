package iamperm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// callSite maps the calls one file makes on its Google clients to the
// emulator's method keys: a call whose receiver chain is Prefix followed by
// Depth more names (e.g. "a.c." + "BackendServices.Get") is the method
// Key(names). It is the only hand-written part of the derivation; the
// calls themselves are read from the code.
type callSite struct {
	File   string
	Prefix string
	Depth  int
	Key    func(names []string) string
}

func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[n:]
}

// callSites covers every file that calls a Google API: the adapters in
// internal/gcp, the outcome publisher, the function's handler and iapctl's
// log reader and replay publisher.
var callSites = []callSite{
	{"internal/gcp/compute.go", "a.c.", 2, func(n []string) string { return "compute." + lowerFirst(n[0]) + "." + lowerFirst(n[1]) }},
	{"internal/gcp/iap.go", "a.c.V1.", 1, func(n []string) string { return "iap." + lowerFirst(n[0]) }},
	{"internal/gcp/identity.go", "a.c.", 2, func(n []string) string { return "serviceusage." + lowerFirst(n[0]) + "." + lowerFirst(n[1]) }},
	// The REST clients (google.golang.org/api/...) name a method by its
	// resource collection and verb; the emulator keys it by the gRPC method
	// Google transcodes it to.
	{"internal/gcp/resourcemanager.go", "d.c.", 2, func(n []string) string {
		return "google.cloud.resourcemanager.v3." + n[0] + "." + restVerbs[n[0]+"."+n[1]]
	}},
	{"internal/gcp/run.go", "a.c.Projects.Locations.Services.", 1, func(n []string) string {
		return "google.cloud.run.v2.Services." + restVerbs["Services."+n[0]]
	}},
	{"internal/gcp/run.go", "a.c.Projects.Locations.Operations.", 1, func(n []string) string {
		return "google.longrunning.Operations." + restVerbs["Operations."+n[0]]
	}},
	{"internal/gcp/discovery.go", "d.asset.V1.", 1, func(n []string) string { return "google.cloud.asset.v1.AssetService." + n[0] }},
	{"internal/gcp/discovery.go", "d.v1.Projects.Locations.", 1, func(n []string) string { return "run.projects.locations." + lowerFirst(n[0]) }},
	// The function's outcome and replay publishers (pkg/outcome,
	// functions/sweep.go) publish through internal/pubsubrest's REST client.
	{"internal/pubsubrest/pubsubrest.go", "s.Projects.Topics.", 1, func(n []string) string { return "google.pubsub.v1.Publisher." + n[0] }},
	{"internal/gcp/secrets.go", "a.c.Projects.Secrets.Versions.", 1, func(n []string) string {
		return "google.cloud.secretmanager.v1.SecretManagerService." + restVerbs["Versions."+n[0]]
	}},
	{"internal/cli/replay.go", "pub.", 1, func(n []string) string { return "google.pubsub.v1.Publisher." + n[0] }},
	{"internal/cli/replay.go", "lc.", 1, func(n []string) string { return "google.logging.v2.LoggingServiceV2." + n[0] }},
}

// restVerbs maps a REST client's collection.verb to the gRPC method name
// (an unknown one maps to "", which the key then ends with: reported as a
// call the table lacks).
var restVerbs = map[string]string{
	"Projects.Get":    "GetProject",
	"Projects.Search": "SearchProjects",
	"Folders.Get":     "GetFolder",
	"Folders.List":    "ListFolders",
	"Versions.Access": "AccessSecretVersion",
	// Cloud Run Admin API v2 (PATCH is UpdateService).
	"Services.Get":          "GetService",
	"Services.List":         "ListServices",
	"Services.Patch":        "UpdateService",
	"Services.GetIamPolicy": "GetIamPolicy",
	"Services.SetIamPolicy": "SetIamPolicy",
	"Operations.Get":        "GetOperation",
}

// notAPICalls are client methods that make no API call (the Pub/Sub
// publisher's local flow control and shutdown included).
var notAPICalls = map[string]bool{"Close": true, "Done": true, "Name": true, "Metadata": true, "ResumePublish": true, "Stop": true}

// chain renders a selector chain of identifiers ("a.c.X.Y"), or "" when it
// holds anything else (a call, an index).
func chain(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		if l := chain(x.X); l != "" {
			return l + "." + x.Sel.Name
		}
	}
	return ""
}

// TestTableDerivedFromCalls reads the calls the code makes on its Google
// clients (callSites) and checks the table both ways: every call has an
// entry (nothing missing: a 403 in production), and every entry is a call
// the code makes (nothing unused: a permission granted for nothing). The
// transport-seam test (test/permissions_test.go) sees only what the
// emulator serves and the scenarios reach; this sees every call site.
func TestTableDerivedFromCalls(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	called := map[string]string{} // method key → where
	for _, cs := range callSites {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, filepath.Join(root, cs.File), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			c := chain(call.Fun)
			rest, ok := strings.CutPrefix(c, cs.Prefix)
			if !ok {
				return true
			}
			names := strings.Split(rest, ".")
			if len(names) != cs.Depth || notAPICalls[names[len(names)-1]] {
				return true
			}
			if key := cs.Key(names); key != "" {
				called[key] = fset.Position(call.Pos()).String()
				found++
			}
			return true
		})
		if found == 0 {
			t.Errorf("%s: no calls on %s*; the call site description is stale", cs.File, cs.Prefix)
		}
	}
	inTable := map[string]bool{}
	for _, e := range Table() {
		inTable[e.Method] = true
		if _, ok := called[e.Method]; !ok {
			t.Errorf("table entry %s: the code never calls it (unused permissions %v)", e.Method, e.Permissions)
		}
	}
	var keys []string
	for k := range called {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !inTable[k] {
			t.Errorf("%s calls %s, which the table does not list (PERMISSION_DENIED in production)", called[k], k)
		}
	}
}
