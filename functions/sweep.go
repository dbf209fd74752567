package functions

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "google.golang.org/api/pubsub/v1"

	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/internal/pubsubrest"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Discoverer finds the Cloud Run services of a scope without the "-"
// location wildcard (*gcp.Discovery: Cloud Asset Inventory search, with a
// per-region fallback).
type Discoverer interface {
	Discover(ctx context.Context, scope string, labelled bool) (*gcp.Discovered, error)
}

// ReplayPublisher publishes replay messages on the replay topic and
// returns once Pub/Sub accepted all of them (or the first error).
type ReplayPublisher interface {
	PublishReplays(ctx context.Context, ms []event.ReplayMessage) error
}

// SweepRequester is the requestedBy of the replay messages a sweep
// publishes.
const SweepRequester = "sweep"

// SetDiscovery gives the handler what project-wide replays and sweeps need:
// d finds the services (a whole-project replay without a region, and a
// sweep request), rp publishes a sweep's per-service replay messages. A
// handler without them rejects such messages with a permanent failure.
func (h *Handler) SetDiscovery(d Discoverer, rp ReplayPublisher) {
	h.disc, h.replays = d, rp
}

// reconcileProject reconciles the labelled services of a whole project:
// one discovery (Cloud Asset search, or the per-region listing when Cloud
// Asset is off or not permitted), then each service found. Which path ran
// is logged; with nothing found, the skip reason names it. A discovery
// that fails permanently is the project's failed outcome (reconcileEach).
func (h *Handler) reconcileProject(ctx context.Context, project string, changedAt time.Time) ([]*iapsetup.Result, string, error) {
	named := "projects/" + project
	if h.disc == nil {
		rs, err := h.reconcileEach(ctx, named, changedAt, nil,
			fmt.Errorf("replaying every service of project %s: no discovery configured (%w)", project, iapsetup.ErrPermanent))
		return rs, "", err
	}
	d, err := h.disc.Discover(ctx, named, true)
	how := discoveryNote(d)
	logDiscovery(ctx, named, d, err)
	var cs []iapsetup.Candidate
	if err != nil {
		err = fmt.Errorf("discovering the services of project %s: %w", project, classify(err))
	} else {
		cs = make([]iapsetup.Candidate, 0, len(d.Services))
		for _, f := range d.Services {
			cs = append(cs, iapsetup.Candidate{Ref: f.Ref, Listed: f.Listed})
		}
	}
	rs, err := h.reconcileEach(ctx, named, changedAt, cs, err)
	return rs, how, err
}

// sweep answers a sweep request: it discovers the labelled services of
// scope and publishes one replay message per service on the replay topic,
// so Eventarc delivers each to whichever instance Cloud Run scales out, and
// each reconcile is paced there as any event is. The scope must lie within
// the function's allowlist: projects/P for a project it allows, folders/N
// for a folder entry of the allowlist, organizations/N only for "*".
// Returns the skip/reject reason for the sweep's own outcome when it ends
// without replays, else "".
func (h *Handler) sweep(ctx context.Context, scope string) (string, error) {
	log := logx.From(ctx)
	if !h.sweepAllowed(scope) {
		return "", fmt.Errorf("sweep scope %s is outside the function's scope %s (%s): %w",
			scope, strings.Join(h.cfg.Projects, ","), EnvProjects, errOutOfScope)
	}
	if h.disc == nil || h.replays == nil {
		return "", fmt.Errorf("sweep of %s: no discovery or replay topic configured (%s): %w", scope, EnvReplayTopic, iapsetup.ErrPermanent)
	}
	d, err := h.disc.Discover(ctx, scope, true)
	logDiscovery(ctx, scope, d, err)
	if err != nil {
		return "", fmt.Errorf("discovering the services of %s: %w", scope, classify(err))
	}
	ms := make([]event.ReplayMessage, 0, len(d.Services))
	for _, f := range d.Services {
		m := event.ReplayMessageFor(event.Target{Kind: event.TargetService, Project: f.Ref.Project, Region: f.Ref.Region, Service: f.Ref.Name}, SweepRequester)
		if m.Validate() != nil {
			continue // a name the replay decoder would refuse: nothing to replay
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return "sweep of " + scope + ": no labelled Cloud Run service found (" + discoveryNote(d) + ")", nil
	}
	if err := h.replays.PublishReplays(ctx, ms); err != nil {
		return "", fmt.Errorf("publishing %d replay messages for the sweep of %s: %w", len(ms), scope, errors.Join(err, iapsetup.ErrTransient))
	}
	log.Info("sweep published replay messages", "scope", scope, "replays", len(ms), "discovery", d.Path, "discoveryCalls", d.Calls)
	return "", nil
}

// errOutOfScope marks a sweep request outside the allowlist (rejected).
var errOutOfScope = errors.New("out of scope")

// sweepAllowed reports whether the allowlist covers scope as a whole.
func (h *Handler) sweepAllowed(scope string) bool {
	if slices.Contains(h.cfg.Projects, "*") {
		return true
	}
	if p, ok := strings.CutPrefix(scope, "projects/"); ok {
		return h.scope.Allows(p)
	}
	if strings.HasPrefix(scope, "folders/") {
		return slices.Contains(h.cfg.Projects, scope)
	}
	return false
}

// classify marks a discovery error transient or permanent for the handler.
func classify(err error) error {
	if errors.Is(err, iapsetup.ErrPermanent) || errors.Is(err, iapsetup.ErrTransient) {
		return err
	}
	if gcperr.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) {
		return errors.Join(err, iapsetup.ErrTransient)
	}
	return errors.Join(err, iapsetup.ErrPermanent)
}

