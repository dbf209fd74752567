package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testProject = "demo-project"
	testNumber  = "123456789012"
	testRegion  = "us-central1"
)

// testStack is a local iapguard (internal/stack) with the demo project
// built through the official clients, and iapctl pointed at it.
type testStack struct {
	st      *stack.Stack
	clients *demo.Clients
}

// startStack starts a stack and builds demo.DefaultScenario. Without
// withFunction nothing reconciles on its own (events are delivered to a
// closed port and retried), so the demo stays as built: public services,
// ingress all, backend IAP off. With it, the stack has settled.
func startStack(t *testing.T, withFunction bool) *testStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err := stack.Start(ctx, stack.Options{NoFunction: !withFunction})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	t.Cleanup(st.Close)
	// Runs before st.Close: let the stack's outcome subscriber send its
	// acknowledgements first. (stack.Close closes the emulator before it
	// waits for that subscriber, whose pending acks are then retried
	// against a closed port for a long time.)
	t.Cleanup(func() {
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if time.Since(st.Outcomes.LastAt()) > 300*time.Millisecond {
				return
			}
		}
	})
	c, err := demo.Dial(ctx, st.Emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Build(ctx, st.Project.ID, testRegion, demo.DefaultScenario()); err != nil {
		t.Fatalf("building the demo project: %v", err)
	}
	ts := &testStack{st: st, clients: c}
	if withFunction {
		ts.settle(t)
	}
	return ts
}

func (ts *testStack) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := ts.st.Settle(ctx, 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func (ts *testStack) env() map[string]string {
	return map[string]string{envEmulatorHost: ts.st.Emu.Addr()}
}

// run runs iapctl in-process against the stack's emulator.
func (ts *testStack) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWithEnv(t, withEnv(t.Context(), ts.env()), args...)
}

// withEnv makes the commands run under ctx read their environment from m
// instead of the process environment. The Google client libraries still
// read the process environment for credentials.
func withEnv(ctx context.Context, m map[string]string) context.Context {
	return context.WithValue(ctx, envKey{}, m)
}

func runWithEnv(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs iapctl and checks its exit code and that stderr is empty
// (or, for exit 1, one line).
func (ts *testStack) mustRun(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	code, out, errOut := ts.run(t, args...)
	if code != wantCode {
		t.Fatalf("iapctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out, errOut)
	}
	if wantCode != ExitError && errOut != "" {
		t.Errorf("iapctl %s: unexpected stderr %q", strings.Join(args, " "), errOut)
	}
	return out
}

// auditEntries counts the emulator's audit entries (one per accepted
// write), leaving out Service Usage generateServiceIdentity: every reconcile
// — the function's, a dry run's — makes that idempotent call to learn the
// IAP service agent, and it changes nothing once the agent exists.
func (ts *testStack) auditEntries() int {
	n := 0
	for _, e := range ts.st.Emu.Core.Audit.Entries() {
		if !strings.HasSuffix(e.ProtoPayload.MethodName, ".GenerateServiceIdentity") {
			n++
		}
	}
	return n
}

// Volatile parts of outputs and what they become in golden files.
var normalisers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<TIME>"},
	{regexp.MustCompile(`backendServices/\d{6,}`), "backendServices/<ID>"},
	{regexp.MustCompile(`(iap_web/compute[^/]*/services/)\d{6,}`), "${1}<ID>"},
	{regexp.MustCompile(`iapctl-watch-[0-9a-f]{8}`), "iapctl-watch-<RANDOM>"},
	{regexp.MustCompile(`"durationMs":\s*\d+`), `"durationMs": 0`},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<PORT>"},
	{regexp.MustCompile(`("eventId":\s*)"[^"]*"`), `$1"<EVENT-ID>"`},
	{regexp.MustCompile(`("messageId":\s*)"[^"]*"`), `$1"<MESSAGE-ID>"`},
	{regexp.MustCompile(`published \S+  `), "published <MESSAGE-ID>  "},
}

func normalise(s string) string {
	for _, n := range normalisers {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return s
}

// golden compares got (normalised) with testdata/name; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = normalise(got)
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; go test ./internal/cli -run %s -update rewrites it):\n%s", path, t.Name(), diff)
	}
}

