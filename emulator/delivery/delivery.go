// Package delivery is the emulator's Eventarc stand-in: it watches the
// emulator's audit log and POSTs every entry that matches one of iapguard's
// audit-log triggers (package eventarc) to the configured targets as a
// binary-mode CloudEvent (see CloudEventFor), with Eventarc's delivery
// semantics — at least once, unordered, retried with exponential backoff on
// non-2xx answers and transport errors until a retention period ends — and
// optional extra duplication, reordering and delay to exercise handlers.
//
// Where it differs from Eventarc:
//   - Backoff defaults to 100 ms–5 s (Eventarc: 10 s–600 s) and the
//     per-attempt timeout to 30 s (Eventarc: the subscription's ack
//     deadline); retention defaults to Eventarc's 24 h. All are Options.
//   - Deliveries carry no OIDC token (Authorization header) and no
//     traceparent; the User-Agent is Go's.
//   - An entry matching several triggers is delivered once per trigger, as
//     Eventarc does (each trigger has its own subscription). Trigger
//     locations are ignored unless Options.Region is set (see there).
//   - Entries recorded before Start are not delivered (as with a new trigger).
//   - Messages still queued at Close are dropped (counted in Dropped).
package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/internal/pushretry"
	"github.com/iapguard/iapguard/eventarc"
)

// Options tunes delivery. The zero value delivers nothing (no Targets).
type Options struct {
	// Targets are the URLs every matching entry is POSTed to.
	Targets []string
	// Duplicate is the probability (0..1) that a delivery is sent twice
	// (two independent deliveries with the same ce-id).
	Duplicate float64
	// Reorder is the probability (0..1) that a delivery is held back and
	// sent right after the next one. A held delivery waits at most
	// ReorderWindow (default 1 s) for a successor.
	Reorder       float64
	ReorderWindow time.Duration
	// Delay is added before every first attempt, plus a uniformly random
	// part in [0, Jitter).
	Delay  time.Duration
	Jitter time.Duration
	// BackoffBase and BackoffMax bound the exponential backoff between
	// attempts (defaults 100 ms and 5 s): attempt n waits about
	// min(BackoffMax, BackoffBase·2^(n-1)), jittered down by up to half.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxAttempts caps the attempts of one delivery (0: no cap; Eventarc
	// has none by default). Retention drops a delivery whose next attempt
	// would start later than this after it was enqueued (default 24 h).
	MaxAttempts int
	Retention   time.Duration
	// Timeout bounds one attempt (default 30 s).
	Timeout time.Duration
	// Concurrency bounds the attempts in flight (default 8). Use 1 to get
	// a predictable order.
	Concurrency int
	// Region, when set, applies trigger locations as Eventarc does: a
	// trigger with location "global" fires for entries of every location
	// and one with location "region" only for entries about resources in
	// Region. An entry whose location cannot be told reaches only "global"
	// triggers. Empty: locations are ignored.
	Region string
	// Seed makes the random choices reproducible (0: random seed).
	Seed uint64
	// HTTPClient sends the requests (default: a new http.Client).
	HTTPClient *http.Client
	// Logger receives delivery logs (default: discarded).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReorderWindow, time.Second)
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Targets = append([]string(nil), o.Targets...)
}

// Stats counts what happened to deliveries.
type Stats struct {
	Delivered  int64 // attempts answered 2xx (duplicates count separately)
	Attempts   int64 // HTTP attempts made
	Retried    int64 // attempts scheduled again after a failure
	Duplicated int64 // extra copies created by Options.Duplicate
	Reordered  int64 // deliveries held back by Options.Reorder
	Dropped    int64 // deliveries given up (attempts, retention, Close)
}

// Deliverer is the Eventarc stand-in.
type Deliverer struct {
	c        *core.Core
	triggers []eventarc.Trigger
	opts     Options
	log      *slog.Logger
	retry    *pushretry.Retrier // attempts, backoff, give-ups and their counts

	mu        sync.Mutex
	cond      *sync.Cond // signals ready work and closing
	rnd       *rand.Rand
	ready     []*job
	held      []*job
	holdTimer *time.Timer
	holdGen   int // identifies the current hold, so a stale timer does nothing
	timers    map[*time.Timer]*job
	pending   int
	idle      chan struct{} // closed while pending == 0
	stats     Stats         // Duplicated, Reordered and the drops at Close; retry counts the rest
	started   bool
	closed    bool

	stopListen func()
	cancel     context.CancelFunc
	ctx        context.Context
	done       chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup
}

// job is one delivery of one entry, for one trigger, to one target.
type job struct {
	target   string
	trigger  string
	id       string
	header   http.Header
	body     []byte
	attempts int
	enqueued time.Time
}

