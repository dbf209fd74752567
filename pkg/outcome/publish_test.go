package outcome

import (
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
	client, err := pubsub.NewClient(ctx, "demo-project", option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	const topic = "projects/demo-project/topics/iapguard-outcomes"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(client, topic)
	t.Cleanup(p.Stop)
	if d := p.pub.PublishSettings.DelayThreshold; d != time.Millisecond {
		t.Errorf("DelayThreshold = %v, want 1ms", d)
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
