package functions

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iapguard/iapguard/internal/event"
)

// PublishReplays sends every message, in requests of at most
// maxPublishBatch, and reports a topic that does not exist.
func TestTopicReplayPublisher(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c, err := pubsubapi.NewTopicAdminClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/host/topics/replay"}); err != nil {
		t.Fatal(err)
	}
	p := NewTopicReplayPublisher(c, "host", "replay")
	const n = 2*maxPublishBatch + 1
	ms := make([]event.ReplayMessage, n)
	for i := range ms {
		ms[i] = event.ReplayMessage{Version: 1, Project: "p", Region: "r", Service: fmt.Sprintf("s%d", i)}
	}
	if err := p.PublishReplays(ctx, ms); err != nil {
		t.Fatalf("PublishReplays: %v", err)
	}
	got := map[string]bool{}
	for _, m := range srv.Messages() {
		var rm event.ReplayMessage
		if err := json.Unmarshal(m.Data, &rm); err != nil {
			t.Fatal(err)
		}
		got[rm.Service] = true
	}
	if len(got) != n {
		t.Errorf("%d distinct messages published, want %d", len(got), n)
	}
	if calls := srv.Messages(); len(calls) != n {
		t.Errorf("%d messages stored, want %d", len(calls), n)
	}

	missing := NewTopicReplayPublisher(c, "host", "projects/host/topics/missing")
	if err := missing.PublishReplays(ctx, ms[:1]); err == nil || !strings.Contains(err.Error(), "projects/host/topics/missing") {
		t.Errorf("PublishReplays to a missing topic = %v; want an error naming it", err)
	}
}