// New returns a Deliverer for the audit-log triggers among triggers. It
// does nothing until Start.
func New(c *core.Core, triggers []eventarc.Trigger, opts Options) *Deliverer {
	opts.defaults()
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	idle := make(chan struct{})
	close(idle)
	d := &Deliverer{
		c:        c,
		triggers: eventarc.AuditLogTriggers(triggers),
		opts:     opts,
		log:      opts.Logger,
		retry: pushretry.New(pushretry.Policy{
			BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax,
			MaxAttempts: opts.MaxAttempts, Retention: opts.Retention, Timeout: opts.Timeout,
		}, seed^0x9e3779b97f4a7c15),
		rnd:    rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		timers: map[*time.Timer]*job{},
		idle:   idle,
		done:   make(chan struct{}),
	}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Start subscribes to the audit log and starts delivering in the
// background until ctx ends or Close is called. Calling it again does
// nothing.
func (d *Deliverer) Start(ctx context.Context) {
	d.mu.Lock()
	if d.started || d.closed {
		d.mu.Unlock()
		return
	}
	d.started = true
	d.ctx, d.cancel = context.WithCancel(ctx)
	// Listeners run after the audit log's own lock is released, so taking
	// d.mu in onEntry cannot deadlock with this.
	d.stopListen = d.c.Audit.Listen(d.onEntry)
	d.mu.Unlock()

	for range d.opts.Concurrency {
		d.wg.Add(1)
		go d.worker()
	}
	go func() {
		select {
		case <-d.ctx.Done():
			d.Close()
		case <-d.done:
		}
	}()
}

// Close stops delivering, drops what is still queued and waits for the
// attempts in flight to end.
func (d *Deliverer) Close() {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		for t, j := range d.timers {
			if t.Stop() { // its callback will not run
				d.dropLocked(j, "closed", false)
			}
			delete(d.timers, t)
		}
		if d.holdTimer != nil {
			d.holdTimer.Stop()
		}
		for _, j := range append(d.ready, d.held...) {
			d.dropLocked(j, "closed", false)
		}
		d.ready, d.held = nil, nil
		d.cond.Broadcast()
		cancel, stop := d.cancel, d.stopListen
		d.mu.Unlock()

		if stop != nil {
			stop()
		}
		if cancel != nil {
			cancel()
		}
		d.wg.Wait()
		close(d.done)
	})
}

// Stats returns a copy of the counters.
func (d *Deliverer) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, rc := d.stats, d.retry.Counts()
	s.Attempts, s.Delivered, s.Retried = rc.Attempts, rc.Delivered, rc.Retried
	s.Dropped += rc.Dropped
	return s
}

// Pending returns the number of deliveries not yet finished (queued,
// delayed, held, backing off or in flight).
func (d *Deliverer) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

// Idle reports whether no delivery is pending.
func (d *Deliverer) Idle() bool { return d.Pending() == 0 }

// Wait blocks until no delivery is pending or ctx ends. Entries are
// enqueued while the API call that wrote them is still being served, so
// Wait after the call returns covers its deliveries.
func (d *Deliverer) Wait(ctx context.Context) error {
	d.mu.Lock()
	ch := d.idle
	d.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for deliveries (%d pending): %w", d.Pending(), ctx.Err())
	}
}

// onEntry runs on the goroutine that appended e: it only enqueues.
func (d *Deliverer) onEntry(e *core.LogEntry) {
	if e == nil || e.ProtoPayload == nil || len(d.opts.Targets) == 0 {
		return
	}
	p := e.ProtoPayload
	var matched []string
	for _, t := range d.triggers {
		if t.MatchesAuditLog(p.ServiceName, p.MethodName, p.ResourceName) && d.locationMatches(t, e) {
			matched = append(matched, t.Name)
		}
	}
	if len(matched) == 0 {
		return
	}
	header, body, err := CloudEventFor(e)
	if err != nil {
		d.log.Warn("eventarc stand-in: entry not deliverable", "insertId", e.InsertID, "err", err)
		return
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, trig := range matched {
		for _, target := range d.opts.Targets {
			j := &job{target: target, trigger: trig, id: header.Get("Ce-Id"), header: header, body: body, enqueued: now}
			d.enqueueLocked(j)
			if d.opts.Duplicate > 0 && d.rnd.Float64() < d.opts.Duplicate {
				d.stats.Duplicated++
				c := *j
				d.enqueueLocked(&c)
			}
		}
	}
}

// enqueueLocked admits a new delivery, possibly holding it back to be sent
// after its successor.
func (d *Deliverer) enqueueLocked(j *job) {
	d.addPendingLocked()
	if len(d.held) == 0 && d.opts.Reorder > 0 && d.rnd.Float64() < d.opts.Reorder {
		d.stats.Reordered++
		d.held = append(d.held, j)
		d.holdGen++
		gen := d.holdGen
		d.holdTimer = time.AfterFunc(d.opts.ReorderWindow, func() { d.releaseHeld(gen) })
		return
	}
	d.scheduleLocked(j, d.firstDelayLocked())
	d.releaseHeldLocked()
}

func (d *Deliverer) releaseHeld(gen int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed && gen == d.holdGen {
		d.releaseHeldLocked()
	}
}

func (d *Deliverer) releaseHeldLocked() {
	if d.holdTimer != nil {
		d.holdTimer.Stop()
		d.holdTimer = nil
	}
	for _, h := range d.held {
		d.scheduleLocked(h, d.firstDelayLocked())
	}
	d.held = nil
}

func (d *Deliverer) firstDelayLocked() time.Duration {
	delay := d.opts.Delay
	if d.opts.Jitter > 0 {
		delay += time.Duration(d.rnd.Int64N(int64(d.opts.Jitter)))
	}
	return delay
}

// scheduleLocked makes j ready after delay.
func (d *Deliverer) scheduleLocked(j *job, delay time.Duration) {
	if delay <= 0 {
		d.ready = append(d.ready, j)
		d.cond.Signal()
		return
	}
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.timers, t)
		if d.closed {
			d.dropLocked(j, "closed", false)
			return
		}
		d.ready = append(d.ready, j)
		d.cond.Signal()
	})
	d.timers[t] = j // the callback takes d.mu, so it sees t assigned
}

