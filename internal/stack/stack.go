// Package stack runs the whole of iapguard locally: the emulator, the
// EnforceIAP function served over HTTP by the handler production serves
// (functions.HTTPHandler), the Eventarc stand-in delivering to it, and a
// Pub/Sub subscriber collecting outcomes.
// The sandbox, the end-to-end tests and the benchmarks all start it.
package stack

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/deploy"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Topic and subscription names used locally.
const (
	OutcomesTopic        = deploy.OutcomesTopic
	OutcomesSubscription = "iapguard-outcomes-local"
	// FunctionPrincipal is the identity the function names to the emulator.
	FunctionPrincipal = "iapguard@demo-project.iam.gserviceaccount.com"
	// UserPrincipal is the identity demo changes are made as.
	UserPrincipal = "developer@example.com"
)

// FunctionRegion is the function's region, where its "region" triggers are.
const FunctionRegion = "us-central1"

// Options configure a stack.
type Options struct {
	// Emulator options; DeliverTo is filled with the function's URL. For
	// the organisation-wide path set Emulator.LogSink (with
	// NoAuditLogTriggers: that path alone); the sink then publishes to the
	// replay topic and its trigger delivers to the function.
	Emulator emulator.Options
	// EmulatorAddr is where the emulator listens (default 127.0.0.1:0).
	EmulatorAddr string
	// DryRun runs the function in dry-run mode.
	DryRun bool
	// Projects is the function's allowlist (default: every emulated project).
	Projects []string
	// FunctionLog receives the function's JSON logs (default: discarded).
	FunctionLog io.Writer
	// LogLevel for FunctionLog (default info).
	LogLevel slog.Level
	// OnOutcome is called for every outcome message received (from the
	// subscriber goroutine).
	OnOutcome func(*outcome.Message)
	// NoFunction starts everything but the function (deliveries fail and
	// are retried until one is started).
	NoFunction bool
	// AccessPolicies is the function's access policy file
	// (IAPGUARD_ACCESS_POLICIES; empty: none).
	AccessPolicies string
	// NoRecordKey starts the function without an access-record key
	// (IAPGUARD_RECORD_KEY unset). By default the emulator's Secret
	// Manager holds a random key, RecordKey, and the function signs with
	// it.
	NoRecordKey bool
	// RecordKeyData is the key to seed (nil: 32 random bytes); tests fix
	// it so that signed records in golden outcomes are stable.
	RecordKeyData []byte
}

// RecordKey is the secret version the stack's function signs access
// records with (unless Options.NoRecordKey).
const RecordKey = "projects/%s/secrets/iapguard-record-key/versions/latest"

// Stack is a running local iapguard.
type Stack struct {
	Emu         *emulator.Emulator
	Fn          *functions.Instance
	FunctionURL string
	Outcomes    *Collector
	Project     core.Project

	// fnMu guards fnSrv and the restart state below; Fn is replaced by
	// RestartFunction (read it only while no restart can run).
	fnMu   sync.Mutex
	fnSrv  *http.Server
	fnCfg  functions.Config
	fnLog  *slog.Logger
	fnAddr string
	crash  context.Context // cancelled when the current instance is killed
	kill   context.CancelFunc
	active *atomic.Int64 // requests the current instance is handling
	// outcomesTopic is the full name of the outcomes topic.
	outcomesTopic string
	ps            *pubsub.Client
	cancel        context.CancelFunc
	wg            sync.WaitGroup
}