// closedPort returns an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// checkOneLineError checks the contract for every error path: exit 1, one
// line "iapctl: ..." on stderr mentioning want, nothing on stdout.
func checkOneLineError(t *testing.T, code int, stdout, stderr, want string) {
	t.Helper()
	if code != ExitError {
		t.Errorf("exit %d, want %d (stderr %q)", code, ExitError, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	if !strings.HasPrefix(stderr, "iapctl: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr = %q, want exactly one line starting with \"iapctl: \"", stderr)
	}
	if strings.Contains(stderr, "rpc error:") || strings.Contains(stderr, "Go value") || strings.Contains(stderr, "trailing tokens: {") {
		t.Errorf("stderr shows client-library internals: %q", stderr)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("stderr has a stack trace: %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want it to mention %q", stderr, want)
	}
}

func TestErrorsAreOneClearLine(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	closed := map[string]string{envEmulatorHost: closedPort(t)}
	for _, tc := range []struct {
		name string
		env  map[string]string // nil: the stack's
		args []string
		want string
	}{
		{"unknown project", nil, []string{"audit", "--project", "no-such-project"}, `project no-such-project not found`},
		{"unknown service", nil, []string{"doctor", "nope", "--project", testProject, "--region", testRegion}, "service nope not found in project demo-project, region us-central1"},
		{"unknown service to enforce", nil, []string{"enforce", "nope", "--project", testProject, "--region", testRegion}, "service nope not found in project demo-project"},
		{"unknown project for a service", nil, []string{"audience", "storefront", "--project", "no-such-project", "--region", testRegion}, "project no-such-project not found"},
		{"unknown project in Cloud Logging", nil, []string{"replay", "--from-logs", "--project", "no-such-project"}, "project no-such-project not found"},
		{"unknown topic", nil, []string{"watch", "--project", testProject, "--topic", "nope"}, "topic projects/demo-project/topics/nope not found"},
		{"bad watch filter", nil, []string{"watch", "--project", testProject, "--filter", "outcome is bad"}, `--filter "outcome is bad" is not a filter Pub/Sub accepts: want conditions on the outcome attributes such as attributes.outcome = "failed"`},
		{"unknown region", nil, []string{"audit", "--project", testProject, "--region", "mars-1"}, "--region mars-1 is not a Cloud Run region the emulator at 127.0.0.1:"},
		{"unknown region for a service", nil, []string{"doctor", "storefront", "--project", testProject, "--region", "mars-1"}, "--region mars-1 is not a Cloud Run region"},
		{"unknown region to enforce", nil, []string{"enforce", "storefront", "--project", testProject, "--region", "mars-1"}, "--region mars-1 is not a Cloud Run region"},
		{"emulator not running: audit", closed, []string{"audit", "--project", testProject}, "the emulator is not running at 127.0.0.1:"},
		{"emulator not running: watch", closed, []string{"watch", "--project", testProject}, "start it with `iapctl sandbox`"},
		{"emulator not running: replay from logs", closed, []string{"replay", "--from-logs", "--project", testProject}, "the emulator is not running"},
		{"emulator host malformed", map[string]string{envEmulatorHost: "http://localhost:8080/"}, []string{"audit", "--project", testProject}, "want host:port"},
		{"unknown flag", nil, []string{"audit", "--project", testProject, "--bogus"}, "unknown flag: --bogus"},
		{"bad output", nil, []string{"audit", "--project", testProject, "--output", "yaml"}, `--output "yaml": want table or json`},
		{"no project", nil, []string{"audit"}, "--project is required"},
		{"no region", nil, []string{"doctor", "storefront", "--project", testProject}, "--region is required"},
		{"wildcard project", nil, []string{"audit", "--project", "*"}, "is not a project id or number"},
		{"enforce without target", nil, []string{"enforce", "--project", testProject}, "give a SERVICE (with --region) or --all"},
		{"enforce with both", nil, []string{"enforce", "storefront", "--all", "--project", testProject}, "not both"},
		{"audience without service", nil, []string{"audience", "--project", testProject, "--region", testRegion}, "accepts 1 arg(s)"},
		{"replay nothing", nil, []string{"replay"}, "nothing to replay"},
		{"replay service without region", nil, []string{"replay", "--service", "x", "--project", testProject}, "--service needs --region"},
		{"replay missing file", nil, []string{"replay", "testdata/events/no-such-file.json"}, "no-such-file.json"},
		{"replay not an event", nil, []string{"replay", "testdata/events/README.md"}, "testdata/events/README.md: not valid JSON at byte 1"},
		{"replay bad since", nil, []string{"replay", "--from-logs", "--project", testProject, "--since", "-1h"}, "--since -1h0m0s"},
		{"watch negative count", nil, []string{"watch", "--project", testProject, "--count", "-1"}, "--count -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := tc.env
			if env == nil {
				env = ts.env()
			}
			// A command that hangs instead of failing runs into this
			// bound and reports a timeout, which is not tc.want: the
			// check needs no clock of its own.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			code, out, errOut := runWithEnv(t, withEnv(ctx, env), tc.args...)
			checkOneLineError(t, code, out, errOut, tc.want)
		})
	}
}

