package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	logging "cloud.google.com/go/logging/apiv2"
	"cloud.google.com/go/logging/apiv2/loggingpb"
	"cloud.google.com/go/pubsub/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/spf13/cobra"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/encoding/protojson"

	// Registers google.cloud.audit.AuditLog, the Any in audit entries'
	// protoPayload, so protojson can render entries read from Cloud Logging.
	_ "google.golang.org/genproto/googleapis/cloud/audit"

	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"github.com/iapguard/iapguard/pkg/outcome"
)

type replayFlags struct {
	opFlags
	scopeFlags
	fromLogs    bool
	since       time.Duration
	logFilter   string
	viaTopic    bool
	topic       string
	services    []string
	all         bool
	dryRun      bool
	requestedBy string
	verbose     bool
}

func newReplayCmd(s *streams) *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay [FILE|DIR ...]",
		Short: "Replay events by hand: CloudEvent/LogEntry files, audit entries from Cloud Logging, or replay messages",
		Long: `Replay events through iapguard — the mission's "manual replay of events".

Inputs (any mix):
  FILE|DIR ...        JSON files (every *.json of a DIR, in name order). Each holds a
                      CloudEvent in structured mode, a Cloud Audit Logs LogEntry (or a
                      JSON array of them, as 'gcloud logging read --format=json' writes),
                      or a replay message (docs/replay-message.md).
  --from-logs         audit entries of --project read back from Cloud Logging
                      (entries.list) for the last --since; against the emulator, its
                      audit log.
  --service S         a replay message for service S (with --region);
  --all               a replay message for every service of --project (in --region).
  --all-projects      a replay message for every project in --scope (default
                      $IAPGUARD_PROJECTS, the function's scope), found through
                      Resource Manager; with --via-topic, --project names the
                      topic's project (the function's), not a project to replay.

By default each input is handled here, with your credentials, by the
EnforceIAP function's own handler (decode → reconcile), and the outcomes are
printed (they are not published). With --via-topic the inputs are published
to the replay topic instead, so the deployed function does the work: every
service an input names becomes one replay message (deduplicated), and a
Compute entry (a backend service or NEG change) is published as the
LogEntry itself, which the function decodes on its log-sink path. (The
function ignores log entries older than IAPGUARD_MAX_EVENT_AGE, 24h by
default: replay old Compute entries without --via-topic.)

--dry-run: locally, plan and change nothing (outcomes say dryRun); with
--via-topic, print what would be published and publish nothing.

Exit status: 0; 2 when an outcome leaves a labelled service not compliant
(with --dry-run: would change it); 1 on errors, including an input that
is not a valid event.`,
		Example: `  iapctl replay ./events/ --project my-project --dry-run
  iapctl replay --from-logs --since 2h --project my-project
  iapctl replay --via-topic --project my-project --region europe-west1 --service billing
  iapctl replay --via-topic --all-projects --project iapguard-host --scope 'team-*'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd.Context(), s, &f, args)
		},
	}
	f.opFlags.add(cmd, regionOptional, 5*time.Minute)
	f.scopeFlags.add(cmd, "replay")
	fl := cmd.Flags()
	fl.BoolVar(&f.fromLogs, "from-logs", false, "read audit entries of --project back from Cloud Logging")
	fl.DurationVar(&f.since, "since", time.Hour, "with --from-logs: how far back to read")
	fl.StringVar(&f.logFilter, "log-filter", "", "with --from-logs: an extra Logging query clause, ANDed (e.g. 'resource.labels.service_name=\"billing\"')")
	fl.BoolVar(&f.viaTopic, "via-topic", false, "publish to the replay topic so the deployed function does the work")
	fl.StringVar(&f.topic, "topic", functions.DefaultReplayTopic, "replay topic: an id in --project, or projects/P/topics/T")
	fl.StringSliceVar(&f.services, "service", nil, "replay message for this service (repeatable; needs --region)")
	fl.BoolVar(&f.all, "all", false, "replay message for every service of --project (in --region, if given)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "change nothing (locally: plan only; --via-topic: publish nothing)")
	fl.StringVar(&f.requestedBy, "requested-by", "iapctl", "requestedBy of replay messages (shown as the outcome's trigger principal)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "also show skipped outcomes of events that are not about a Cloud Run service")
	return cmd
}

// replayInput is one event to replay.
type replayInput struct {
	origin string // file path, "logs", "--service"
	ev     cloudevents.Event
}

func runReplay(ctx context.Context, s *streams, f *replayFlags, args []string) error {
	sc, err := f.scopeFlags.resolve(ctx)
	if err != nil {
		return fail(err)
	}
	if f.allProjects {
		f.all = false // implied: a project replay message per project in scope
	}
	if err := f.opFlags.resolve(ctx, regionOptional, f.fromLogs || len(f.services) > 0 || f.all); err != nil {
		return fail(err)
	}
	switch {
	case len(args) == 0 && !f.fromLogs && len(f.services) == 0 && !f.all && !f.allProjects:
		return fail(errors.New("nothing to replay: give FILE|DIR arguments, --from-logs, --service, --all or --all-projects"))
	case len(f.services) > 0 && (f.all || f.allProjects):
		return fail(errors.New("give --service, --all or --all-projects, not several"))
	case f.allProjects && f.fromLogs:
		return fail(errors.New("--from-logs reads one project's audit log: give --project, not --all-projects"))
	case len(f.services) > 0 && f.region == "":
		return fail(errors.New("--service needs --region"))
	case f.since <= 0:
		return fail(fmt.Errorf("--since %s: want a positive duration such as 1h", f.since))
	case f.logFilter != "" && !f.fromLogs:
		return fail(errors.New("--log-filter needs --from-logs"))
	}
	topic := ""
	if f.viaTopic || len(f.services) > 0 || f.all {
		if topic, err = topicName(f.project, f.topic); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	var projects []string
	if f.allProjects {
		if projects, sc, _, err = projectsInScope(ctx, sc); err != nil {
			return fail(err)
		}
		if topic == "" && len(projects) > 0 {
			// Replayed here: the messages' events name the topic of the
			// first project, as Eventarc would name the host's; nothing is
			// published.
			if topic, err = topicName(projects[0], f.topic); err != nil {
				return fail(err)
			}
		}
	}

	files, err := eventFiles(args)
	if err != nil {
		return fail(err)
	}
	msgs, err := f.replayMessages(projects)
	if err != nil {
		return fail(err)
	}
	// Every file is checked (JSON, per-event cap, event kinds) and counted
	// before anything is replayed or published.
	total := len(msgs)
	for _, file := range files {
		if err := streamEvents(file, topic, func(int, cloudevents.Event) error { total++; return nil }); err != nil {
			return fail(err)
		}
	}
	in := &replayInputs{files: files, topic: topic, msgs: msgs, total: total, fromLogs: f.fromLogs, project: f.project, since: f.since, logFilter: f.logFilter}
	if f.viaTopic {
		return replayViaTopic(ctx, s, f, topic, in)
	}
	return replayLocally(ctx, s, f, sc, in)
}

// replayInputs are the inputs of one replay, read in order as a stream:
// files, then audit entries from Cloud Logging, then replay messages.
type replayInputs struct {
	files    []string
	topic    string
	msgs     []event.ReplayMessage
	fromLogs bool
	// project, since and logFilter: --from-logs.
	project   string
	since     time.Duration
	logFilter string
	// total counts the events of the files and messages (log entries are
	// not known before they are read).
	total int
}

// errStopInputs ends each early (interrupt).
var errStopInputs = errors.New("stop reading inputs")

// each calls fn with every input in order; fn's error (errStopInputs to
// stop quietly) ends the walk.
func (r *replayInputs) each(ctx context.Context, fn func(replayInput) error) error {
	for _, file := range r.files {
		err := streamEvents(file, r.topic, func(_ int, ev cloudevents.Event) error {
			return fn(replayInput{origin: file, ev: ev})
		})
		if err != nil {
			return err
		}
	}
	if r.fromLogs {
		if err := streamAuditLogs(ctx, r.project, r.since, r.logFilter, fn); err != nil {
			return err
		}
	}
	for i, m := range r.msgs {
		ev, err := replayMessageEvent(r.topic, m, i+1)
		if err != nil {
			return err
		}
		if err := fn(replayInput{origin: "--service", ev: ev}); err != nil {
			return err
		}
	}
	return nil
}

// replayMessages returns the replay messages --service / --all ask for,
// and with --all-projects one project message per project (in --region,
// if given).
func (f *replayFlags) replayMessages(projects []string) ([]event.ReplayMessage, error) {
	var targets []event.Target
	for _, svc := range f.services {
		targets = append(targets, event.Target{Kind: event.TargetService, Project: f.project, Region: f.region, Service: svc})
	}
	if f.all {
		targets = append(targets, event.Target{Kind: event.TargetProject, Project: f.project, Region: f.region})
	}
	for _, p := range projects {
		targets = append(targets, event.Target{Kind: event.TargetProject, Project: p, Region: f.region})
	}
	var out []event.ReplayMessage
	for _, t := range targets {
		m := event.ReplayMessageFor(t, f.requestedBy)
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("replay message for %s: %w", t, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// replayMessageEvent wraps a replay message in the messagePublished
// CloudEvent Eventarc would deliver for it from topic.
func replayMessageEvent(topic string, m event.ReplayMessage, n int) (cloudevents.Event, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return cloudevents.Event{}, fmt.Errorf("encoding replay message: %w", err)
	}
	project, id := topicParts(topic)
	return event.NewMessagePublishedEvent(project, id, "projects/"+project+"/subscriptions/iapctl-replay",
		event.PubSubMessage{Data: data, MessageID: "iapctl-" + strconv.Itoa(n), PublishTime: time.Now().UTC()})
}

// topicParts splits projects/P/topics/T.
func topicParts(topic string) (project, id string) {
	parts := strings.Split(topic, "/")
	if len(parts) == 4 {
		return parts[1], parts[3]
	}
	return "", topic
}

// parseEvent reads one event: a structured-mode CloudEvent
// ("specversion"), a LogEntry ("protoPayload"; wrapped as Eventarc would,
// event.NewAuditLogEvent) or a replay message ("version"; wrapped as a
// messagePublished event from topic, n numbering it).
func parseEvent(raw json.RawMessage, topic string, n int) (cloudevents.Event, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return cloudevents.Event{}, fmt.Errorf("%s, not a JSON object: want a CloudEvent, a LogEntry or a replay message", jsonKind(raw))
	}
	switch {
	case probe["specversion"] != nil:
		var ev cloudevents.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			return cloudevents.Event{}, fmt.Errorf("not a CloudEvent in structured mode: %w", err)
		}
		return ev, nil
	case probe["protoPayload"] != nil:
		return event.NewAuditLogEvent(raw)
	case probe["version"] != nil:
		m, err := event.ParseReplayMessage(raw)
		if err != nil {
			return cloudevents.Event{}, err
		}
		return replayMessageEvent(cmp.Or(topic, "projects/"+m.Project+"/topics/"+functions.DefaultReplayTopic), m, n)
	}
	return cloudevents.Event{}, errors.New(`not a CloudEvent ("specversion"), a LogEntry ("protoPayload") or a replay message ("version")`)
}

// streamAuditLogs reads the Admin Activity audit entries of project for
// the last since from Cloud Logging (entries.list, oldest first, a page at
// a time) about Cloud Run and Compute, and calls fn with each, wrapped as
// the CloudEvent Eventarc delivers for it. Needs logging.logEntries.list.
func streamAuditLogs(ctx context.Context, project string, since time.Duration, extra string, fn func(replayInput) error) error {
	host, err := emulatorHost(ctx)
	if err != nil {
		return err
	}
	var opts []option.ClientOption
	if host != "" {
		opts = gcp.EmulatorGRPCOptions(host, "")
	}
	lc, err := logging.NewClient(ctx, opts...)
	if err != nil {
		return explain(fmt.Errorf("creating Cloud Logging client: %w", err), host)
	}
	defer lc.Close()
	filter := auditLogFilter(project, time.Now().Add(-since), extra)
	it := lc.ListLogEntries(ctx, &loggingpb.ListLogEntriesRequest{
		ResourceNames: []string{"projects/" + project}, Filter: filter, OrderBy: "timestamp asc", PageSize: 1000,
	})
	for {
		e, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			if interrupted(ctx) {
				return errStopInputs
			}
			if gcperr.IsPermissionDenied(err) || gcperr.IsNotFound(err) {
				return fmt.Errorf("reading audit entries of project %s (logging.logEntries.list): %s", project, grpcDesc(err))
			}
			return explain(fmt.Errorf("reading audit entries of project %s: %w", project, err), host)
		}
		b, err := protojson.Marshal(e)
		if err != nil {
			return fmt.Errorf("rendering log entry %s: %w", e.GetInsertId(), err)
		}
		if len(b) > maxEventBytes {
			return fmt.Errorf("log entry %s is %d bytes, over the %d MiB the function accepts for one event", e.GetInsertId(), len(b), maxEventBytes>>20)
		}
		ev, err := event.NewAuditLogEvent(b)
		if err != nil {
			return fmt.Errorf("log entry %s: %w", e.GetInsertId(), err)
		}
		if err := fn(replayInput{origin: "logs", ev: ev}); err != nil {
			return err
		}
	}
}

// auditLogFilter selects project's Admin Activity entries from Cloud Run
// and Compute since from; the decoder picks what it acts on.
func auditLogFilter(project string, from time.Time, extra string) string {
	f := fmt.Sprintf(`logName="projects/%s/logs/cloudaudit.googleapis.com%%2Factivity" AND timestamp>="%s" AND (protoPayload.serviceName="%s" OR protoPayload.serviceName="%s")`,
		project, from.UTC().Format(time.RFC3339), event.RunServiceName, event.ComputeServiceName)
	if extra != "" {
		f += " AND (" + extra + ")"
	}
	return f
}

// ---- local replay --------------------------------------------------------------

// printingPublisher is the local replay's outcome publisher: it prints
// each outcome (as published: Marshal fills and validates it) instead of
// sending it to Pub/Sub, and counts them (it keeps none: a replay of many
// events holds no more than one at a time).
type printingPublisher struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	verbose bool
	// before is called before an outcome is printed (clears the progress
	// line).
	before func()
	n      int
	counts map[outcome.Kind]int
	// bad: outcomes leaving a labelled service non-compliant; malformed:
	// rejected events about no service.
	bad, malformed, hidden int
}

func (p *printingPublisher) Publish(_ context.Context, m *outcome.Message) (string, error) {
	body, err := m.Marshal()
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.counts == nil {
		p.counts = map[outcome.Kind]int{}
	}
	p.counts[m.Outcome]++
	if outcomeNonCompliant(m) {
		p.bad++
	}
	if m.Outcome == outcome.Rejected && m.Resource.Service == "" {
		p.malformed++
	}
	if p.before != nil {
		p.before()
	}
	switch {
	case p.json:
		fmt.Fprintf(p.w, "%s\n", body)
	case !p.verbose && m.Outcome == outcome.Skipped && m.Resource.Service == "":
		p.hidden++
	default:
		fmt.Fprintln(p.w, outcomeLine(m, true))
	}
	return strconv.Itoa(p.n), nil
}

// replayKey is what makes two inputs the same replay: the Cloud Run
// services an event names, or the Compute resource of a Compute entry.
// Inputs the decoder rejects or skips have none (each goes through).
func replayKey(ev cloudevents.Event) []string {
	dec, err := event.Decode(ev)
	if err != nil || dec.Skip != "" {
		return nil
	}
	if dec.Compute != nil {
		return []string{"compute " + dec.Trigger.ResourceName}
	}
	keys := make([]string, 0, len(dec.Targets))
	for _, t := range dec.Targets {
		keys = append(keys, t.ResourceName())
	}
	return keys
}

// replayLocally hands each input to the function's handler, one at a time
// in input order, leaving out inputs about resources already replayed in
// this run (the reconcile reads live state, so once is enough). With
// --all-projects the reconciler's scope is allScope (that scope With the
// projects found in it). On an interrupt it starts no further input, lets
// the one under way finish (finishContext), prints the summary and ends
// with "interrupted: N event(s) done, M not started".
func replayLocally(ctx context.Context, s *streams, f *replayFlags, allScope scope.Scope, in *replayInputs) error {
	sc := scope.AllProjects()
	switch {
	case f.allProjects:
		sc = allScope
	case f.project != "":
		sc = scope.New(f.project)
	}
	sess, err := f.connect(ctx, sc, f.dryRun)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	if f.project != "" && !f.allProjects {
		if err := sess.checkProject(ctx, f.region); err != nil {
			return fail(err)
		}
	}
	prog := newProgressBar(s.err, true, "event(s)")
	pub := &printingPublisher{w: s.out, json: f.output == outputJSON, verbose: f.verbose, before: prog.finish}
	cfg := functions.Config{Project: f.project, DryRun: f.dryRun, Timeout: time.Minute, AccessPolicies: sess.access}
	h := functions.NewHandler(cfg, sess.rec, pub, nil)
	// Whole-project replays discover their services as the function does
	// (Cloud Asset, else per region). Sweep requests need the deployed
	// function's replay topic: locally they fail with a message saying so.
	h.SetDiscovery(sess.clients.Discovery, nil)
	work, stopWork := finishContext(ctx)
	defer stopWork()
	var (
		read, handled, dups, abandoned, failed int
		logs                                   int // log entries read (in.total counts the rest)
		firstErr                               string
		timedOut                               error
	)
	of := ""
	if !in.fromLogs {
		of = "/" + strconv.Itoa(in.total)
	}
	showProgress := func() {
		prog.status(func() string {
			return fmt.Sprintf("replaying: %d%s event(s), %d replayed, %d left out as already replayed", read, of, handled, dups)
		})
	}
	seen := map[string]bool{}
	hooks := hooksOf(ctx)
	werr := in.each(ctx, func(inp replayInput) error {
		if ctx.Err() != nil {
			return errStopInputs
		}
		read++
		if inp.origin == "logs" {
			logs++
		}
		if keys := replayKey(inp.ev); len(keys) > 0 {
			fresh := false
			for _, k := range keys {
				if !seen[k] {
					fresh, seen[k] = true, true
				}
			}
			if !fresh {
				dups++
				showProgress()
				return nil
			}
		}
		if hooks.replaying != nil {
			hooks.replaying(read)
		}
		if err := h.Handle(work, inp.ev); err != nil {
			switch {
			case work.Err() != nil && interrupted(ctx):
				abandoned++
				return errStopInputs
			case work.Err() != nil:
				timedOut = work.Err()
				return errStopInputs
			}
			failed++
			if firstErr == "" {
				firstErr = fmt.Sprintf("%s (event %s): %v", inp.origin, inp.ev.ID(), err)
			}
		}
		handled++
		showProgress()
		return nil
	})
	prog.finish()
	switch {
	case timedOut != nil || (ctx.Err() != nil && !interrupted(ctx)):
		if timedOut == nil {
			timedOut = ctx.Err()
		}
		return fail(explain(timedOut, sess.emulator))
	case werr != nil && !errors.Is(werr, errStopInputs):
		return fail(werr)
	}
	if read == 0 && !interrupted(ctx) {
		fmt.Fprintln(s.err, "iapctl: nothing to replay (no events found)")
		return nil
	}
	if f.output != outputJSON {
		var parts []string
		for _, k := range outcome.Kinds() {
			if pub.counts[k] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", pub.counts[k], k))
			}
		}
		fmt.Fprintf(s.out, "\nreplayed %d event(s): %s", handled, strings.Join(parts, ", "))
		if dups > 0 {
			fmt.Fprintf(s.out, "; %d more about resources already replayed were left out", dups)
		}
		if pub.hidden > 0 {
			fmt.Fprintf(s.out, " (%d skipped outcome(s) not about a Cloud Run service hidden; -v shows them)", pub.hidden)
		}
		if f.dryRun {
			fmt.Fprint(s.out, "; dry run: nothing was changed")
		}
		fmt.Fprintln(s.out)
	}
	if interrupted(ctx) {
		// Every input read was done, left out or abandoned.
		ie := &interruptedError{unit: "event(s)", done: handled + dups, abandoned: abandoned, notStarted: in.total + logs - read}
		if in.fromLogs {
			ie.more = "; log entries not yet read are not counted"
		}
		return withCode(ExitInterrupted, ie)
	}
	switch {
	case failed > 0:
		return fail(fmt.Errorf("%d event(s) failed and would be redelivered by Eventarc; first: %s", failed, firstErr))
	case pub.malformed > 0:
		return fail(fmt.Errorf("%d event(s) were rejected as malformed (see the rejected outcomes)", pub.malformed))
	case pub.bad > 0:
		return withCode(ExitNonCompliant, nil)
	}
	return nil
}

// ---- replay through the topic ----------------------------------------------------

// defaultMaxEventAge is EnforceIAP's default IAPGUARD_MAX_EVENT_AGE: older
// log entries are acknowledged without work.
const defaultMaxEventAge = 24 * time.Hour

// topicRecord is one line of --via-topic output (JSON field names are
// documented in docs/iapctl.md).
type topicRecord struct {
	Topic     string `json:"topic"`
	MessageID string `json:"messageId,omitempty"`
	// Kind: "replay-message" or "log-entry".
	Kind string `json:"kind"`
	// About: the replay target, or the audited method and resource.
	About string `json:"about"`
	// From: the event the message stands for (method, resource, principal).
	From   string          `json:"from,omitempty"`
	Origin string          `json:"origin"`
	DryRun bool            `json:"dryRun"`
	Data   json.RawMessage `json:"data"`
}

// topicBatch turns the inputs into what to publish, one input at a time
// (add). Every input that names Cloud Run services (audit entries about
// services, replay messages) becomes one replay message per service —
// deduplicated across inputs, and fresh, so the function's maximum event
// age does not discard it. A Compute entry cannot be expressed as a replay
// message (the services behind a backend are found by reading Compute), so
// it is published as the LogEntry itself, which the function decodes on
// its log-sink path; entries about the same Compute resource are published
// once. Inputs the decoder rejects are kept as problems; those it skips are
// counted.
type topicBatch struct {
	f        *replayFlags
	topic    string
	seen     map[string]bool
	recs     []topicRecord
	old      int
	skipped  []string
	problems []string
}

func newTopicBatch(f *replayFlags, topic string) *topicBatch {
	return &topicBatch{f: f, topic: topic, seen: map[string]bool{}}
}

func (b *topicBatch) add(in replayInput) {
	f, topic := b.f, b.topic
	dec, err := event.Decode(in.ev)
	switch {
	case err != nil:
		b.problems = append(b.problems, fmt.Sprintf("%s (event %s): %v", in.origin, in.ev.ID(), err))
		return
	case dec.Skip != "":
		b.skipped = append(b.skipped, fmt.Sprintf("%s (event %s): %s", in.origin, in.ev.ID(), dec.Skip))
		return
	}
	from := ""
	if dec.Trigger.Method != event.ReplayMethod {
		from = dec.Trigger.Method + " " + dec.Trigger.ResourceName
		if dec.Trigger.Principal != "" {
			from += " by " + dec.Trigger.Principal
		}
	}
	if dec.Compute != nil {
		key := "compute " + dec.Trigger.ResourceName
		if b.seen[key] {
			return
		}
		data, err := messageData(in.ev)
		if err != nil {
			b.problems = append(b.problems, fmt.Sprintf("%s (event %s): %v", in.origin, in.ev.ID(), err))
			return
		}
		b.seen[key] = true
		if !dec.Trigger.Time.IsZero() && time.Since(dec.Trigger.Time) > defaultMaxEventAge {
			b.old++
		}
		b.recs = append(b.recs, topicRecord{Topic: topic, Kind: "log-entry", About: dec.Trigger.Method + " " + dec.Trigger.ResourceName,
			From: from, Origin: in.origin, DryRun: f.dryRun, Data: data})
		return
	}
	requestedBy := f.requestedBy
	if dec.Trigger.Method == event.ReplayMethod && dec.Trigger.Principal != "" {
		requestedBy = dec.Trigger.Principal // a replay message keeps who asked
	}
	for _, t := range dec.Targets {
		if b.seen[t.ResourceName()] {
			continue
		}
		b.seen[t.ResourceName()] = true
		data, err := json.Marshal(event.ReplayMessageFor(t, requestedBy))
		if err != nil {
			b.problems = append(b.problems, fmt.Sprintf("%s: encoding replay message: %v", in.origin, err))
			continue
		}
		b.recs = append(b.recs, topicRecord{Topic: topic, Kind: "replay-message", About: t.ResourceName(),
			From: from, Origin: in.origin, DryRun: f.dryRun, Data: data})
	}
}

// replayViaTopic publishes the inputs to topic (see viaTopicMessages).
// Needs pubsub.topics.publish on the topic.
func replayViaTopic(ctx context.Context, s *streams, f *replayFlags, topic string, in *replayInputs) error {
	b := newTopicBatch(f, topic)
	read := 0
	if err := in.each(ctx, func(inp replayInput) error {
		if ctx.Err() != nil {
			return errStopInputs
		}
		read++
		b.add(inp)
		return nil
	}); err != nil && !errors.Is(err, errStopInputs) {
		return fail(err)
	}
	if interrupted(ctx) {
		return withCode(ExitInterrupted, &interruptedError{unit: "event(s)", notStarted: max(in.total, read), more: " (interrupted while reading the inputs: nothing was published)"})
	}
	if read == 0 {
		fmt.Fprintln(s.err, "iapctl: nothing to replay (no events found)")
		return nil
	}
	recs, old, skipped, problems := b.recs, b.old, b.skipped, b.problems
	if len(problems) > 0 {
		return fail(fmt.Errorf("%d input(s) are not valid events, nothing was published; first: %s", len(problems), problems[0]))
	}
	if f.verbose {
		for _, sk := range skipped {
			fmt.Fprintf(s.err, "not published: %s\n", sk)
		}
	}
	if !f.dryRun && len(recs) > 0 {
		project, _ := topicParts(topic)
		client, host, err := pubsubClient(ctx, project)
		if err != nil {
			return fail(err)
		}
		defer client.Close()
		pub := client.Publisher(topic)
		defer pub.Stop()
		work, stopWork := finishContext(ctx)
		defer stopWork()
		for i := range recs {
			if interrupted(ctx) {
				printTopicRecords(s, f, recs[:i])
				return withCode(ExitInterrupted, &interruptedError{unit: "message(s)", done: i, notStarted: len(recs) - i})
			}
			id, err := pub.Publish(work, &pubsub.Message{Data: recs[i].Data}).Get(work)
			if err != nil {
				if gcperr.IsNotFound(err) {
					return fail(fmt.Errorf("topic %s not found: create it (deploy/scripts/pubsub.sh) or pass --topic", topic))
				}
				return fail(explain(fmt.Errorf("publishing to %s: %w", topic, err), host))
			}
			recs[i].MessageID = id
		}
	}
	printTopicRecords(s, f, recs)
	if f.output != outputJSON {
		verb := "published"
		if f.dryRun {
			verb = "dry run: would publish"
		}
		fmt.Fprintf(s.out, "\n%s %d message(s) to %s", verb, len(recs), topic)
		if len(skipped) > 0 {
			fmt.Fprintf(s.out, "; %d event(s) not for iapguard left out", len(skipped))
		}
		fmt.Fprintln(s.out)
	}
	if old > 0 {
		fmt.Fprintf(s.err, "iapctl: note: %d Compute log entr(ies) are older than %s; EnforceIAP acknowledges entries older than IAPGUARD_MAX_EVENT_AGE (default %s) without work: replay those without --via-topic\n",
			old, defaultMaxEventAge, defaultMaxEventAge)
	}
	return nil
}

// messageData is the LogEntry an audit-log event carries (compacted), or
// the message data of a messagePublished event.
func messageData(ev cloudevents.Event) ([]byte, error) {
	var raw []byte
	switch ev.Type() {
	case event.AuditLogWritten:
		raw = ev.Data()
	case event.MessagePublished:
		var env struct {
			Message struct {
				Data []byte `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(ev.Data(), &env); err != nil {
			return nil, fmt.Errorf("reading the Pub/Sub message: %w", err)
		}
		raw = env.Message.Data
	default:
		return nil, fmt.Errorf("event type %q cannot be published to the replay topic", ev.Type())
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("message data is not JSON: %w", err)
	}
	return buf.Bytes(), nil
}

// printTopicRecords prints what was (or, in a dry run, would be) published.
func printTopicRecords(s *streams, f *replayFlags, recs []topicRecord) {
	for _, r := range recs {
		if f.output == outputJSON {
			b, err := json.Marshal(r)
			if err != nil {
				fmt.Fprintf(s.err, "iapctl: %v\n", err)
				return
			}
			fmt.Fprintf(s.out, "%s\n", b)
			continue
		}
		verb := "published " + r.MessageID
		if f.dryRun {
			verb = "would publish"
		}
		fmt.Fprintf(s.out, "%s  %-14s %s\n", verb, r.Kind, r.About)
		if r.From != "" && r.Kind == "replay-message" {
			fmt.Fprintf(s.out, "    for %s\n", r.From)
		}
		if f.dryRun && r.Kind == "replay-message" {
			fmt.Fprintf(s.out, "    %s\n", r.Data)
		}
	}
}
