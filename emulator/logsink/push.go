package logsink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/iapguard/iapguard/emulator/internal/pushretry"
)

// PushOptions configure a Pusher. The zero value of every tuning field
// picks the default named in its comment.
type PushOptions struct {
	// Topic is the topic the trigger listens on, projects/P/topics/T.
	// Required; created when missing.
	Topic string
	// Subscription is the pusher's own subscription (default
	// projects/P/subscriptions/eventarc-T-push). It is created at Start.
	Subscription string
	// Targets receive every message. Required.
	Targets []string
	// BackoffBase and BackoffMax bound the exponential backoff between
	// attempts (100 ms, 5 s), jittered down by up to half.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxAttempts caps the attempts per message and target (0: no cap).
	MaxAttempts int
	// Retention gives a message up once its next attempt would start later
	// than this after it was pulled (10 min, pstest's retention).
	Retention time.Duration
	// Timeout bounds one attempt (30 s).
	Timeout time.Duration
	// Concurrency bounds the messages in flight (8).
	Concurrency int
	// PollInterval is the pause after a pull that found nothing (10 ms).
	PollInterval time.Duration
	// HTTPClient sends the requests (default: a new http.Client).
	HTTPClient *http.Client
	// Logger receives the pusher's logs (default: discarded).
	Logger *slog.Logger
}

func (o *PushOptions) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Retention, 10*time.Minute) // the other retry defaults are pushretry's
	def(&o.PollInterval, 10*time.Millisecond)
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Subscription == "" && validTopic(o.Topic) {
		segs := strings.Split(o.Topic, "/")
		o.Subscription = "projects/" + segs[1] + "/subscriptions/eventarc-" + segs[3] + "-push"
	}
	o.Targets = append([]string(nil), o.Targets...)
}

// PushStats counts what the pusher did.
type PushStats struct {
	Pulled    int64 // messages received from the subscription (redeliveries included)
	Attempts  int64 // HTTP attempts
	Delivered int64 // attempts answered 2xx
	Retried   int64 // attempts scheduled again after a failure
	Dropped   int64 // message deliveries given up (attempts, retention)
	Acked     int64 // messages acknowledged
}

// Pusher is the Eventarc messagePublished trigger stand-in.
type Pusher struct {
	ps    PubSub
	opts  PushOptions
	log   *slog.Logger
	retry *pushretry.Retrier // attempts, backoff, give-ups and their counts

	mu        sync.Mutex
	inflight  map[string]*pushed // by message id
	stats     PushStats          // Pulled, Acked and undeliverable messages; retry counts the rest
	lastEmpty time.Time          // start of the last pull that found nothing while nothing was in flight
	started   bool

	sem    chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	once   sync.Once
}

// pushed is one message being delivered.
type pushed struct {
	ackID  string // the latest delivery's ack id (a redelivery replaces it)
	header http.Header
	body   []byte
}

// NewPusher returns a pusher over ps. It does nothing until Start.
func NewPusher(ps PubSub, opts PushOptions) (*Pusher, error) {
	if !validTopic(opts.Topic) {
		return nil, fmt.Errorf("push stand-in: topic %q is not projects/PROJECT/topics/TOPIC", opts.Topic)
	}
	if len(opts.Targets) == 0 {
		return nil, fmt.Errorf("push stand-in for %s: no targets", opts.Topic)
	}
	opts.defaults()
	return &Pusher{
		ps: ps, opts: opts, log: opts.Logger,
		retry: pushretry.New(pushretry.Policy{
			BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax,
			MaxAttempts: opts.MaxAttempts, Retention: opts.Retention, Timeout: opts.Timeout,
		}, 0),
		inflight: map[string]*pushed{},
		sem:      make(chan struct{}, opts.Concurrency),
		done:     make(chan struct{}),
	}, nil
}

// Topic is the topic the pusher delivers.
func (p *Pusher) Topic() string { return p.opts.Topic }

// Subscription is the pusher's subscription.
func (p *Pusher) Subscription() string { return p.opts.Subscription }