// TestNoCredentials runs against "real Google" with Application Default
// Credentials missing: no emulator, no GOOGLE_APPLICATION_CREDENTIALS and
// a HOME without gcloud's well-known file. The client libraries read the
// process environment, hence t.Setenv (and no t.Parallel).
func TestNoCredentials(t *testing.T) {
	t.Setenv(envCredentials, "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CLOUDSDK_CONFIG", t.TempDir())
	t.Setenv(envEmulatorHost, "")
	t.Setenv(envPubSubHost, "")
	t.Setenv("GCE_METADATA_HOST", "")
	for _, args := range [][]string{
		{"audit", "--project", "my-project"},
		{"doctor", "web", "--project", "my-project", "--region", testRegion},
		{"watch", "--project", "my-project"},
		{"replay", "--from-logs", "--project", "my-project"},
	} {
		t.Run(args[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			start := time.Now()
			code, out, errOut := runWithEnv(t, ctx, args...)
			checkOneLineError(t, code, out, errOut, "no Google Cloud credentials: run `gcloud auth application-default login`")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		err      error
		emulator string
		want     string
	}{
		{"missing ADC", errors.New("creating Cloud Run client: credentials: could not find default credentials. See https://cloud.google.com/docs/authentication/external/set-up-adc for more information"),
			"", "no Google Cloud credentials: run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file (to use the local emulator instead, set IAPGUARD_EMULATOR_HOST)"},
		{"deadline against the emulator", fmt.Errorf("listing: %w", context.DeadlineExceeded), "127.0.0.1:9",
			"timed out waiting for the emulator at 127.0.0.1:9 (raise --timeout?): listing: context deadline exceeded"},
		{"deadline against Google", status.Error(codes.DeadlineExceeded, "slow"), "",
			"timed out waiting for Google Cloud (raise --timeout?): rpc error: code = DeadlineExceeded desc = slow"},
		{"emulator went away", status.Error(codes.Unavailable, "connection refused"), "127.0.0.1:9",
			"cannot reach the emulator at 127.0.0.1:9 (IAPGUARD_EMULATOR_HOST): rpc error: code = Unavailable desc = connection refused; is `iapctl sandbox` still running?"},
		{"rejected credentials", status.Error(codes.Unauthenticated, "token expired"), "",
			"credentials rejected by Google Cloud (run `gcloud auth application-default login`): rpc error: code = Unauthenticated desc = token expired"},
		{"anything else is kept", errors.New("boom"), "", "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := explain(tc.err, tc.emulator).Error(); got != tc.want {
				t.Errorf("explain = %q\nwant      %q", got, tc.want)
			}
		})
	}
	if got := oneLine(errors.New("a\nb\n\tc")).Error(); got != "a b c" {
		t.Errorf("oneLine = %q", got)
	}
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progressBar{w: &buf, on: true, what: "services"}
	p.start(4)
	p.add(1)
	p.add(3)
	p.finish()
	p.status(func() string { return "replaying: 1 event(s)" })
	p.finish()
	p.finish() // nothing shown: nothing to clear
	want := "\r\033[K[                              ] 0/4 services" +
		"\r\033[K[=======                       ] 1/4 services" +
		"\r\033[K[==============================] 4/4 services" +
		"\r\033[K" +
		"\r\033[Kreplaying: 1 event(s)" +
		"\r\033[K"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("progress bar (-want +got):\n%s", diff)
	}
	buf.Reset()
	off := newProgressBar(&buf, true, "services") // a buffer is not a terminal
	off.start(2)
	off.add(2)
	off.status(func() string { return "replaying" })
	off.finish()
	if buf.Len() != 0 {
		t.Errorf("progress bar drawn on a non-terminal: %q", buf.String())
	}
}

