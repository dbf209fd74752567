package test

import (
	"context"
	"testing"
	"time"

	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

func TestSmokeDemoScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	st, err := stack.Start(ctx, stack.Options{OnOutcome: func(m *outcome.Message) {
		t.Logf("%-10s %-10s %s %s %v", m.Outcome, m.Resource.Service, m.Trigger.Method, m.Reason, m.Changes)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl, err := demo.Dial(ctx, st.Emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sc := demo.DefaultScenario()
	if err := cl.Build(ctx, st.Project.ID, "us-central1", sc); err != nil {
		t.Fatal(err)
	}
	if err := st.Settle(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, e := range sc.Expect {
		m := st.Outcomes.Latest(e.Service)
		if m == nil {
			t.Errorf("%s: no outcome", e.Service)
			continue
		}
		if string(m.Outcome) != e.Outcome {
			t.Errorf("%s: latest outcome %s (%s), want %s", e.Service, m.Outcome, m.Reason, e.Outcome)
		}
	}
	t.Logf("stats: %v", st.Emu.Core.Stats.Snapshot().Calls)
}
