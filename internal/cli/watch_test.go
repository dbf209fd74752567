package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/iterator"

	"github.com/iapguard/iapguard/pkg/outcome"
)

type watchRun struct {
	code        int
	out, errOut string
}

// startWatch runs `iapctl watch args...` in the background and returns
// once its subscription exists, with a channel for the result.
func (ts *testStack) startWatch(t *testing.T, ctx context.Context, args ...string) <-chan watchRun {
	t.Helper()
	ready := make(chan string, 1)
	ctx = context.WithValue(withEnv(ctx, ts.env()), watchReadyKey{}, func(sub string) { ready <- sub })
	done := make(chan watchRun, 1)
	go func() {
		var r watchRun
		r.code, r.out, r.errOut = runWithEnv(t, ctx, append([]string{"watch"}, args...)...)
		done <- r
	}()
	select {
	case sub := <-ready:
		if !strings.HasPrefix(sub, "projects/demo-project/subscriptions/iapctl-watch-") {
			t.Errorf("subscription %q", sub)
		}
		return done
	case r := <-done:
		t.Fatalf("watch ended before subscribing: exit %d\n%s%s", r.code, r.out, r.errOut)
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not subscribe within 10s")
	}
	return nil
}

func waitWatch(t *testing.T, done <-chan watchRun) watchRun {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not end")
	}
	return watchRun{}
}

// watchSubscriptions lists the project's iapctl-watch-* subscriptions.
func (ts *testStack) watchSubscriptions(t *testing.T) []string {
	t.Helper()
	ps := testPubSub(t, ts.st.Emu.Addr(), testProject)
	var out []string
	it := ps.SubscriptionAdminClient.ListSubscriptions(t.Context(), &pubsubpb.ListSubscriptionsRequest{Project: "projects/" + testProject})
	for {
		s, err := it.Next()
		if err == iterator.Done {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s.Name, "/iapctl-watch-") {
			out = append(out, s.Name)
		}
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	ts := startStack(t, true)
	ctx := t.Context()

	// A teammate turns storefront's backend IAP off; the function puts it
	// back. The server-side filter names the service and the outcome: the
	// event of the function's own backend patch can be reconciled, and its
	// `compliant` published, before the remediating event's outcome (the
	// two are handled concurrently), so "the first outcome for storefront"
	// is not always the remediation.
	done := ts.startWatch(t, ctx, "--project", testProject, "--filter", `attributes.service = "storefront" AND attributes.outcome = "remediated"`, "--count", "1", "--timeout", "15s")
	if err := ts.clients.SetBackendIAP(ctx, testProject, "storefront-backend", false); err != nil {
		t.Fatal(err)
	}
	r := waitWatch(t, done)
	if r.code != ExitOK {
		t.Fatalf("watch: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	golden(t, "watch-storefront.golden", r.out)
	if want := `watching projects/demo-project/topics/iapguard-outcomes through temporary subscription projects/demo-project/subscriptions/iapctl-watch-`; !strings.HasPrefix(r.errOut, want) {
		t.Errorf("stderr = %q, want it to start with %q", r.errOut, want)
	}
	ts.settle(t)

	// JSON: one outcome message per line, filtered on the outcome.
	done = ts.startWatch(t, ctx, "--project", testProject, "--filter", `attributes.outcome = "remediated"`, "--count", "1", "-o", "json", "--timeout", "15s")
	if err := makePublic(ctx, ts.clients, testProject, testRegion, "reports"); err != nil {
		t.Fatal(err)
	}
	r = waitWatch(t, done)
	if r.code != ExitOK {
		t.Fatalf("watch -o json: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	m, err := outcome.Unmarshal([]byte(strings.TrimSpace(r.out)))
	if err != nil {
		t.Fatalf("watch -o json printed %q: %v", r.out, err)
	}
	if m.Outcome != outcome.Remediated || m.Resource.Service != "reports" || len(m.Changes) != 1 || m.Changes[0].Before != "allUsers" {
		t.Errorf("outcome = %+v", m)
	}
	ts.settle(t)

	// Nothing matches: --timeout ends it, exit 1 saying how many arrived.
	done = ts.startWatch(t, ctx, "--project", testProject, "--filter", `attributes.outcome = "failed"`, "--count", "1", "--timeout", "300ms")
	r = waitWatch(t, done)
	if r.code != ExitError || !strings.HasSuffix(r.errOut, "iapctl: timed out after 300ms with 0 of 1 outcome(s)\n") {
		t.Errorf("timeout: exit %d stderr %q", r.code, r.errOut)
	}

	// Interrupted (Ctrl-C cancels the context): exit 0.
	cctx, cancel := context.WithCancel(ctx)
	done = ts.startWatch(t, cctx, "--project", testProject)
	cancel()
	if r = waitWatch(t, done); r.code != ExitOK {
		t.Errorf("interrupted: exit %d stderr %q", r.code, r.errOut)
	}

	// Every temporary subscription is gone.
	if subs := ts.watchSubscriptions(t); len(subs) != 0 {
		t.Errorf("subscriptions left behind: %v", subs)
	}
}
