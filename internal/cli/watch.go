package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/iapguard/iapguard/internal/deploy"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/outcome"
)

type watchFlags struct {
	project string
	topic   string
	filter  string
	count   int
	output  string
	timeout time.Duration
}

// watchReadyKey carries, in a command's context, a function watch calls
// with the subscription's name once it exists (tests publish after it).
type watchReadyKey struct{}

func newWatchCmd(s *streams) *cobra.Command {
	var f watchFlags
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow the outcomes topic through a temporary subscription (deleted on exit)",
		Long: `Print iapguard's outcomes as they are published. watch creates a temporary
subscription iapctl-watch-<random> on the outcomes topic — with --filter as
its server-side filter on the message attributes (outcome, project, region,
service, dryRun, schemaVersion; docs/outcomes.md) — and deletes it when it
exits (Ctrl-C, --count or --timeout). The subscription also expires by
itself after a day unused, should iapctl be killed.

Only outcomes published after the subscription exists are shown.

Needs pubsub.subscriptions.create, .consume and .delete in --project and
pubsub.topics.attachSubscription on the topic (roles/pubsub.editor, or
roles/pubsub.subscriber plus a custom grant).`,
		Example: `  iapctl watch --project my-project
  iapctl watch --project my-project --filter 'attributes.outcome = "failed" OR attributes.outcome = "conflict"'
  iapctl watch --project my-project --filter 'attributes.service = "billing"' --count 1 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatch(cmd.Context(), s, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.project, "project", "", "project of the topic and the temporary subscription (default $"+envProject+" or $"+envGcloudProj+")")
	fl.StringVar(&f.topic, "topic", deploy.OutcomesTopic, "outcomes topic: an id in --project, or projects/P/topics/T")
	fl.StringVar(&f.filter, "filter", "", `server-side subscription filter on attributes, e.g. 'attributes.outcome = "failed"'`)
	fl.IntVar(&f.count, "count", 0, "exit after this many outcomes (0: until interrupted)")
	fl.StringVarP(&f.output, "output", "o", outputTable, "output format: table (one line per outcome) or json (one outcome message per line)")
	fl.DurationVar(&f.timeout, "timeout", 0, "stop after this long (0: until interrupted or --count)")
	return cmd
}

func runWatch(ctx context.Context, s *streams, f *watchFlags) error {
	f.project = defaultProject(ctx, f.project)
	switch {
	case f.output != outputTable && f.output != outputJSON:
		return fail(fmt.Errorf("--output %q: want table or json", f.output))
	case f.count < 0:
		return fail(fmt.Errorf("--count %d: want 0 or more", f.count))
	case f.timeout < 0:
		return fail(fmt.Errorf("--timeout %s: want a positive duration or 0", f.timeout))
	case f.project != "" && !validName(f.project):
		return fail(fmt.Errorf("--project %q is not a project id or number", f.project))
	}
	topic, err := topicName(f.project, f.topic)
	if err != nil {
		return fail(err)
	}
	subProject := f.project
	if subProject == "" {
		subProject, _ = topicParts(topic)
	}
	client, host, err := pubsubClient(ctx, subProject)
	if err != nil {
		return fail(err)
	}
	defer client.Close()

	setupTimeout := 30 * time.Second
	if f.timeout > 0 && f.timeout < setupTimeout {
		setupTimeout = f.timeout // --timeout bounds the whole command
	}
	sub, err := createWatchSubscription(ctx, client, subProject, topic, f.filter, setupTimeout, host != "")
	if err != nil {
		return fail(explain(err, host))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := client.SubscriptionAdminClient.DeleteSubscription(dctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: sub}); err != nil {
			fmt.Fprintf(s.err, "iapctl: deleting subscription %s: %v (it expires by itself after a day unused)\n", sub, oneLine(err))
		}
	}()
	desc := "every outcome"
	if f.filter != "" {
		desc = "filter " + f.filter
	}
	fmt.Fprintf(s.err, "watching %s through temporary subscription %s (%s); Ctrl-C to stop\n", topic, sub, desc)
	if ready, ok := ctx.Value(watchReadyKey{}).(func(string)); ok {
		ready(sub)
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.timeout > 0 {
		rctx, cancel = context.WithTimeout(rctx, f.timeout)
		defer cancel()
	}
	var (
		mu   sync.Mutex
		seen int
	)
	subscriber := client.Subscriber(sub)
	subscriber.ReceiveSettings.NumGoroutines = 1
	rerr := subscriber.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		if f.count > 0 && seen >= f.count {
			return
		}
		om, err := outcome.Unmarshal(m.Data)
		if err != nil {
			fmt.Fprintf(s.err, "iapctl: ignoring message %s: %v\n", m.ID, err)
			return
		}
		seen++
		if f.output == outputJSON {
			fmt.Fprintf(s.out, "%s\n", bytes.TrimSpace(m.Data))
		} else {
			fmt.Fprintln(s.out, outcomeLine(om, false))
		}
		if f.count > 0 && seen >= f.count {
			cancel()
		}
	})
	if rerr != nil && !errors.Is(rerr, context.Canceled) && !errors.Is(rerr, context.DeadlineExceeded) {
		return fail(explain(fmt.Errorf("receiving from %s: %w", sub, rerr), host))
	}
	mu.Lock()
	defer mu.Unlock()
	if f.count > 0 && seen < f.count && ctx.Err() == nil {
		return fail(fmt.Errorf("timed out after %s with %d of %d outcome(s)", f.timeout, seen, f.count))
	}
	return nil
}

// createWatchSubscription creates projects/P/subscriptions/iapctl-watch-<hex>
// on topic with filter, ordered delivery and a one-day expiry, giving up
// after timeout; emulated: against an emulator.
func createWatchSubscription(ctx context.Context, client *pubsub.Client, project, topic, filter string, timeout time.Duration, emulated bool) (string, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "projects/" + project + "/subscriptions/iapctl-watch-" + hex.EncodeToString(rnd[:])
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := client.SubscriptionAdminClient.CreateSubscription(cctx, &pubsubpb.Subscription{
		Name: name, Topic: topic, Filter: filter, AckDeadlineSeconds: 10, EnableMessageOrdering: true,
		ExpirationPolicy:         &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(24 * time.Hour)},
		MessageRetentionDuration: durationpb.New(10 * time.Minute),
	})
	switch {
	case err == nil:
		return name, nil
	case gcperr.Code(err) == codes.NotFound:
		return "", fmt.Errorf("topic %s not found: %s", topic, grpcDesc(err))
	case gcperr.Code(err) == codes.InvalidArgument && filter != "":
		why := "; Pub/Sub said: " + grpcDesc(err)
		if emulated {
			why = "" // the emulator's parser speaks in its own internals
		}
		return "", fmt.Errorf(`--filter %q is not a filter Pub/Sub accepts: want conditions on the outcome attributes such as attributes.outcome = "failed" OR attributes.service = "billing" (docs/iapctl.md#watch%s)`,
			filter, why)
	}
	return "", fmt.Errorf("creating subscription on %s: %w", topic, err)
}
