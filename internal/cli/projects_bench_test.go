package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/iapguard/iapguard/emulator/core"
)

// BenchmarkAuditAllProjects1000 runs `iapctl audit --all-projects` over
// 1,000 emulated projects with one labelled, public service each (the
// figures in docs/orgwide.md):
//
//	go test ./internal/cli -run '^$' -bench AuditAllProjects1000 -benchtime 1x
//
// It reports the API calls per run and per project.
func BenchmarkAuditAllProjects1000(b *testing.B) {
	const n = 1000
	projects := make([]core.Project, n)
	for i := range projects {
		projects[i] = core.Project{ID: fmt.Sprintf("team-%04d", i), Number: int64(100000000000 + i)}
	}
	em := webEmulator(b, projects)
	ctx := withEnv(b.Context(), map[string]string{envEmulatorHost: em.Addr()})
	var calls core.Snapshot
	b.ResetTimer()
	for range b.N {
		before := em.Core.Stats.Snapshot()
		var out, errOut bytes.Buffer
		if code := Main(ctx, []string{"audit", "--all-projects", "--scope", "team-*", "-o", "json"}, strings.NewReader(""), &out, &errOut); code != ExitNonCompliant {
			b.Fatalf("exit %d, want %d: %s", code, ExitNonCompliant, errOut.String())
		}
		calls = em.Core.Stats.Snapshot().Sub(before)
	}
	b.StopTimer()
	total := 0
	for m, c := range calls.Calls {
		total += int(c)
		b.Logf("%-50s %d", m, c)
	}
	b.ReportMetric(float64(total), "calls/run")
	b.ReportMetric(float64(total-int(calls.Calls[searchProjects]))/n, "calls/project")
}