// Start creates the topic (if missing) and the subscription, then delivers
// in the background until ctx ends or Close. Messages published before the
// subscription exists are not delivered (as with a new trigger).
func (p *Pusher) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return nil
	}
	if err := ensureTopic(ctx, p.ps, p.opts.Topic); err != nil {
		return fmt.Errorf("push stand-in: %w", err)
	}
	if _, err := p.ps.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: p.opts.Subscription, Topic: p.opts.Topic, AckDeadlineSeconds: 600,
	}); err != nil {
		return fmt.Errorf("push stand-in: creating subscription %s: %w", p.opts.Subscription, err)
	}
	p.started = true
	rctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.wg.Add(1)
	go p.poll(rctx)
	return nil
}

// Close stops pulling and waits for the attempts in flight; messages not
// yet delivered stay unacknowledged.
func (p *Pusher) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		cancel := p.cancel
		p.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		p.wg.Wait()
		close(p.done)
	})
}

// Stats returns a copy of the counters.
func (p *Pusher) Stats() PushStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, rc := p.stats, p.retry.Counts()
	s.Attempts, s.Delivered, s.Retried = rc.Attempts, rc.Delivered, rc.Retried
	s.Dropped += rc.Dropped
	return s
}

// Pending is the number of messages pulled and not yet acked or given up.
func (p *Pusher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inflight)
}

// Wait blocks until every message published before the call has been
// delivered or given up (a pull that started after the call found nothing
// new and nothing is in flight), or ctx ends.
func (p *Pusher) Wait(ctx context.Context) error {
	since := time.Now()
	t := time.NewTicker(p.opts.PollInterval)
	defer t.Stop()
	for {
		p.mu.Lock()
		idle := len(p.inflight) == 0 && p.lastEmpty.After(since)
		p.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for deliveries of %s (%d in flight): %w", p.opts.Topic, p.Pending(), ctx.Err())
		case <-p.done:
			return fmt.Errorf("waiting for deliveries of %s: the pusher is closed", p.opts.Topic)
		case <-t.C:
		}
	}
}

// poll pulls until ctx ends. A pull that finds nothing waits for messages
// until its own deadline, one PollInterval (pstest's Pull waits up to
// 500 ms otherwise, and without telling when a message arrives); a
// deadline reached that way means "nothing new".
func (p *Pusher) poll(ctx context.Context) {
	defer p.wg.Done()
	failing := false
	for ctx.Err() == nil {
		started := time.Now()
		pctx, cancel := context.WithTimeout(ctx, p.opts.PollInterval)
		resp, err := p.ps.Pull(pctx, &pubsubpb.PullRequest{Subscription: p.opts.Subscription, MaxMessages: int32(p.opts.Concurrency)})
		timedOut := pctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && timedOut:
			err = nil // nothing arrived within the interval
		case err != nil && !failing:
			p.log.Warn("push stand-in: pull failed", "subscription", p.opts.Subscription, "err", err)
		}
		failing = err != nil
		fresh := 0
		for _, rm := range resp.GetReceivedMessages() {
			if p.admit(ctx, rm) {
				fresh++
			}
		}
		if fresh > 0 {
			continue
		}
		p.mu.Lock()
		if len(p.inflight) == 0 && err == nil {
			p.lastEmpty = started
		}
		p.mu.Unlock()
		if rest := p.opts.PollInterval - time.Since(started); rest > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(rest):
			}
		}
	}
}

// admit starts delivering rm unless it is already in flight (a redelivery
// after the ack deadline, whose newer ack id is kept). It blocks while
// Concurrency messages are in flight.
func (p *Pusher) admit(ctx context.Context, rm *pubsubpb.ReceivedMessage) bool {
	m := rm.GetMessage()
	p.mu.Lock()
	p.stats.Pulled++
	if cur, ok := p.inflight[m.GetMessageId()]; ok {
		cur.ackID = rm.GetAckId()
		p.mu.Unlock()
		return false
	}
	header, body, err := p.render(m)
	if err != nil {
		// Cannot happen for messages pstest hands out; ack so it does not loop.
		p.stats.Dropped++
		p.mu.Unlock()
		p.log.Error("push stand-in: message not deliverable", "messageId", m.GetMessageId(), "err", err)
		p.ack(rm.GetAckId())
		return true
	}
	job := &pushed{ackID: rm.GetAckId(), header: header, body: body}
	p.inflight[m.GetMessageId()] = job
	p.mu.Unlock()

	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return true
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		p.deliver(ctx, m.GetMessageId(), job)
	}()
	return true
}