// Start starts a stack. Close it when done.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the function: %w", err)
	}
	s := &Stack{FunctionURL: "http://" + ln.Addr().String() + "/"}
	eopts := opts.Emulator
	eopts.DeliverTo = append(eopts.DeliverTo, s.FunctionURL)
	eopts.Principal = cmp.Or(eopts.Principal, UserPrincipal)
	if len(eopts.Projects) == 0 {
		eopts.Projects = []core.Project{emulator.DefaultProject}
	}
	if eopts.Delivery.Region == "" {
		// The "region" triggers live in the function's region, and the
		// Eventarc stand-in applies trigger locations as Eventarc does, so
		// a wrong location in eventarc/triggers.yaml fails the tests.
		eopts.Delivery.Region = FunctionRegion
	}
	s.Project = eopts.Projects[0]
	if s.Emu, err = emulator.New(eopts); err != nil {
		ln.Close()
		return nil, err
	}
	addr := cmp.Or(opts.EmulatorAddr, "127.0.0.1:0")
	if err := s.Emu.Start(addr); err != nil {
		ln.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	fail := func(err error) (*Stack, error) {
		ln.Close()
		s.Close()
		return nil, err
	}

	s.ps, err = pubsub.NewClient(ctx, s.Project.ID, gcp.EmulatorGRPCOptions(s.Emu.Addr(), "")...)
	if err != nil {
		return fail(fmt.Errorf("connecting to Pub/Sub: %w", err))
	}
	topic := "projects/" + s.Project.ID + "/topics/" + OutcomesTopic
	s.outcomesTopic = topic
	if _, err := s.ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		return fail(fmt.Errorf("creating the outcomes topic: %w", err))
	}
	sub := "projects/" + s.Project.ID + "/subscriptions/" + OutcomesSubscription
	if _, err := s.ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: sub, Topic: topic, EnableMessageOrdering: true, AckDeadlineSeconds: 10,
	}); err != nil {
		return fail(fmt.Errorf("creating the outcomes subscription: %w", err))
	}
	s.Outcomes = newCollector(opts.OnOutcome)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.ps.Subscriber(OutcomesSubscription).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			s.Outcomes.add(m.ID, m.Data, m.Attributes)
		})
	}()

	projects := opts.Projects
	if len(projects) == 0 {
		for _, p := range eopts.Projects {
			projects = append(projects, p.ID, p.NumberString())
		}
	}
	logw := opts.FunctionLog
	if logw == nil {
		logw = io.Discard
	}
	cfg := functions.Config{
		Project: s.Project.ID, Projects: projects, OutcomesTopic: OutcomesTopic, DryRun: opts.DryRun,
		LogLevel: opts.LogLevel, Timeout: 30 * time.Second, MaxEventAge: 24 * time.Hour,
		EmulatorHost: s.Emu.Addr(), Principal: FunctionPrincipal,
		AccessPoliciesFile: opts.AccessPolicies, MaxConcurrent: functions.DefaultMaxConcurrent,
	}
	if !opts.NoRecordKey {
		key := opts.RecordKeyData
		if key == nil {
			key = make([]byte, 32)
			_, _ = rand.Read(key)
		}
		if _, err := s.Emu.SecretManager.Put(s.Project.ID, "iapguard-record-key", key); err != nil {
			return fail(fmt.Errorf("seeding the access-record key: %w", err))
		}
		cfg.RecordKey = fmt.Sprintf(RecordKey, s.Project.ID)
	}
	s.fnCfg, s.fnLog, s.fnAddr = cfg, logx.New(logw, opts.LogLevel), ln.Addr().String()
	if s.Fn, err = functions.NewInstanceFromConfig(ctx, cfg, s.fnLog); err != nil {
		return fail(err)
	}
	if opts.NoFunction {
		ln.Close()
		return s, nil
	}
	s.serveFunction(ln)
	return s, nil
}

// serveFunction serves s.Fn on ln. Each request's context is also
// cancelled when the instance is killed (RestartFunction). Callers hold
// fnMu or own s exclusively.
func (s *Stack) serveFunction(ln net.Listener) {
	s.crash, s.kill = context.WithCancel(context.Background())
	crash, h := s.crash, functions.HTTPHandler(s.Fn.Handler)
	active := new(atomic.Int64)
	s.active = active
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		if crash.Err() != nil {
			// Accepted just as the instance died: no answer.
			panic(http.ErrAbortHandler)
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(crash, cancel)()
		h.ServeHTTP(w, r.WithContext(ctx))
	})}
	s.fnSrv = srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("function server stopped", "err", err)
		}
	}()
}

// InFlight is the number of requests the function is handling now.
func (s *Stack) InFlight() int64 {
	s.fnMu.Lock()
	defer s.fnMu.Unlock()
	if s.active == nil {
		return 0
	}
	return s.active.Load()
}

