package functions

import (
	"testing"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/pkg/outcome"
)

const testOutcomesTopic = "projects/p/topics/outcomes"

// NewPubSubService honours PUBSUB_EMULATOR_HOST, which the generated gRPC
// client read by itself: set, the outcomes go to that emulator over REST
// without credentials, even when IAPGUARD_EMULATOR_HOST names another;
// unset, they go to IAPGUARD_EMULATOR_HOST's.
func TestNewPubSubServiceHonoursPubSubEmulatorHost(t *testing.T) {
	t.Parallel()
	shared := emulatortest.StartPubSub(t, testOutcomesTopic)
	own := emulatortest.StartPubSub(t, testOutcomesTopic)
	for _, tc := range []struct {
		name      string
		pubsubEnv string
		wantOwn   bool
	}{
		{"PUBSUB_EMULATOR_HOST set", own.Addr(), true},
		{"PUBSUB_EMULATOR_HOST set with spaces", " " + own.Addr() + " ", true},
		{"PUBSUB_EMULATOR_HOST unset", "", false},
	} {
		shared.PubSub.ClearMessages()
		own.PubSub.ClearMessages()
		getenv := func(k string) string {
			if k == EnvPubSubHost {
				return tc.pubsubEnv
			}
			return ""
		}
		s, closeIdle, err := NewPubSubService(t.Context(), shared.Addr(), getenv)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		m := &outcome.Message{Outcome: outcome.Compliant, Resource: outcome.Resource{Name: "projects/p/locations/r/services/s", Project: "p"}}
		if _, err := outcome.NewPublisher(s, "p", "outcomes").Publish(t.Context(), m); err != nil {
			t.Errorf("%s: Publish: %v", tc.name, err)
		}
		closeIdle()
		wantOwn, wantShared := 0, 1
		if tc.wantOwn {
			wantOwn, wantShared = 1, 0
		}
		if got := len(own.PubSub.Messages()); got != wantOwn {
			t.Errorf("%s: %d messages at PUBSUB_EMULATOR_HOST's emulator, want %d", tc.name, got, wantOwn)
		}
		if got := len(shared.PubSub.Messages()); got != wantShared {
			t.Errorf("%s: %d messages at IAPGUARD_EMULATOR_HOST's emulator, want %d", tc.name, got, wantShared)
		}
	}
}

// The instance reads PUBSUB_EMULATOR_HOST from the process environment.
func TestInstancePublishesToPubSubEmulatorHost(t *testing.T) {
	shared := emulatortest.StartPubSub(t, testOutcomesTopic)
	own := emulatortest.StartPubSub(t, testOutcomesTopic)
	t.Setenv(EnvPubSubHost, own.Addr())
	inst, err := NewInstanceFromConfig(t.Context(), Config{Project: "p", Projects: []string{"p"}, OutcomesTopic: "outcomes", EmulatorHost: shared.Addr()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	m := &outcome.Message{Outcome: outcome.Compliant, Resource: outcome.Resource{Name: "projects/p/locations/r/services/s", Project: "p"}}
	if _, err := outcome.NewPublisher(inst.PubSub, "p", "outcomes").Publish(t.Context(), m); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got := len(own.PubSub.Messages()); got != 1 {
		t.Errorf("%d messages at PUBSUB_EMULATOR_HOST's emulator, want 1", got)
	}
	if got := len(shared.PubSub.Messages()); got != 0 {
		t.Errorf("%d messages at IAPGUARD_EMULATOR_HOST's emulator, want 0", got)
	}
}
