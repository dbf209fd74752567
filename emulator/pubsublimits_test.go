package emulator_test

import (
	"strings"
	"testing"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator"
)

// Issue #19 item 7: Pub/Sub refuses attribute values and ordering keys over
// 1,024 bytes; pstest accepted them, so a publish that fails in production
// passed every test. The emulator enforces Google's limits.
func TestPublishLimits(t *testing.T) {
	t.Parallel()
	em, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	ctx := t.Context()
	c, err := pubsubapi.NewTopicAdminClient(ctx, option.WithEndpoint(em.Addr()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	topic := "projects/demo-project/topics/limits"
	if _, err := c.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1025)
	tests := []struct {
		name string
		m    *pubsubpb.PubsubMessage
		code codes.Code
	}{
		{"within limits", &pubsubpb.PubsubMessage{Data: []byte("d"), Attributes: map[string]string{"k": long[:1024]}, OrderingKey: long[:1024]}, codes.OK},
		{"attribute value too long", &pubsubpb.PubsubMessage{Data: []byte("d"), Attributes: map[string]string{"project": long}}, codes.InvalidArgument},
		{"attribute key too long", &pubsubpb.PubsubMessage{Data: []byte("d"), Attributes: map[string]string{long[:257]: "v"}}, codes.InvalidArgument},
		{"ordering key too long", &pubsubpb.PubsubMessage{Data: []byte("d"), OrderingKey: long}, codes.InvalidArgument},
		{"empty message", &pubsubpb.PubsubMessage{}, codes.InvalidArgument},
		{"attributes only", &pubsubpb.PubsubMessage{Attributes: map[string]string{"k": "v"}}, codes.OK},
	}
	if _, err := c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no messages: Publish = %v, want InvalidArgument", err)
	}
	for _, tc := range tests {
		_, err := c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{tc.m}})
		if status.Code(err) != tc.code {
			t.Errorf("%s: Publish = %v, want %s", tc.name, err, tc.code)
		}
	}
}
