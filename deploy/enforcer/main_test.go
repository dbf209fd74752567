package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// received carries the events the test function got.
var received = make(chan cloudevents.Event, 1)

func init() {
	functions.CloudEvent("EnforcerSmokeTarget", func(_ context.Context, e cloudevents.Event) error {
		received <- e
		return nil
	})
}

func TestRunNeedsTarget(t *testing.T) {
	t.Setenv("FUNCTION_TARGET", "")
	err := run(os.Getenv, "127.0.0.1")
	if err == nil || !strings.Contains(err.Error(), "FUNCTION_TARGET") {
		t.Fatalf("run without FUNCTION_TARGET = %v, want an error naming FUNCTION_TARGET", err)
	}
}

func TestRunUnknownTarget(t *testing.T) {
	t.Setenv("FUNCTION_TARGET", "NoSuchFunction")
	t.Setenv("PORT", freePort(t))
	err := run(os.Getenv, "127.0.0.1")
	if err == nil || !strings.Contains(err.Error(), "NoSuchFunction") {
		t.Fatalf("run with an unregistered target = %v, want an error naming it", err)
	}
}

// TestRunServesTarget delivers a binary-mode CloudEvent, as Eventarc does,
// to the function FUNCTION_TARGET names.
func TestRunServesTarget(t *testing.T) {
	port := freePort(t)
	t.Setenv("FUNCTION_TARGET", "EnforcerSmokeTarget")
	t.Setenv("PORT", port)
	errc := make(chan error, 1)
	// The server has no shutdown hook (funcframework.StartHostPort blocks in
	// ListenAndServe); it ends with the test binary.
	go func() { errc <- run(os.Getenv, "127.0.0.1") }()

	url := "http://127.0.0.1:" + port + "/"
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(`{"protoPayload":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("ce-id", "evt-1")
		req.Header.Set("ce-specversion", "1.0")
		req.Header.Set("ce-source", "//cloudaudit.googleapis.com/projects/p/logs/activity")
		req.Header.Set("ce-type", "google.cloud.audit.log.v1.written")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST / = %s, want 200", resp.Status)
			}
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case e := <-received:
		if e.ID() != "evt-1" || e.Type() != "google.cloud.audit.log.v1.written" {
			t.Errorf("function got event id %q type %q, want evt-1 google.cloud.audit.log.v1.written", e.ID(), e.Type())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("function was not called")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
