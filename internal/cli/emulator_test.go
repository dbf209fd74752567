package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/internal/cli"
)

// syncBuffer is a bytes.Buffer safe to write from Main's goroutine while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEmulatorCommand runs `iapctl emulator` in-process, connects the
// official Cloud Run client to the address it prints and stops it by
// cancelling the context, as Ctrl-C does.
func TestEmulatorCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	exit := make(chan int, 1)
	start := time.Now()
	go func() {
		code := cli.Main(ctx, []string{"emulator", "--addr", "127.0.0.1:0", "--project", "p=12"}, strings.NewReader(""), pw, &stderr)
		pw.Close()
		exit <- code
	}()

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var env []string
	timeout := time.After(20 * time.Second)
	for len(env) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stdout closed after %q; stderr: %s", env, stderr.String())
			}
			env = append(env, l)
		case code := <-exit:
			t.Fatalf("Main returned %d before printing the environment; stderr: %s", code, stderr.String())
		case <-timeout:
			t.Fatalf("no environment printed within 20 s; stdout so far %q", env)
		}
	}
	t.Logf("iapctl emulator: environment printed %s after Main started", time.Since(start))

	addr, ok := strings.CutPrefix(env[0], "IAPGUARD_EMULATOR_HOST=")
	if !ok || env[1] != "PUBSUB_EMULATOR_HOST="+addr {
		t.Fatalf("environment = %q, want IAPGUARD_EMULATOR_HOST and PUBSUB_EMULATOR_HOST with one address", env)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("printed address %q, want 127.0.0.1 and the port picked", addr)
	}
	// The ready line follows the environment, on stderr.
	ready := "emulator ready on " + addr
	for wait := time.Now().Add(5 * time.Second); !strings.Contains(stderr.String(), "\n") && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	if errText := stderr.String(); !strings.Contains(errText, ready) || !strings.HasSuffix(errText, " p=12\n") {
		t.Errorf("stderr = %q, want %q and the project p=12", errText, ready)
	}

	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	client, err := run.NewServicesClient(cctx,
		option.WithEndpoint(addr),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
		option.WithTelemetryDisabled(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	op, err := client.CreateService(cctx, &runpb.CreateServiceRequest{
		Parent:    "projects/p/locations/us-central1",
		ServiceId: "hello",
		Service:   &runpb.Service{Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}},
	})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	if _, err := op.Wait(cctx); err != nil {
		t.Fatalf("waiting for CreateService: %v", err)
	}
	// The project flag made "12" the project's number.
	svc, err := client.GetService(cctx, &runpb.GetServiceRequest{Name: "projects/12/locations/us-central1/services/hello"})
	if err != nil {
		t.Fatalf("GetService by project number: %v", err)
	}
	if svc.GetName() != "projects/12/locations/us-central1/services/hello" {
		t.Errorf("service name = %q", svc.GetName())
	}
	_, err = client.GetService(cctx, &runpb.GetServiceRequest{Name: "projects/demo-project/locations/us-central1/services/hello"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetService in the default project (not configured) = %v, want PERMISSION_DENIED (an unknown project, as on Google)", err)
	}

	// Ctrl-C with the client still connected.
	stopped := time.Now()
	cancel()
	select {
	case code := <-exit:
		t.Logf("iapctl emulator: returned %s after cancel", time.Since(stopped))
		if code != cli.ExitOK {
			t.Errorf("exit code %d after cancel, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main still running 10 s after its context was cancelled")
	}
	if strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr = %q, want only the ready line", stderr.String())
	}
}

func TestEmulatorCommandBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the one stderr line
	}{
		{name: "project without number", args: []string{"--project", "x"}, want: `--project: project "x": want ID=NUMBER`},
		{name: "project number zero", args: []string{"--project", "p=0"}, want: "NUMBER must be a positive integer"},
		{name: "project parent not a folder or organisation", args: []string{"--project", "p=1@projects/2"}, want: `want organizations/N or folders/N`},
		{name: "project under an unknown folder", args: []string{"--project", "p=1@folders/9"}, want: "parent folders/9 is not a folder of the emulator"},
		{name: "folder without parent", args: []string{"--folder", "9"}, want: `--folder: folder "9": want ID=PARENT`},
		{name: "folder under an unknown folder", args: []string{"--folder", "9=folders/8"}, want: "parent folders/8 is not a folder of the emulator"},
		{name: "folder given twice", args: []string{"--folder", "9=organizations/1", "--folder", "9=organizations/2"}, want: "already given by another --folder"},
		{name: "folder cycle", args: []string{"--folder", "9=folders/8", "--folder", "8=folders/9"}, want: "is its own ancestor"},
		{name: "duplicate above one", args: []string{"--duplicate", "2"}, want: "--duplicate 2: want a probability between 0 and 1"},
		{name: "reorder negative", args: []string{"--reorder", "-0.5"}, want: "--reorder -0.5: want a probability"},
		{name: "duplicate not a number", args: []string{"--duplicate", "often"}, want: `invalid argument "often" for "--duplicate"`},
		{name: "lro not a mode", args: []string{"--lro", "bogus"}, want: `--lro: lro mode "bogus": want on-first-poll, immediate`},
		{name: "lro negative", args: []string{"--lro", "-3s"}, want: `--lro: lro mode "-3s"`},
		{name: "asset index lag negative", args: []string{"--asset-index-lag", "-1m"}, want: "--asset-index-lag -1m0s: must not be negative"},
		{name: "unknown flag", args: []string{"--nope"}, want: "unknown flag: --nope"},
		{name: "positional argument", args: []string{"extra"}, want: `"extra"`},
		{name: "address not listenable", args: []string{"--addr", "256.0.0.1:0"}, want: "listening on 256.0.0.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A cancelled context: were the flags accepted, Main would start
			// the emulator and return 0 at once instead of blocking.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			var stdout, stderr bytes.Buffer
			args := append([]string{"emulator", "--addr", "127.0.0.1:0"}, tt.args...)
			code := cli.Main(ctx, args, strings.NewReader(""), &stdout, &stderr)
			if code != cli.ExitError {
				t.Errorf("exit code %d, want %d", code, cli.ExitError)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			errText := stderr.String()
			if strings.Count(errText, "\n") != 1 || !strings.HasSuffix(errText, "\n") {
				t.Errorf("stderr = %q, want exactly one line", errText)
			}
			if !strings.HasPrefix(errText, "iapctl: ") || !strings.Contains(errText, tt.want) {
				t.Errorf("stderr = %q, want iapctl: …%s…", errText, tt.want)
			}
			for _, bad := range []string{"goroutine ", "panic", "Usage:"} {
				if strings.Contains(errText, bad) {
					t.Errorf("stderr contains %q: %s", bad, errText)
				}
			}
		})
	}
}
