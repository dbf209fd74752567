package emulator_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/iapguard/iapguard"

// sandboxPackages are the product packages allowed to link the emulator:
// iapctl's `sandbox` and `emulator` commands (internal/cli) run it, with the
// local stack around it (internal/stack, internal/demo), and the binaries
// built from them (cmd/iapctl, and cmd/iapbench over the benchmark harness).
// The deployed function (functions/...) and every library package
// (pkg/..., internal/gcp, internal/event, ...) must not.
var sandboxPackages = map[string]bool{
	module + "/internal/cli":   true,
	module + "/internal/stack": true,
	module + "/internal/demo":  true,
	module + "/cmd/iapctl":     true,
	module + "/cmd/iapbench":   true,
}

// emulatorMayUse are the packages outside emulator/ the emulator may link:
// the Eventarc trigger definitions, which its Eventarc stand-in reads the
// way Eventarc reads the deployed triggers, and the names of the
// environment variables it prints (internal/envname, which imports
// nothing). Nothing else of the product: the emulator renders what Google
// sends itself.
var emulatorMayUse = map[string]bool{
	module + "/eventarc":         true,
	module + "/internal/envname": true,
}

// area names the part of the repository a package belongs to.
func area(pkg string) string {
	rel, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		if pkg == module {
			return "product"
		}
		return "external"
	}
	switch top, _, _ := strings.Cut(rel, "/"); top {
	case "emulator":
		return "emulator"
	case "test", "tools":
		return "harness"
	}
	return "product"
}

// The emulator and the product are built separately: no emulator package
// links a product package (except the trigger definitions), and no product
// package links the emulator (except the CLI's sandbox). Test files are not
// held to it: tests cross-check the two against each other. Checked on the
// packages' dependency closures as `go list -deps` computes them.
func TestEmulatorAndProductImportRule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg, deps := fields[0], fields[1:]
		from := area(pkg)
		for _, dep := range deps {
			to := area(dep)
			switch {
			case from == "emulator" && to == "product" && !emulatorMayUse[dep]:
				t.Errorf("emulator package %s links product package %s", pkg, dep)
			case from == "product" && to == "emulator" && !sandboxPackages[pkg]:
				t.Errorf("product package %s links emulator package %s", pkg, dep)
			}
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("go list listed %d packages; the check saw too few to mean anything", checked)
	}
}
