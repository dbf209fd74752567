package emulator_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	pubsubrest "google.golang.org/api/pubsub/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
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
	// The REST route (the function's client) enforces the same limits
	// through the same publisher: the same code, as its HTTP status, and
	// the same message.
	rc, err := pubsubrest.NewService(ctx, option.WithEndpoint("http://"+em.Addr()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	restPublish := func(ms ...*pubsubpb.PubsubMessage) error {
		var rms []*pubsubrest.PubsubMessage
		for _, m := range ms {
			rms = append(rms, &pubsubrest.PubsubMessage{Data: base64.StdEncoding.EncodeToString(m.Data), Attributes: m.Attributes, OrderingKey: m.OrderingKey})
		}
		_, err := rc.Projects.Topics.Publish(topic, &pubsubrest.PublishRequest{Messages: rms}).Context(ctx).Do()
		return err
	}
	same := func(name string, grpcErr, restErr error, want codes.Code) {
		t.Helper()
		if status.Code(grpcErr) != want {
			t.Errorf("%s: gRPC Publish = %v, want %s", name, grpcErr, want)
		}
		var ge *googleapi.Error
		switch {
		case want == codes.OK && restErr != nil:
			t.Errorf("%s: REST Publish = %v, want success", name, restErr)
		case want != codes.OK && (!errors.As(restErr, &ge) || ge.Code != core.HTTPStatusOf(want) || ge.Message != status.Convert(grpcErr).Message()):
			t.Errorf("%s: REST Publish = %v, want HTTP %d with the gRPC answer's message %q", name, restErr, core.HTTPStatusOf(want), status.Convert(grpcErr).Message())
		}
	}
	_, err = c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic})
	same("no messages", err, restPublish(), codes.InvalidArgument)
	for _, tc := range tests {
		_, err := c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{tc.m}})
		same(tc.name, err, restPublish(tc.m), tc.code)
	}
	many := make([]*pubsubpb.PubsubMessage, emulator.PubSubMaxMessagesPerRequest+1)
	for i := range many {
		many[i] = &pubsubpb.PubsubMessage{Data: []byte("d")}
	}
	_, err = c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: many})
	same("1,001 messages", err, restPublish(many...), codes.InvalidArgument)
	_, err = c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: many[:emulator.PubSubMaxMessagesPerRequest]})
	same("1,000 messages", err, restPublish(many[:emulator.PubSubMaxMessagesPerRequest]...), codes.OK)
	tooMany := make(map[string]string, emulator.PubSubMaxAttributes+1)
	for i := range emulator.PubSubMaxAttributes + 1 {
		tooMany[fmt.Sprint("k", i)] = "v"
	}
	m := &pubsubpb.PubsubMessage{Data: []byte("d"), Attributes: tooMany}
	_, err = c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{m}})
	same("101 attributes", err, restPublish(m), codes.InvalidArgument)
	missing := &pubsubpb.PubsubMessage{Data: []byte("d")}
	_, err = c.Publish(ctx, &pubsubpb.PublishRequest{Topic: "projects/demo-project/topics/missing", Messages: []*pubsubpb.PubsubMessage{missing}})
	_, restErr := rc.Projects.Topics.Publish("projects/demo-project/topics/missing", &pubsubrest.PublishRequest{Messages: []*pubsubrest.PubsubMessage{{Data: "ZA=="}}}).Context(ctx).Do()
	same("unknown topic", err, restErr, codes.NotFound)

	// Over gRPC a request is read up to Google's 10 MB (gRPC's default
	// 4 MiB receive limit refused a 5 MB publish that Google takes); over
	// REST the base64 of so much data exceeds the body limit, so these
	// are gRPC only.
	big := &pubsubpb.PubsubMessage{Data: make([]byte, 5_000_000)}
	if _, err := c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{big}}); err != nil {
		t.Errorf("5 MB publish over gRPC = %v, want success (Pub/Sub takes up to 10 MB)", err)
	}
	huge := &pubsubpb.PubsubMessage{Data: make([]byte, emulator.PubSubMaxRequestBytes+1)}
	_, err = c.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{huge}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "too large") {
		t.Errorf("publish of %d bytes over gRPC = %v, want INVALID_ARGUMENT, too large", len(huge.Data), err)
	}
	// Every other method keeps the 4 MiB limit.
	conn, err := grpc.NewClient(em.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	err = conn.Invoke(ctx, "/google.pubsub.v1.Publisher/GetTopic", &pubsubpb.GetTopicRequest{Topic: strings.Repeat("x", 5<<20)}, &pubsubpb.Topic{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("5 MiB GetTopic over gRPC = %v, want RESOURCE_EXHAUSTED (the 4 MiB limit)", status.Code(err))
	}
	// So does each message a streaming method receives.
	stream, err := pubsubpb.NewSubscriberClient(conn).StreamingPull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubpb.StreamingPullRequest{Subscription: strings.Repeat("x", 5<<20), StreamAckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("5 MiB StreamingPull request = %v, want RESOURCE_EXHAUSTED (the 4 MiB limit)", status.Code(err))
	}
}