func discoveryNote(d *gcp.Discovered) string {
	if d == nil {
		return "discovery did not run"
	}
	s := fmt.Sprintf("discovery: %s, %d calls", d.Path, d.Calls)
	if d.Path == gcp.PathAsset {
		s += "; Cloud Asset's index lags behind changes by minutes"
	}
	if d.Fallback != "" {
		s += "; " + d.Fallback
	}
	return s
}

func logDiscovery(ctx context.Context, scope string, d *gcp.Discovered, err error) {
	log := logx.From(ctx)
	if d == nil {
		log.Error("discovery failed", "scope", scope, "err", err)
		return
	}
	attrs := []any{"scope", scope, "discovery", d.Path, "discoveryCalls", d.Calls, "found", len(d.Services)}
	if d.Fallback != "" {
		attrs = append(attrs, "fallback", d.Fallback)
	}
	if err != nil {
		log.Error("discovery failed", append(attrs, "err", err)...)
		return
	}
	log.Info("discovered Cloud Run services", attrs...)
}

// handleSweep runs a sweep request and acknowledges it: out of scope →
// rejected outcome; nothing found → skipped outcome naming the discovery
// path; transient failures → an error (Eventarc redelivers); permanent
// ones → failed outcome. A sweep that published its replays publishes no
// outcome of its own: each replayed service gets one.
func (h *Handler) handleSweep(ctx context.Context, scope string, trig outcomeTrigger, start time.Time) error {
	reason, err := h.sweep(ctx, scope)
	switch {
	case errors.Is(err, errOutOfScope):
		return h.publish(ctx, h.rejectedMessage(trig, err.Error(), start))
	case err != nil && errors.Is(err, iapsetup.ErrTransient):
		logx.From(ctx).Warn("transient failure of a sweep; returning an error so Eventarc redelivers", "err", err)
		return err
	case err != nil:
		m := h.skipMessage(trig, err.Error(), start)
		m.Outcome = outcome.Failed
		return h.publish(ctx, m)
	case reason != "":
		return h.publish(ctx, h.skipMessage(trig, reason, start))
	}
	return nil
}

type outcomeTrigger = outcome.Trigger

// TopicReplayPublisher publishes replay messages on a Pub/Sub topic (no
// ordering keys: each message names one service and may be reconciled
// anywhere), through Pub/Sub's REST client with the generated client's
// Publish retries (internal/pubsubrest, as pkg/outcome does, to keep the
// gRPC client's packages out of the function's start-up).
// Required IAM: pubsub.topics.publish on the replay topic.
type TopicReplayPublisher struct {
	s     *pubsub.Service
	topic string
}

// NewTopicReplayPublisher publishes to topic (an id in project or
// projects/P/topics/T) through s.
func NewTopicReplayPublisher(s *pubsub.Service, project, topic string) *TopicReplayPublisher {
	return &TopicReplayPublisher{s: s, topic: outcome.TopicName(project, topic)}
}

// maxPublishBatch is the most messages one Publish request carries
// (Pub/Sub's limit is 1,000 messages and 10 MB; a replay message is about
// 100 bytes).
const maxPublishBatch = 1000

// PublishReplays publishes ms, up to maxPublishBatch a request, the
// requests concurrently, and waits until Pub/Sub accepted each; at most
// three failures are returned. Publishing a message twice is harmless:
// reconciles are idempotent.
func (p *TopicReplayPublisher) PublishReplays(ctx context.Context, ms []event.ReplayMessage) error {
	var batches [][]*pubsub.PubsubMessage
	for i, m := range ms {
		body, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding replay message: %w", err)
		}
		if i%maxPublishBatch == 0 {
			batches = append(batches, make([]*pubsub.PubsubMessage, 0, min(maxPublishBatch, len(ms)-i)))
		}
		batches[len(batches)-1] = append(batches[len(batches)-1], &pubsub.PubsubMessage{Data: base64.StdEncoding.EncodeToString(body)})
	}
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Go(func() {
			if _, err := pubsubrest.Publish(ctx, p.s, p.topic, b); err != nil {
				errs[i] = fmt.Errorf("publishing %d replay messages to %s: %w", len(b), p.topic, err)
			}
		})
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil && len(failed) < 3 {
			failed = append(failed, err)
		}
	}
	return errors.Join(failed...)
}
