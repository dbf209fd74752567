package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// TestEnforcerBinary builds the enforcer, runs it as a process the way
// functions-framework-go runs on Cloud Run (FUNCTION_TARGET, PORT), lets the
// emulator's Eventarc stand-in deliver to it, and reads the outcome from
// Pub/Sub and the JSON log line from its stdout.
func TestEnforcerBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	bin := buildEnforcer(t)

	// A free port for the function, known before the emulator starts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	fnURL := "http://127.0.0.1:" + itoa(port) + "/"

	emu, err := emulator.New(emulator.Options{DeliverTo: []string{fnURL}})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	ps, err := pubsub.NewClient(ctx, "demo-project", option.WithEndpoint(emu.Addr()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	topic := "projects/demo-project/topics/iapguard-outcomes"
	if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: "projects/demo-project/subscriptions/s", Topic: topic}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(),
		"PORT="+itoa(port), "HOST=127.0.0.1",
		"GOOGLE_CLOUD_PROJECT=demo-project", "IAPGUARD_OUTCOMES_TOPIC=iapguard-outcomes",
		"IAPGUARD_EMULATOR_HOST="+emu.Addr(), "PUBSUB_EMULATOR_HOST="+emu.Addr(),
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	for {
		resp, err := http.Get(fnURL)
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the enforcer never started serving")
		case <-time.After(20 * time.Millisecond):
		}
	}

	cl, err := demo.Dial(ctx, emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateService(ctx, "demo-project", "us-central1", demo.ServiceSpec{Name: "hello", Labels: map[string]string{"iap": "enabled"}, Public: true}); err != nil {
		t.Fatal(err)
	}

	got := make(chan *outcome.Message, 16)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go func() {
		_ = ps.Subscriber("s").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			if om, err := outcome.Unmarshal(m.Data); err == nil {
				got <- om
			}
		})
	}()
	for {
		select {
		case m := <-got:
			if m.Resource.Service == "hello" && m.Outcome == outcome.Remediated {
				// The outcome is logged once Pub/Sub has accepted it, so
				// the line may follow the message by a moment: wait for it.
				for {
					mu.Lock()
					for _, l := range lines {
						var entry map[string]any
						if json.Unmarshal([]byte(l), &entry) == nil && entry["message"] == "outcome remediated" {
							if entry["severity"] != "INFO" {
								t.Errorf("log line severity = %v, want INFO: %s", entry["severity"], l)
							}
							mu.Unlock()
							return
						}
					}
					all := strings.Join(lines, "\n")
					mu.Unlock()
					select {
					case <-ctx.Done():
						t.Fatalf("no JSON log line for the outcome in stdout:\n%s", all)
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		case <-ctx.Done():
			t.Fatal("no remediated outcome from the enforcer process")
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildOut  []byte
)

// buildEnforcer builds the enforcer once for the tests of this package.
func buildEnforcer(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "enforcer-test"); buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		buildOut, buildErr = exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(buildDir, "enforcer"), ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "enforcer")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestEnforcerMisconfigured starts the enforcer with no configuration: it
// logs every problem at once, at start, as one JSON ERROR entry with Cloud
// Logging's field names, and still serves, answering events 500 so
// Eventarc keeps them.
func TestEnforcerMisconfigured(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := buildEnforcer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"PORT=" + itoa(port), "HOST=127.0.0.1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"IAPGUARD_LOG_LEVEL=loud", "IAPGUARD_PROJECTS=,", "IAPGUARD_OUTCOMES_TOPIC=projects/x/y"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var first string
	select {
	case first = <-lines:
	case <-ctx.Done():
		t.Fatal("the enforcer logged nothing at start")
	}
	var entry struct {
		Severity string   `json:"severity"`
		Message  string   `json:"message"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(first), &entry); err != nil {
		t.Fatalf("first log line is not JSON: %v: %s", err, first)
	}
	wantAbout := []string{"GOOGLE_CLOUD_PROJECT", "IAPGUARD_PROJECTS", "IAPGUARD_OUTCOMES_TOPIC", "IAPGUARD_LOG_LEVEL"}
	if entry.Severity != "ERROR" || len(entry.Problems) != len(wantAbout) {
		t.Fatalf("start-up entry = %s, want ERROR with %d problems", first, len(wantAbout))
	}
	for i, name := range wantAbout {
		if !strings.HasPrefix(entry.Problems[i], name) {
			t.Errorf("problem %d = %q, want one about %s", i, entry.Problems[i], name)
		}
	}
	url := "http://127.0.0.1:" + itoa(port) + "/"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{}`))
		req.Header.Set("ce-specversion", "1.0")
		req.Header.Set("ce-id", "e1")
		req.Header.Set("ce-source", "//cloudaudit.googleapis.com/projects/p/logs/activity")
		req.Header.Set("ce-type", "google.cloud.audit.log.v1.written")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("event answered %d, want 500 (so Eventarc keeps it)", resp.StatusCode)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the enforcer never started serving")
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case l := <-lines:
		if err := json.Unmarshal([]byte(l), &entry); err != nil || entry.Severity != "ERROR" || len(entry.Problems) != len(wantAbout) {
			t.Errorf("per-event log line = %s, want one JSON ERROR entry with every problem", l)
		}
	case <-ctx.Done():
		t.Fatal("no log line for the event")
	}
}
