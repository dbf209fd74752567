package logsink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/iapguard/iapguard/internal/event"
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
	def(&o.BackoffBase, 100*time.Millisecond)
	def(&o.BackoffMax, 5*time.Second)
	def(&o.Retention, 10*time.Minute)
	def(&o.Timeout, 30*time.Second)
	def(&o.PollInterval, 10*time.Millisecond)
	o.BackoffMax = max(o.BackoffMax, o.BackoffBase)
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
	ps   PubSub
	opts PushOptions
	log  *slog.Logger

	mu        sync.Mutex
	rnd       *rand.Rand
	inflight  map[string]*pushed // by message id
	stats     PushStats
	lastEmpty time.Time // start of the last pull that found nothing while nothing was in flight
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
	seed := rand.Uint64()
	return &Pusher{
		ps: ps, opts: opts, log: opts.Logger,
		rnd:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
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
	return p.stats
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

// render builds the binary-mode messagePublished CloudEvent for m.
func (p *Pusher) render(m *pubsubpb.PubsubMessage) (http.Header, []byte, error) {
	segs := strings.Split(p.opts.Topic, "/")
	ev, err := event.NewMessagePublishedEvent(segs[1], segs[3], p.opts.Subscription, event.PubSubMessage{
		Data: m.GetData(), Attributes: m.GetAttributes(), MessageID: m.GetMessageId(),
		PublishTime: m.GetPublishTime().AsTime(), OrderingKey: m.GetOrderingKey(),
	})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, "http://render.invalid/", nil)
	if err != nil {
		return nil, nil, err
	}
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&ev), req); err != nil {
		return nil, nil, fmt.Errorf("rendering CloudEvent %s: %w", ev.ID(), err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, nil, err
	}
	return req.Header, body, nil
}

// deliver sends job to every target, each retried until it succeeds or is
// given up, then acks the message.
func (p *Pusher) deliver(ctx context.Context, id string, job *pushed) {
	pulled := time.Now()
	for _, target := range p.opts.Targets {
		for attempt := 1; ; attempt++ {
			err := p.attempt(ctx, target, job)
			p.mu.Lock()
			p.stats.Attempts++
			if err == nil {
				p.stats.Delivered++
				p.mu.Unlock()
				break
			}
			wait := p.backoffLocked(attempt)
			give := ""
			switch {
			case ctx.Err() != nil:
				p.mu.Unlock()
				return // closing: the message stays unacked
			case p.opts.MaxAttempts > 0 && attempt >= p.opts.MaxAttempts:
				give = "max attempts"
			case time.Since(pulled)+wait > p.opts.Retention:
				give = "retention"
			}
			if give != "" {
				p.stats.Dropped++
				p.mu.Unlock()
				p.log.Warn("push stand-in: delivery given up", "messageId", id, "target", target, "attempts", attempt, "reason", give, "err", err)
				break
			}
			p.stats.Retried++
			p.mu.Unlock()
			p.log.Debug("push stand-in: retrying", "messageId", id, "target", target, "attempt", attempt, "in", wait, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
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

// backoffLocked is the wait after the n-th failed attempt.
func (p *Pusher) backoffLocked(n int) time.Duration {
	w := p.opts.BackoffBase
	for i := 1; i < n && w < p.opts.BackoffMax; i++ {
		w *= 2
	}
	w = min(w, p.opts.BackoffMax)
	half := w / 2
	return w - half + time.Duration(p.rnd.Int64N(int64(half)+1))
}

// attempt POSTs job to target once; nil means a 2xx answer.
func (p *Pusher) attempt(ctx context.Context, target string, job *pushed) error {
	actx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, target, bytes.NewReader(job.body))
	if err != nil {
		return fmt.Errorf("building request for %s: %w", target, err)
	}
	for k, v := range job.header {
		req.Header[k] = append([]string(nil), v...)
	}
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("posting to %s: %w", target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("posting to %s: status %s", target, resp.Status)
	}
	return nil
}
