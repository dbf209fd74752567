package cli

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/iapguard/iapguard/emulator"
)

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestProbeEmulator: a wrong IAPGUARD_EMULATOR_HOST is reported by what is
// wrong with it, within the probe's own bound (the test's generous timeout
// only stops a hang), instead of after the client libraries' retries.
func TestProbeEmulator(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	ps := pstest.NewServer()
	t.Cleanup(func() { _ = ps.Close() })
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })

	tests := []struct {
		name string
		host string
		want string // "" : the probe passes
	}{
		{"the emulator", emu.Addr(), ""},
		{"nothing listening", closedPort(t), "the emulator is not running at 127.0.0.1:"},
		{"plain HTTP server", strings.TrimPrefix(plain.URL, "http://"), "is not the emulator: wrong protocol: it is a plain HTTP/1 server"},
		{"TLS server", strings.TrimPrefix(tlsSrv.URL, "https://"), "wrong protocol: it closed the connection"},
		{"silent server", silentServer(t), "sent nothing back"},
		{"another gRPC server", ps.Addr, "it speaks gRPC but is not the iapguard emulator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err := probeEmulator(ctx, tt.host, envEmulatorHost)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("probeEmulator(%s) = %v, want nil", tt.host, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("probeEmulator(%s) = %v, want it to say %q", tt.host, err, tt.want)
			}
			if !strings.Contains(err.Error(), envEmulatorHost) || !strings.Contains(err.Error(), "iapctl sandbox") {
				t.Errorf("error %q does not name the variable and the way out", err)
			}
		})
	}
}

// TestWrongEmulatorAddress runs the commands that used to hang for
// minutes against a plain HTTP server (and watch against a stale
// PUBSUB_EMULATOR_HOST): each ends with one line saying what is wrong.
func TestWrongEmulatorAddress(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	httpHost := strings.TrimPrefix(plain.URL, "http://")
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	wrong := map[string]string{envEmulatorHost: httpHost}
	stalePubSub := map[string]string{envEmulatorHost: emu.Addr(), envPubSubHost: closedPort(t)}
	httpPubSub := map[string]string{envEmulatorHost: emu.Addr(), envPubSubHost: httpHost}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"audit", wrong, []string{"audit", "--project", testProject}, "plain HTTP/1 server"},
		{"enforce", wrong, []string{"enforce", "--all", "--project", testProject}, "plain HTTP/1 server"},
		{"replay", wrong, []string{"replay", "--all", "--project", testProject}, "plain HTTP/1 server"},
		{"doctor", wrong, []string{"doctor", "s", "--project", testProject, "--region", testRegion}, "plain HTTP/1 server"},
		{"audience", wrong, []string{"audience", "s", "--project", testProject, "--region", testRegion}, "plain HTTP/1 server"},
		{"watch", wrong, []string{"watch", "--project", testProject, "--timeout", "10s"}, "plain HTTP/1 server"},
		{"watch, stale Pub/Sub emulator", stalePubSub, []string{"watch", "--project", testProject}, "a Pub/Sub emulator is not running at 127.0.0.1:"},
		{"watch, Pub/Sub address of an HTTP server", httpPubSub, []string{"watch", "--project", testProject}, "(PUBSUB_EMULATOR_HOST) is not a Pub/Sub emulator: wrong protocol"},
		{"a timeout shorter than the probe", map[string]string{envEmulatorHost: emu.Addr()}, []string{"audit", "--project", testProject, "--timeout", "1ns"}, "--timeout passed before the emulator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			code, out, errOut := runWithEnv(t, withEnv(ctx, tc.env), tc.args...)
			checkOneLineError(t, code, out, errOut, tc.want)
		})
	}
}

// healthCounter is a TCP proxy to target that counts the emulator probes
// (GET /_emulator/v1/health) passing through it.
func healthCounter(t *testing.T, target string) (string, *atomic.Int32) {
	t.Helper()
	const healthGET = "GET /_emulator/v1/health"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				br := bufio.NewReader(c)
				if b, _ := br.Peek(len(healthGET)); string(b) == healthGET {
					n.Add(1)
				}
				go func() { _, _ = io.Copy(c, up) }()
				_, _ = io.Copy(up, br)
			}()
		}
	}()
	return ln.Addr().String(), &n
}

// TestEmulatorProbedOncePerCommand: a command checks the emulator once,
// however many clients it builds (replay --from-logs: the reconciler's and
// Cloud Logging's; --all-projects: Resource Manager's and the reconciler's).
func TestEmulatorProbedOncePerCommand(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	addr, probes := healthCounter(t, ts.st.Emu.Addr())
	for _, args := range [][]string{
		{"replay", "--from-logs", "--project", testProject, "--dry-run"},
		{"audit", "--all-projects", "--scope", testProject},
	} {
		probes.Store(0)
		code, _, stderr := runWithEnv(t, withEnv(t.Context(), map[string]string{envEmulatorHost: addr}), args...)
		if code == ExitError {
			t.Fatalf("iapctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		if n := probes.Load(); n != 1 {
			t.Errorf("iapctl %s probed the emulator %d times, want once", strings.Join(args, " "), n)
		}
	}
}
