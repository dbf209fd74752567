package outcome

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// Publisher sends outcome messages to a topic with ordering keys.
//
// Required IAM: pubsub.topics.publish on the topic (roles/pubsub.publisher).
type Publisher struct {
	pub *pubsub.Publisher
}

// publishDelay is how long the client holds a message to batch it with
// others (the library's default is 10 ms). The function publishes one
// outcome per event and waits for it, so that wait is added to every
// event → outcome latency; concurrent events still share a batch within
// it (per ordering key).
const publishDelay = time.Millisecond

// NewPublisher publishes to topic (an id or projects/P/topics/T) through client.
func NewPublisher(client *pubsub.Client, topic string) *Publisher {
	p := client.Publisher(topic)
	p.EnableMessageOrdering = true
	p.PublishSettings.DelayThreshold = publishDelay
	return &Publisher{pub: p}
}

// Publish sends m and waits for the server's acknowledgement.
func (p *Publisher) Publish(ctx context.Context, m *Message) (string, error) {
	body, err := m.Marshal()
	if err != nil {
		return "", err
	}
	res := p.pub.Publish(ctx, &pubsub.Message{Data: body, Attributes: m.Attributes(), OrderingKey: m.OrderingKey()})
	id, err := res.Get(ctx)
	if err != nil {
		// After a failure, ordered publishing pauses the key until resumed.
		p.pub.ResumePublish(m.OrderingKey())
		return "", fmt.Errorf("publishing %s outcome for %s: %w", m.Outcome, m.Resource.Name, err)
	}
	return id, nil
}

// Stop flushes and stops the publisher.
func (p *Publisher) Stop() { p.pub.Stop() }
