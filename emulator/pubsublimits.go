package emulator

import (
	"context"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/core"
)

// Pub/Sub's documented resource limits on a published message (pstest
// enforces none of them; Google answers INVALID_ARGUMENT).
const (
	PubSubMaxMessagesPerRequest = 1000
	PubSubMaxRequestBytes       = 10_000_000
	PubSubMaxAttributes         = 100
	PubSubMaxAttributeKey       = 256
	PubSubMaxAttributeValue     = 1024
	PubSubMaxOrderingKey        = 1024
)

// gRPC request sizes. Pub/Sub takes a Publish request of up to
// PubSubMaxRequestBytes over gRPC (its documented 10 MB), which gRPC's
// default receive limit of 4 MiB would refuse before limitedPublisher
// could answer as Google does; so the server reads messages up to that
// plus room for the protobuf framing of 1,000 messages, and every other
// method keeps the 4 MiB limit the emulator always had (Google's limits
// for them are not modelled), refused as grpc-go refuses it: unary
// requests and each message a streaming method receives.
const (
	grpcMaxRecv       = PubSubMaxRequestBytes + 1<<20
	grpcDefaultMaxMsg = 4 << 20
	publishFullMethod = "/google.pubsub.v1.Publisher/Publish"
)

func grpcRequestLimit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod != publishFullMethod {
		if err := checkDefaultMaxMsg(req); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func grpcStreamRequestLimit(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, limitedStream{ss})
}

// limitedStream refuses a received message over the default limit.
type limitedStream struct{ grpc.ServerStream }

func (s limitedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkDefaultMaxMsg(m)
}

func checkDefaultMaxMsg(m any) error {
	if pm, ok := m.(proto.Message); ok {
		if n := proto.Size(pm); n > grpcDefaultMaxMsg {
			return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, grpcDefaultMaxMsg)
		}
	}
	return nil
}

// limitedPublisher is pstest's Publisher with Google's limits enforced
// before the message reaches it.
type limitedPublisher struct {
	pubsubpb.PublisherServer
}

func (l limitedPublisher) Publish(ctx context.Context, req *pubsubpb.PublishRequest) (*pubsubpb.PublishResponse, error) {
	if err := checkPublish(req); err != nil {
		return nil, err
	}
	return l.PublisherServer.Publish(ctx, req)
}

func checkPublish(req *pubsubpb.PublishRequest) error {
	// Both refusals follow the PublishRequest/PubsubMessage field comments
	// (messages: required; a message needs data or an attribute); pstest
	// accepts them.
	if len(req.GetMessages()) == 0 {
		return core.Errorf(codes.InvalidArgument, "The publish request must contain at least one message.")
	}
	for _, m := range req.GetMessages() {
		if len(m.GetData()) == 0 && len(m.GetAttributes()) == 0 {
			return core.Errorf(codes.InvalidArgument, "One or more messages in the publish request is empty. Each message must contain either non-empty data, or at least one attribute.")
		}
	}
	if n := len(req.GetMessages()); n > PubSubMaxMessagesPerRequest {
		return core.Errorf(codes.InvalidArgument, "The value for message_count is too large. You passed %d in the request, but the maximum value is %d.", n, PubSubMaxMessagesPerRequest)
	}
	total := 0
	for _, m := range req.GetMessages() {
		total += len(m.GetData()) + len(m.GetOrderingKey())
		if len(m.GetAttributes()) > PubSubMaxAttributes {
			return core.Errorf(codes.InvalidArgument, "Too many message attributes: %d, the maximum is %d.", len(m.GetAttributes()), PubSubMaxAttributes)
		}
		for k, v := range m.GetAttributes() {
			total += len(k) + len(v)
			if len(k) > PubSubMaxAttributeKey {
				return core.Errorf(codes.InvalidArgument, "The attribute key %.40q... is too long: %d bytes, the maximum is %d.", k, len(k), PubSubMaxAttributeKey)
			}
			if len(v) > PubSubMaxAttributeValue {
				return core.Errorf(codes.InvalidArgument, "The value of attribute %.40q is too long: %d bytes, the maximum is %d.", k, len(v), PubSubMaxAttributeValue)
			}
		}
		if len(m.GetOrderingKey()) > PubSubMaxOrderingKey {
			return core.Errorf(codes.InvalidArgument, "The ordering key is too long: %d bytes, the maximum is %d.", len(m.GetOrderingKey()), PubSubMaxOrderingKey)
		}
	}
	if total > PubSubMaxRequestBytes {
		return core.Errorf(codes.InvalidArgument, "The request is too large: %d bytes, the maximum is %d.", total, PubSubMaxRequestBytes)
	}
	return nil
}
