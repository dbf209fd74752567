// Package logsink is the emulator's stand-in for iapguard's
// organisation-wide path (docs/orgwide.md):
//
//	audit log ──► Sink (aggregated log sink) ──► Pub/Sub topic ──► Pusher ──► HTTP targets
//
// A Sink plays an organisation- or folder-level log sink with
// include-children: it publishes every audit entry of the projects it
// covers that the audit-log triggers select (the same selection as the
// filter `iapctl deploy triggers --format=log-filter` renders) to a topic
// in the emulator's Pub/Sub, as the LogEntry JSON. A Pusher plays an
// Eventarc messagePublished trigger on a topic: it pulls the topic through
// a subscription of its own and POSTs each message to its targets as a
// binary-mode google.cloud.pubsub.topic.v1.messagePublished CloudEvent
// (rendered here, as Eventarc sends it), retrying
// non-2xx answers and transport errors with exponential backoff, and acks
// the message once every target took it.
//
// Where they differ from Google:
//   - The sink selects on logName (Admin Activity), serviceName and
//     methodName of the triggers, as the rendered filter does; it does not
//     evaluate filter text. Its writer identity and IAM are not modelled,
//     and it publishes through the Pub/Sub implementation directly, so its
//     publishes are not counted as API calls.
//   - Pub/Sub messages from the sink carry the attribute
//     logging.googleapis.com/timestamp (the entry's timestamp), which is how
//     we understand Cloud Logging marks routed entries; not verified against
//     Google Cloud.
//   - The pusher pulls, each pull waiting at most 10 ms
//     (PushOptions.PollInterval), instead of being pushed to; backoff
//     defaults to 100 ms–5 s (Pub/Sub push with Eventarc: 10 s–600 s);
//     attempts time out after 30 s; a message is given up (and acked)
//     after 10 minutes, pstest's own retention. Deliveries carry no OIDC
//     token. One subscription serves every target.
//   - Topics are created when missing (the deployment creates them on
//     Google Cloud).
package logsink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/eventarc"
)

// PubSub is what the stand-ins need of the emulator's Pub/Sub; pstest's
// *GServer implements it. Calls made through it bypass the emulator's
// interceptors, so they are neither counted nor faulted.
type PubSub interface {
	CreateTopic(context.Context, *pubsubpb.Topic) (*pubsubpb.Topic, error)
	Publish(context.Context, *pubsubpb.PublishRequest) (*pubsubpb.PublishResponse, error)
	CreateSubscription(context.Context, *pubsubpb.Subscription) (*pubsubpb.Subscription, error)
	Pull(context.Context, *pubsubpb.PullRequest) (*pubsubpb.PullResponse, error)
	Acknowledge(context.Context, *pubsubpb.AcknowledgeRequest) (*emptypb.Empty, error)
}

// TimestampAttribute is the message attribute carrying the routed entry's
// timestamp.
const TimestampAttribute = "logging.googleapis.com/timestamp"

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Topic is the destination, projects/P/topics/T. Required.
	Topic string
	// Projects are the ids of the projects under the sink's folder or
	// organisation; entries of other projects are not routed. Empty: every
	// project (an organisation sink over the whole emulator).
	Projects []string
	// Triggers are the trigger definitions whose audit-log methods the sink
	// routes (default: eventarc.Load()).
	Triggers []eventarc.Trigger
	// Logger receives the sink's logs (default: discarded).
	Logger *slog.Logger
}

// SinkStats counts what the sink did.
type SinkStats struct {
	Routed int64 // entries published to the topic
	Failed int64 // entries that matched but could not be published
}

// Sink is the aggregated log sink stand-in.
type Sink struct {
	c        *core.Core
	ps       PubSub
	topic    string
	projects map[string]bool
	methods  map[[2]string]bool // serviceName, methodName
	log      *slog.Logger

	mu    sync.Mutex
	stats SinkStats
	stop  func()
}

// NewSink returns a sink over c's audit log publishing to ps. It routes
// nothing until Start.
func NewSink(c *core.Core, ps PubSub, opts SinkOptions) (*Sink, error) {
	if !validTopic(opts.Topic) {
		return nil, fmt.Errorf("log sink: topic %q is not projects/PROJECT/topics/TOPIC", opts.Topic)
	}
	triggers := opts.Triggers
	if triggers == nil {
		var err error
		if triggers, err = eventarc.Load(); err != nil {
			return nil, fmt.Errorf("log sink: loading trigger definitions: %w", err)
		}
	}
	s := &Sink{c: c, ps: ps, topic: opts.Topic, methods: map[[2]string]bool{}, log: opts.Logger}
	for _, t := range eventarc.AuditLogTriggers(triggers) {
		s.methods[[2]string{t.ServiceName, t.MethodName}] = true
	}
	if len(s.methods) == 0 {
		return nil, fmt.Errorf("log sink: the trigger definitions select no audit-log method")
	}
	if len(opts.Projects) > 0 {
		s.projects = map[string]bool{}
		for _, p := range opts.Projects {
			s.projects[p] = true
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Start creates the topic if it is missing and routes every entry appended
// from now on. Calling it again does nothing.
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return nil
	}
	if err := ensureTopic(ctx, s.ps, s.topic); err != nil {
		return fmt.Errorf("log sink: %w", err)
	}
	s.stop = s.c.Audit.Listen(s.onEntry)
	return nil
}

// Close stops routing.
func (s *Sink) Close() {
	s.mu.Lock()
	stop := s.stop
	s.stop = func() {}
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Stats returns a copy of the counters.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Matches reports whether the sink routes e.
func (s *Sink) Matches(e *core.LogEntry) bool {
	if e == nil || e.ProtoPayload == nil {
		return false
	}
	project, logID, ok := strings.Cut(strings.TrimPrefix(e.LogName, "projects/"), "/logs/")
	if !ok || !strings.HasPrefix(e.LogName, "projects/") || logID != "cloudaudit.googleapis.com%2Factivity" {
		return false
	}
	if s.projects != nil && !s.projects[project] {
		return false
	}
	return s.methods[[2]string{e.ProtoPayload.ServiceName, e.ProtoPayload.MethodName}]
}

// onEntry publishes synchronously, on the goroutine that appended e, so
// that an entry has reached the topic when the call that wrote it returns.
// The in-memory Pub/Sub never blocks for long and never writes audit
// entries, so this cannot deadlock.
func (s *Sink) onEntry(e *core.LogEntry) {
	if !s.Matches(e) {
		return
	}
	data, err := json.Marshal(e)
	if err == nil {
		_, err = s.ps.Publish(context.Background(), &pubsubpb.PublishRequest{Topic: s.topic, Messages: []*pubsubpb.PubsubMessage{{
			Data:       data,
			Attributes: map[string]string{TimestampAttribute: e.Timestamp.UTC().Format(time.RFC3339Nano)},
		}}})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.stats.Failed++
		s.log.Warn("log sink stand-in: entry not routed", "insertId", e.InsertID, "topic", s.topic, "err", err)
		return
	}
	s.stats.Routed++
}

// validTopic checks projects/P/topics/T.
func validTopic(name string) bool {
	segs := strings.Split(name, "/")
	return len(segs) == 4 && segs[0] == "projects" && segs[1] != "" && segs[2] == "topics" && segs[3] != ""
}

// ensureTopic creates topic unless it exists.
func ensureTopic(ctx context.Context, ps PubSub, topic string) error {
	if _, err := ps.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}
