package outcome

import (
	"context"
	"fmt"
	"strings"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// Publisher sends outcome messages to a topic, the resource's name as
// ordering key: one Publish call per message, which Publish waits for.
//
// It calls the generated Pub/Sub client (cloud.google.com/go/pubsub/v2/apiv1)
// directly rather than the batching publisher of cloud.google.com/go/pubsub/v2:
// the function publishes one outcome per event and waits for it, so
// batching only added its delay, and that package's initialisation
// (OpenCensus views among it) cost about 1 ms of CPU at every process start.
// Each caller publishes its outcome after its reconcile ended, so outcomes
// about one resource go out in the order their events finished, as they did
// through the ordered batching publisher. Failed calls are retried by the
// client's default Publish settings (Aborted, Canceled, Internal,
// ResourceExhausted, Unknown, Unavailable, DeadlineExceeded; 60 s timeout).
//
// Required IAM: pubsub.topics.publish on the topic (roles/pubsub.publisher).
type Publisher struct {
	c     *pubsubapi.TopicAdminClient
	topic string
}

// NewPublisher publishes to topic through c: projects/P/topics/T, or a
// topic id in project.
func NewPublisher(c *pubsubapi.TopicAdminClient, project, topic string) *Publisher {
	return &Publisher{c: c, topic: TopicName(project, topic)}
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

// Publish sends m and waits for the server's acknowledgement.
func (p *Publisher) Publish(ctx context.Context, m *Message) (string, error) {
	body, err := m.Marshal()
	if err != nil {
		return "", err
	}
	res, err := p.c.Publish(ctx, &pubsubpb.PublishRequest{Topic: p.topic, Messages: []*pubsubpb.PubsubMessage{
		{Data: body, Attributes: m.Attributes(), OrderingKey: m.OrderingKey()},
	}})
	if err == nil && len(res.GetMessageIds()) != 1 {
		err = fmt.Errorf("the server returned %d message ids for 1 message", len(res.GetMessageIds()))
	}
	if err != nil {
		return "", fmt.Errorf("publishing %s outcome for %s to %s: %w", m.Outcome, m.Resource.Name, p.topic, err)
	}
	return res.GetMessageIds()[0], nil
}
