package outcome

import (
	"strings"
	"sync"
	"testing"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestPublisherKeepsOrderPerResource publishes outcomes for two services
// concurrently, each service's in sequence, and checks that Pub/Sub got
// every message with its resource as ordering key, in order per key.
func TestPublisherKeepsOrderPerResource(t *testing.T) {
	ctx := t.Context()
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := pubsubapi.NewTopicAdminClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	const topic = "projects/demo-project/topics/iapguard-outcomes"
	if _, err := client.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(client, "demo-project", "iapguard-outcomes")
	if p.Topic() != topic {
		t.Errorf("Topic() = %q, want %q", p.Topic(), topic)
	}

	services := []string{"hello", "world"}
	const perService = 5
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			for i := range perService {
				m := example()
				m.Resource.Service = svc
				m.Resource.Name = "projects/demo-project/locations/us-central1/services/" + svc
				m.DurationMs = int64(i)
				if _, err := p.Publish(ctx, m); err != nil {
					t.Errorf("Publish(%s #%d): %v", svc, i, err)
				}
			}
		})
	}
	wg.Wait()

	got := map[string][]int64{}
	for _, pm := range srv.Messages() {
		m, err := Unmarshal(pm.Data)
		if err != nil {
			t.Fatalf("message %s: %v", pm.ID, err)
		}
		if pm.OrderingKey != m.Resource.Name {
			t.Errorf("message %s: ordering key %q, want the resource %q", pm.ID, pm.OrderingKey, m.Resource.Name)
		}
		got[pm.OrderingKey] = append(got[pm.OrderingKey], m.DurationMs)
	}
	want := map[string][]int64{}
	for _, svc := range services {
		for i := range perService {
			k := "projects/demo-project/locations/us-central1/services/" + svc
			want[k] = append(want[k], int64(i))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages per ordering key (-want +got):\n%s", diff)
	}

}

// A publish the server refuses is an error naming the topic, with the
// gRPC status in its chain.
func TestPublisherReportsFailure(t *testing.T) {
	ctx := t.Context()
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := pubsubapi.NewTopicAdminClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(client, "demo-project", "projects/other/topics/missing")
	_, err = p.Publish(ctx, example())
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "projects/other/topics/missing") {
		t.Errorf("Publish to a missing topic = %v; want NotFound naming the topic", err)
	}
}
