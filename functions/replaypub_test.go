package functions

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/api/option"
	pubsub "google.golang.org/api/pubsub/v1"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/event"
)

const publishMethod = "google.pubsub.v1.Publisher.Publish"

// PublishReplays sends every message through the REST client, in requests
// of at most maxPublishBatch (the emulator refuses a request of more, as
// Pub/Sub does, so 2,001 messages in three accepted calls are split
// 1,000/1,000/1), retries a transient failure, and reports a topic that
// does not exist.
func TestTopicReplayPublisher(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	em := emulatortest.StartPubSub(t, "projects/host/topics/replay")
	s, err := pubsub.NewService(ctx, option.WithEndpoint("http://"+em.Addr()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	p := NewTopicReplayPublisher(s, "host", "replay")
	const n = 2*maxPublishBatch + 1
	ms := make([]event.ReplayMessage, n)
	for i := range ms {
		ms[i] = event.ReplayMessage{Version: 1, Project: "p", Region: "r", Service: fmt.Sprintf("s%d", i)}
	}
	if err := p.PublishReplays(ctx, ms); err != nil {
		t.Fatalf("PublishReplays: %v", err)
	}
	if calls := em.Core.Stats.Snapshot().Calls[publishMethod]; calls != 3 {
		t.Errorf("%d Publish calls for %d messages, want 3", calls, n)
	}
	got := map[string]bool{}
	for _, m := range em.PubSub.Messages() {
		var rm event.ReplayMessage
		if err := json.Unmarshal(m.Data, &rm); err != nil {
			t.Fatal(err)
		}
		got[rm.Service] = true
	}
	if len(got) != n {
		t.Errorf("%d distinct messages published, want %d", len(got), n)
	}
	if calls := em.PubSub.Messages(); len(calls) != n {
		t.Errorf("%d messages stored, want %d", len(calls), n)
	}

	// A transient failure of one request is retried: every message
	// arrives once more, in one call more.
	em.Core.Stats.Reset()
	em.PubSub.ClearMessages()
	if err := em.Core.Faults.FailNext(publishMethod, 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishReplays(ctx, ms); err != nil {
		t.Fatalf("PublishReplays with one UNAVAILABLE answer: %v", err)
	}
	if calls := em.Core.Stats.Snapshot().Calls[publishMethod]; calls != 4 {
		t.Errorf("%d Publish calls with one retried, want 4", calls)
	}
	if got := len(em.PubSub.Messages()); got != n {
		t.Errorf("%d messages stored after a retried request, want %d", got, n)
	}

	missing := NewTopicReplayPublisher(s, "host", "projects/host/topics/missing")
	if err := missing.PublishReplays(ctx, ms[:1]); err == nil || !strings.Contains(err.Error(), "projects/host/topics/missing") {
		t.Errorf("PublishReplays to a missing topic = %v; want an error naming it", err)
	}
}