// CloudEvent attribute values Eventarc uses for messagePublished events.
const (
	MessagePublished           = "google.cloud.pubsub.topic.v1.messagePublished"
	MessagePublishedDataSchema = "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/pubsub/v1/MessagePublishedData.json"
)

// render builds the binary-mode messagePublished CloudEvent Eventarc POSTs
// for m, published on Topic and pulled through Subscription:
//
//	ce-specversion  1.0
//	ce-type         google.cloud.pubsub.topic.v1.messagePublished
//	ce-source       //pubsub.googleapis.com/projects/<project>/topics/<topic>
//	ce-id           the message id
//	ce-time         the publish time
//	ce-dataschema   .../google/events/cloud/pubsub/v1/MessagePublishedData.json
//	Content-Type    application/json
//
// and the body {"message":{…},"subscription":…}, the message carrying
// messageId and publishTime also in snake case, as Eventarc writes them.
func (p *Pusher) render(m *pubsubpb.PubsubMessage) (http.Header, []byte, error) {
	type message struct {
		Data             []byte            `json:"data,omitempty"`
		Attributes       map[string]string `json:"attributes,omitempty"`
		MessageID        string            `json:"messageId"`
		PublishTime      time.Time         `json:"publishTime"`
		OrderingKey      string            `json:"orderingKey,omitempty"`
		MessageIDSnake   string            `json:"message_id"`
		PublishTimeSnake time.Time         `json:"publish_time"`
	}
	published := m.GetPublishTime().AsTime()
	body, err := json.Marshal(struct {
		Message      message `json:"message"`
		Subscription string  `json:"subscription"`
	}{message{
		Data: m.GetData(), Attributes: m.GetAttributes(), MessageID: m.GetMessageId(), PublishTime: published,
		OrderingKey: m.GetOrderingKey(), MessageIDSnake: m.GetMessageId(), PublishTimeSnake: published,
	}, p.opts.Subscription})
	if err != nil {
		return nil, nil, fmt.Errorf("rendering CloudEvent %s: %w", m.GetMessageId(), err)
	}
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Type", MessagePublished)
	h.Set("Ce-Source", "//pubsub.googleapis.com/"+p.opts.Topic)
	h.Set("Ce-Id", m.GetMessageId())
	h.Set("Ce-Time", published.UTC().Format(time.RFC3339Nano))
	h.Set("Ce-Dataschema", MessagePublishedDataSchema)
	h.Set("Content-Type", "application/json")
	return h, body, nil
}

// deliver sends job to every target, each retried until it succeeds or is
// given up, then acks the message.
func (p *Pusher) deliver(ctx context.Context, id string, job *pushed) {
	pulled := time.Now()
	for _, target := range p.opts.Targets {
		// A 2xx answer is the target's acknowledgement.
		res := p.retry.Do(ctx, pulled, func(actx context.Context) error {
			return pushretry.Post(actx, p.opts.HTTPClient, target, job.header, job.body)
		}, func(attempt int, wait time.Duration, err error) {
			p.log.Debug("push stand-in: retrying", "messageId", id, "target", target, "attempt", attempt, "in", wait, "err", err)
		})
		switch {
		case res.Verdict == pushretry.Canceled:
			return // closing: the message stays unacked
		case res.Verdict.GaveUp():
			p.log.Warn("push stand-in: delivery given up", "messageId", id, "target", target, "attempts", res.Attempts, "reason", res.Verdict.String(), "err", res.Err)
		}
	}
	p.mu.Lock()
	ackID := job.ackID
	p.mu.Unlock()
	p.ack(ackID)
	p.mu.Lock()
	delete(p.inflight, id)
	p.mu.Unlock()
}

func (p *Pusher) ack(ackID string) {
	if _, err := p.ps.Acknowledge(context.Background(), &pubsubpb.AcknowledgeRequest{
		Subscription: p.opts.Subscription, AckIds: []string{ackID},
	}); err != nil {
		p.log.Warn("push stand-in: ack failed", "subscription", p.opts.Subscription, "err", err)
		return
	}
	p.mu.Lock()
	p.stats.Acked++
	p.mu.Unlock()
}
