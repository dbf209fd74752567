package deploy

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/internal/iamperm"
)

// TestDocsPermissionTable keeps the permission table in docs/deploy.md equal
// to internal/iamperm: every method, who calls it, its permissions and the
// confidence level.
func TestDocsPermissionTable(t *testing.T) {
	doc := string(readRepoFile(t, "docs/deploy.md"))
	rowRE := regexp.MustCompile("(?m)^\\| `([a-zA-Z0-9.]+)` \\| (function|operator) \\| (.+) \\| (documented|name-only|unverified) \\|$")
	permRE := regexp.MustCompile("`([a-zA-Z0-9.]+)`")
	type row struct {
		Who, Confidence string
		Permissions     []string
	}
	got := map[string]row{}
	for _, m := range rowRE.FindAllStringSubmatch(doc, -1) {
		var perms []string
		for _, p := range permRE.FindAllStringSubmatch(m[3], -1) {
			perms = append(perms, p[1])
		}
		slices.Sort(perms)
		got[m[1]] = row{Who: m[2], Confidence: m[4], Permissions: perms}
	}
	want := map[string]row{}
	for _, e := range iamperm.Table() {
		want[e.Method] = row{Who: e.Who, Confidence: string(e.Confidence), Permissions: e.Permissions}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/deploy.md permission table differs from internal/iamperm (-code +docs):\n%s", diff)
	}
}

// TestDocsCommands checks that the deployment docs use the names the code
// uses.
func TestDocsCommands(t *testing.T) {
	for doc, wants := range map[string][]string{
		"docs/deploy.md": {
			"https://cloud.google.com/functions/docs/writing", "_DRY_RUN=true", "_DRY_RUN=false",
			OutcomesTopic, DeadLetterTopic, OutcomeSchema, DefaultService, "iapctl deploy triggers --format=log-filter",
			"deploy/scripts/dead-letter.sh", iamperm.FunctionRoleID, iamperm.OperatorRoleID,
		},
		"docs/operations.md": {
			"iapguard-replay", DeadLetterTopic, "iapguard-dead-letter-hold", "iapguard-sweep-", "IAPGUARD_DRY_RUN",
			"gcloud scheduler jobs run", "gcloud pubsub topics publish iapguard-replay",
		},
	} {
		text := string(readRepoFile(t, doc))
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s does not mention %q", doc, w)
			}
		}
	}
}

// TestNoBetaIAPFlag: Cloud Run's --iap flag is GA, so no fix hint, doc or
// golden tells users to use the beta command group for it.
func TestNoBetaIAPFlag(t *testing.T) {
	root := repoRoot(t)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".golden", ".json", ".sh", ".tf", ".yaml", ".txt":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("gcloud "+"beta run ")) { // split, so this file does not match itself
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s says `gcloud beta run`; the IAP flag of gcloud run services update is GA", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
