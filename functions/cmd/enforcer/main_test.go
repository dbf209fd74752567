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
	bin := filepath.Join(t.TempDir(), "enforcer")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

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
				mu.Lock()
				defer mu.Unlock()
				for _, l := range lines {
					var entry map[string]any
					if json.Unmarshal([]byte(l), &entry) == nil && entry["message"] == "outcome remediated" {
						if entry["severity"] != "INFO" {
							t.Errorf("log line severity = %v, want INFO: %s", entry["severity"], l)
						}
						return
					}
				}
				t.Errorf("no JSON log line for the outcome in stdout:\n%s", strings.Join(lines, "\n"))
				return
			}
		case <-ctx.Done():
			t.Fatal("no remediated outcome from the enforcer process")
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
