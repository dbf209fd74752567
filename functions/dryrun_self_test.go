package functions

import (
	"encoding/json"
	"testing"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// TestHandleIgnoresOwnDryRunCalls: a dry-running function that receives
// the audit entry of its own validate-only UpdateService (as
// iapguard-enforcer, the deployed identity) publishes a skip and does not
// reconcile, so it cannot trigger itself; live, or for another principal,
// the entry is reconciled.
func TestHandleIgnoresOwnDryRunCalls(t *testing.T) {
	own := func(insert string) []byte {
		var entry map[string]any
		if err := json.Unmarshal(syntheticRunEntry(t, "hello", insert), &entry); err != nil {
			t.Fatal(err)
		}
		entry["protoPayload"].(map[string]any)["authenticationInfo"] = map[string]any{"principalEmail": "iapguard-enforcer@p1.iam.gserviceaccount.com"}
		b, err := json.Marshal(entry)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name          string
		dryRun        bool
		entry         []byte
		wantReconcile bool
	}{
		{"own call in dry run", true, own("synthetic-own-dry"), false},
		{"own call live", false, own("synthetic-own-live"), true},
		{"someone else's change in dry run", true, syntheticRunEntry(t, "hello", "synthetic-alice"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := event.NewAuditLogEvent(tc.entry)
			if err != nil {
				t.Fatal(err)
			}
			rec := &fakeReconciler{}
			pub := &fakePublisher{}
			cfg := testConfig(0)
			cfg.DryRun = tc.dryRun
			if err := NewHandler(cfg, rec, pub, nil).Handle(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			msgs := pub.all()
			if len(msgs) != 1 {
				t.Fatalf("%d outcomes, want 1", len(msgs))
			}
			if got := len(rec.refs) > 0; got != tc.wantReconcile {
				t.Errorf("reconciled = %v, want %v (outcome %s: %s)", got, tc.wantReconcile, msgs[0].Outcome, msgs[0].Reason)
			}
			if !tc.wantReconcile && msgs[0].Outcome != outcome.Skipped {
				t.Errorf("outcome %s, want skipped", msgs[0].Outcome)
			}
		})
	}
}