// RestartFunction kills the function instance abruptly and starts a fresh
// one on the same URL, as a crashed Cloud Run instance is replaced: every
// connection is closed at once, so requests in flight get no answer (the
// Eventarc stand-in sees a transport error and redelivers), their handlers'
// contexts are cancelled so whatever calls they are making are abandoned
// mid-way, and nothing the old instance held in memory (coalescer, caches)
// reaches the new one. It returns how many requests were abandoned.
//
// Unlike a real kill -9, a call the old instance had already sent may still
// be applied by the emulator after the crash (so may Google's); the old
// handlers are waited for (bounded by ctx) before the new instance serves,
// so the old process does nothing more once the new one runs.
func (s *Stack) RestartFunction(ctx context.Context) (abandoned int64, err error) {
	s.fnMu.Lock()
	defer s.fnMu.Unlock()
	if s.fnSrv == nil {
		return 0, errors.New("the stack runs no function")
	}
	abandoned = s.active.Load()
	// Close first, so no handler gets to answer; then cancel its work.
	_ = s.fnSrv.Close()
	s.kill()
	for s.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return abandoned, fmt.Errorf("waiting for the killed function's handlers: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	_ = s.Fn.Close()
	if s.Fn, err = functions.NewInstanceFromConfig(ctx, s.fnCfg, s.fnLog); err != nil {
		s.Fn, s.fnSrv = nil, nil
		return abandoned, fmt.Errorf("starting a fresh function instance: %w", err)
	}
	var ln net.Listener
	for {
		if ln, err = net.Listen("tcp", s.fnAddr); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			s.fnSrv = nil
			return abandoned, fmt.Errorf("listening again on %s: %w", s.fnAddr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.serveFunction(ln)
	return abandoned, nil
}

// Env returns the environment for iapctl and other clients.
func (s *Stack) Env() []string { return s.Emu.Env() }

// Settle waits until every event has been delivered and handled, and
// nothing new — no delivery, no outcome — has happened for quiet; or ctx ends.
// It covers both paths to the function: the Eventarc audit-log stand-in and
// the topic triggers (the log sink's and the replay topic's pushers).
func (s *Stack) Settle(ctx context.Context, quiet time.Duration) error {
	type mark struct{ attempts, pushed, outcomes int64 }
	now := func() mark {
		m := mark{outcomes: int64(len(s.Outcomes.All()))}
		if s.Emu.Delivery != nil {
			m.attempts = s.Emu.Delivery.Stats().Attempts
		}
		for _, p := range s.Emu.Pushers {
			st := p.Stats()
			m.pushed += st.Pulled + st.Attempts
		}
		return m
	}
	idle := func() bool {
		if s.Emu.Delivery != nil && !s.Emu.Delivery.Idle() {
			return false
		}
		for _, p := range s.Emu.Pushers {
			if p.Pending() > 0 {
				return false
			}
		}
		// Every outcome Pub/Sub accepted has reached the subscriber: a
		// quiet spell alone can end before a slow delivery arrives (seen
		// under load), and the outcome then leaks past the next mark().
		return !s.Outcomes.missing(s.Emu.PubSub.Messages(), s.outcomesTopic)
	}
	prev := mark{-1, -1, -1}
	for {
		if s.Emu.Delivery != nil {
			if err := s.Emu.Delivery.Wait(ctx); err != nil {
				return fmt.Errorf("waiting for iapguard to settle: %w", err)
			}
		}
		for _, p := range s.Emu.Pushers {
			if err := p.Wait(ctx); err != nil {
				return fmt.Errorf("waiting for iapguard to settle: %w", err)
			}
		}
		cur := now()
		if cur == prev && idle() {
			return nil
		}
		prev = cur
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for iapguard to settle: %w", ctx.Err())
		case <-time.After(quiet):
		}
	}
}

// Close stops everything.
func (s *Stack) Close() {
	s.fnMu.Lock()
	defer s.fnMu.Unlock()
	if s.fnSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.fnSrv.Shutdown(ctx)
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	// The subscriber must stop (and flush its acks) while the emulator
	// still answers; closing the emulator first leaves it retrying.
	s.wg.Wait()
	if s.Emu != nil {
		_ = s.Emu.Close()
	}
	if s.Fn != nil {
		_ = s.Fn.Close()
	}
	if s.ps != nil {
		_ = s.ps.Close()
	}
}

// Collector keeps every outcome message received.
type Collector struct {
	mu     sync.Mutex
	seen   map[string]bool // ids of every message received, kept across Reset
	msgs   []*outcome.Message
	bad    []string
	lastAt time.Time
	on     func(*outcome.Message)
}

func newCollector(on func(*outcome.Message)) *Collector {
	return &Collector{on: on, lastAt: time.Now(), seen: map[string]bool{}}
}

func (c *Collector) add(id string, data []byte, attrs map[string]string) {
	m, err := outcome.Unmarshal(data)
	c.mu.Lock()
	c.lastAt = time.Now()
	c.seen[id] = true
	if err != nil {
		c.bad = append(c.bad, err.Error())
		c.mu.Unlock()
		return
	}
	if attrs[outcome.AttrOutcome] != string(m.Outcome) || attrs[outcome.AttrService] != m.Resource.Service {
		c.bad = append(c.bad, fmt.Sprintf("attributes %v disagree with body (%s %s)", attrs, m.Outcome, m.Resource.Service))
	}
	c.msgs = append(c.msgs, m)
	on := c.on
	c.mu.Unlock()
	if on != nil {
		on(m)
	}
}

// All returns every message received so far.
func (c *Collector) All() []*outcome.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*outcome.Message(nil), c.msgs...)
}

// Invalid returns the problems with messages that did not validate.
func (c *Collector) Invalid() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.bad...)
}

// ForService returns the messages about a Cloud Run service, in arrival order.
func (c *Collector) ForService(name string) []*outcome.Message {
	var out []*outcome.Message
	for _, m := range c.All() {
		if m.Resource.Service == name {
			out = append(out, m)
		}
	}
	return out
}

// Latest returns the last message about a service, or nil.
func (c *Collector) Latest(name string) *outcome.Message {
	ms := c.ForService(name)
	if len(ms) == 0 {
		return nil
	}
	return ms[len(ms)-1]
}

// LastAt is when the last message arrived (or the collector was made).
func (c *Collector) LastAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAt
}

// missing reports whether a message published on the outcomes topic has not
// reached the collector yet.
func (c *Collector) missing(published []*pstest.Message, topic string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range published {
		if m.Topic == topic && !c.seen[m.ID] {
			return true
		}
	}
	return false
}

// Reset forgets every message.
func (c *Collector) Reset() {
	c.mu.Lock()
	c.msgs, c.bad = nil, nil
	c.mu.Unlock()
}