func TestSmallHelpers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ project, topic, want, err string }{
		{"p", "t", "projects/p/topics/t", ""},
		{"", "projects/q/topics/t", "projects/q/topics/t", ""},
		{"", "t", "", "--project is required"},
		{"p", "projects/q/t", "", "want a topic id"},
		{"p", "a/b", "", "want a topic id"},
	} {
		got, err := topicName(tc.project, tc.topic)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("topicName(%q, %q) = %q, %v; want %q, error %q", tc.project, tc.topic, got, err, tc.want, tc.err)
		}
	}
	v := planView{
		Changes: []outcome.Change{
			{Field: "iamPolicy[roles/run.invoker]", Before: "allUsers"},
			{Field: "iamPolicy[roles/run.invoker]", After: "serviceAccount:agent"},
			{Field: "invokerIamDisabled", Before: "true", After: "false"},
			{Field: "ingress", Before: "INGRESS_TRAFFIC_ALL", After: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"},
			{Field: "annotations[iapguard.dev/managed]", After: "true"},
		},
		Steps: []outcome.Step{
			{Name: outcome.StepBackendIAP, Resource: "projects/p/global/backendServices/a", Result: outcome.StepChanged},
			{Name: outcome.StepBackendIAP, Resource: "projects/p/regions/r/backendServices/b", Result: outcome.StepConflict},
			{Name: outcome.StepBackendIAP, Resource: "projects/p/global/backendServices/c", Result: outcome.StepOK},
			{Name: outcome.StepDirectIAP, Result: outcome.StepChanged},
		},
	}
	want := []string{"public:allUsers", "invoker-iam-check-off", "ingress-all", "no-iap:global/a", "cdn:r/b", "run.app-no-iap"}
	if diff := cmp.Diff(want, bypasses(v)); diff != "" {
		t.Errorf("bypasses (-want +got):\n%s", diff)
	}
	m := &outcome.Message{Outcome: outcome.Remediated, DryRun: true, Resource: outcome.Resource{Name: "projects/p/locations/r/services/s", Project: "p", Region: "r", Service: "s"},
		Trigger: outcome.Trigger{Method: "google.cloud.run.v2.Services.SetIamPolicy", Principal: "dev@example.com"},
		Changes: []outcome.Change{{Field: "iamPolicy[roles/run.invoker]", Before: "allUsers"}}}
	if got, want := outcomeLine(m, false), "-  remediated (dry run)  r/s                          SetIamPolicy by dev@example.com          iamPolicy[roles/run.invoker] - allUsers"; got != want {
		t.Errorf("outcomeLine =\n%q\nwant\n%q", got, want)
	}
}

// testPubSub is a Pub/Sub client of project on the emulator at addr,
// closed when the test ends.
func testPubSub(t *testing.T, addr, project string) *pubsub.Client {
	t.Helper()
	ps, err := pubsub.NewClient(t.Context(), project, gcp.EmulatorGRPCOptions(addr, "")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return ps
}

// createTopicSubscription creates topic and a subscription sub on it.
func createTopicSubscription(t *testing.T, ps *pubsub.Client, topic, sub string) {
	t.Helper()
	if _, err := ps.TopicAdminClient.CreateTopic(t.Context(), &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(t.Context(), &pubsubpb.Subscription{Name: sub, Topic: topic}); err != nil {
		t.Fatal(err)
	}
}
