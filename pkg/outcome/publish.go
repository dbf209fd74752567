package outcome

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	pubsub "google.golang.org/api/pubsub/v1"

	"github.com/iapguard/iapguard/internal/pubsubrest"
)

// Publisher sends outcome messages to a topic, the resource's name as
// ordering key: one Publish call per message, which Publish waits for.
//
// It calls Pub/Sub's REST API through Google's discovery-based client
// (google.golang.org/api/pubsub/v1) rather than the batching publisher of
// cloud.google.com/go/pubsub/v2 or its generated gRPC client: the function
// publishes one outcome per event and waits for it, so batching only added
// its delay, and those packages' initialisation (OpenCensus views, then the
// protobuf descriptors of the generated client) cost CPU at every process
// start. Each caller publishes its outcome after its reconcile ended, so
// outcomes about one resource go out in the order their events finished,
// as they did through the ordered batching publisher. Failed calls are
// retried as the generated client retried Publish (internal/pubsubrest):
// ABORTED, CANCELLED, INTERNAL, RESOURCE_EXHAUSTED, UNKNOWN, UNAVAILABLE
// and DEADLINE_EXCEEDED answers (HTTP 409, 499, 500, 429, 503, 504) and
// transport failures, within 60 s unless the caller's context has a
// deadline of its own.
//
// Required IAM: pubsub.topics.publish on the topic (roles/pubsub.publisher).
type Publisher struct {
	s     *pubsub.Service
	topic string
}

// NewPublisher publishes to topic through s: projects/P/topics/T, or a
// topic id in project.
func NewPublisher(s *pubsub.Service, project, topic string) *Publisher {
	return &Publisher{s: s, topic: TopicName(project, topic)}
}

// TopicName is topic's full name: topic itself when it is
// projects/P/topics/T, else projects/project/topics/topic.
func TopicName(project, topic string) string {
	if strings.HasPrefix(topic, "projects/") {
		return topic
	}
	return "projects/" + project + "/topics/" + topic
}

// Topic is the full name of the topic published to.
func (p *Publisher) Topic() string { return p.topic }

// Publish sends m and waits for the server's acknowledgement. A refusal
// keeps the client's *googleapi.Error in the error's chain.
func (p *Publisher) Publish(ctx context.Context, m *Message) (string, error) {
	body, err := m.Marshal()
	if err != nil {
		return "", err
	}
	ids, err := pubsubrest.Publish(ctx, p.s, p.topic, []*pubsub.PubsubMessage{
		{Data: base64.StdEncoding.EncodeToString(body), Attributes: m.Attributes(), OrderingKey: m.OrderingKey()},
	})
	if err == nil && len(ids) != 1 {
		err = fmt.Errorf("the server returned %d message ids for 1 message", len(ids))
	}
	if err != nil {
		return "", fmt.Errorf("publishing %s outcome for %s to %s: %w", m.Outcome, m.Resource.Name, p.topic, err)
	}
	return ids[0], nil
}
