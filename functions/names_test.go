package functions

import (
	"strings"
	"testing"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// TestHandleInvalidNameRejected: an event naming a service Google could
// never have created ("a..b", 128 characters) ends rejected, saying which
// rule the name breaks, and reaches no reconcile (so no API call). Before
// the decoder checked names such events were reconciled and ended failed.
func TestHandleInvalidNameRejected(t *testing.T) {
	for _, tc := range []struct{ name, svc string }{
		{"dots", "a..b"},
		{"128 characters", strings.Repeat("a", 128)},
		{"50 characters", strings.Repeat("a", 50)},
		{"upper case", "Web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fakeReconciler{}
			pub := &fakePublisher{}
			h := NewHandler(testConfig(1), rec, pub, nil)
			e := runEvent(t, tc.svc, "synthetic-bad-name")
			if err := h.Handle(t.Context(), e); err != nil {
				t.Fatalf("Handle = %v", err)
			}
			ms := pub.forEvent(e.ID())
			if len(ms) != 1 || ms[0].Outcome != outcome.Rejected {
				t.Fatalf("outcomes %+v, want one rejected", ms)
			}
			if !strings.Contains(ms[0].Reason, event.ServiceNameRule) {
				t.Errorf("reason %q does not say what a service name must be", ms[0].Reason)
			}
			if got := rec.services(); len(got) != 0 {
				t.Errorf("reconciled %v, want nothing", got)
			}
		})
	}
}