func (d *Deliverer) addPendingLocked() {
	if d.pending == 0 {
		d.idle = make(chan struct{})
	}
	d.pending++
}

func (d *Deliverer) finishLocked() {
	d.pending--
	if d.pending == 0 {
		close(d.idle)
	}
}

// dropLocked gives j up; drops by the retry policy are counted by d.retry,
// the others (Close) here.
func (d *Deliverer) dropLocked(j *job, why string, byPolicy bool) {
	if !byPolicy {
		d.stats.Dropped++
	}
	d.log.Warn("eventarc stand-in: delivery dropped", "id", j.id, "target", j.target, "trigger", j.trigger, "attempts", j.attempts, "reason", why)
	d.finishLocked()
}

func (d *Deliverer) worker() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && !d.closed {
			d.cond.Wait()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		j := d.ready[0]
		d.ready = d.ready[1:]
		j.attempts++
		d.mu.Unlock()

		// A 2xx answer is the target's acknowledgement.
		err := d.retry.Attempt(d.ctx, func(ctx context.Context) error {
			return pushretry.Post(ctx, d.opts.HTTPClient, j.target, j.header, j.body)
		})

		d.mu.Lock()
		if d.closed && err != nil {
			d.dropLocked(j, "closed", false)
			d.mu.Unlock()
			continue
		}
		switch dec := d.retry.After(d.ctx, j.attempts, j.enqueued, err); dec.Verdict {
		case pushretry.Delivered:
			d.log.Debug("eventarc stand-in: delivered", "id", j.id, "target", j.target, "trigger", j.trigger, "attempts", j.attempts)
			d.finishLocked()
		case pushretry.Retry:
			d.log.Debug("eventarc stand-in: retrying", "id", j.id, "target", j.target, "attempts", j.attempts, "in", dec.Wait, "err", err)
			d.scheduleLocked(j, dec.Wait)
		case pushretry.Canceled: // d.ctx ended before Close got to run
			d.dropLocked(j, "closed", false)
		default:
			d.dropLocked(j, fmt.Sprintf("%v: %v", dec.Verdict, err), true)
		}
		d.mu.Unlock()
	}
}

// locationMatches applies trigger locations when Options.Region is set, by
// Eventarc's rule (eventarc.Receives): a trigger receives the entries of
// resources in its own location ("region" is Options.Region), and a
// "global" trigger those of every location. An entry whose location
// cannot be told reaches only "global" triggers: Google knows where every
// resource is, so a regional trigger never receives an entry of another
// region, and the emulator must not deliver one it cannot place.
func (d *Deliverer) locationMatches(t eventarc.Trigger, e *core.LogEntry) bool {
	if d.opts.Region == "" || t.Location == "global" {
		return true
	}
	loc := entryLocation(e)
	if loc == "" {
		return false
	}
	tl := t.Location
	if tl == "region" {
		tl = d.opts.Region
	}
	return eventarc.Receives(tl, loc)
}

// entryLocation tells where the entry's resource lives: "global", a region,
// or "" when unknown. Zones count as their region.
func entryLocation(e *core.LogEntry) string {
	if rl := e.ProtoPayload.ResourceLocation; rl != nil && len(rl.CurrentLocations) > 0 {
		return zoneRegion(rl.CurrentLocations[0])
	}
	for _, k := range []string{"location", "region"} {
		if v := e.Resource.Labels[k]; v != "" {
			return zoneRegion(v)
		}
	}
	segs := strings.Split(e.ProtoPayload.ResourceName, "/")
	for i, s := range segs {
		switch {
		case s == "global":
			return "global"
		case (s == "locations" || s == "regions" || s == "zones") && i+1 < len(segs):
			return zoneRegion(segs[i+1])
		}
	}
	return ""
}

// zoneRegion maps a zone ("us-central1-a") to its region; regions and
// "global" are returned unchanged.
func zoneRegion(loc string) string {
	if parts := strings.Split(loc, "-"); len(parts) == 3 && len(parts[2]) == 1 {
		return parts[0] + "-" + parts[1]
	}
	return loc
}
