package cli

// The emulator probe: before any client is built, iapctl checks once, in
// two steps of at most probeTimeout each, that IAPGUARD_EMULATOR_HOST (and
// PUBSUB_EMULATOR_HOST) name something that can serve the clients, and says
// what is wrong when not.
// Without it, the Google client libraries retry a wrong address (a plain
// HTTP server, a TLS port, a stale Pub/Sub emulator) until the command's
// timeout — minutes — and then report only a deadline.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// probeTimeout bounds each of the probe's two steps (gRPC preface, health).
const probeTimeout = 3 * time.Second

// http2Preface is what an HTTP/2 client sends first (RFC 9113 §3.4): the
// connection preface and an empty SETTINGS frame. gRPC is HTTP/2; a gRPC
// server answers with its own SETTINGS frame.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// probeError is a failed probe: what is wrong with the address, in words.
type probeError struct {
	host, env string
	what      string // "the emulator", "a Pub/Sub emulator"
	problem   string // "nothing is listening there", "wrong protocol: …"
	detail    string
	hint      string
}

func (e *probeError) Error() string {
	var msg string
	if e.problem == problemRefused {
		msg = fmt.Sprintf("%s is not running at %s (%s): %s", e.what, e.host, e.env, e.problem)
	} else {
		msg = fmt.Sprintf("%s (%s) is not %s: %s", e.host, e.env, e.what, e.problem)
	}
	if e.detail != "" {
		msg += " (" + e.detail + ")"
	}
	return msg + "; " + e.hint
}

const problemRefused = "nothing is listening there"

// startHint is the advice for a wrong IAPGUARD_EMULATOR_HOST.
func startHint(env string) string {
	return "start it with `iapctl sandbox` or `iapctl emulator` and use the address it prints, or unset " + env + " to use Google Cloud"
}

// probeTimedOut is the error when the command's own deadline (--timeout)
// ends the probe: that is not the emulator's fault.
func probeTimedOut(host, env string) error {
	return fmt.Errorf("--timeout passed before the emulator at %s (%s) could be checked; raise --timeout", host, env)
}

// probeEmulator checks that host is iapguard's emulator: something listens,
// it speaks gRPC (HTTP/2 in plain text) and its control API answers
// GET /_emulator/v1/health with {"status":"ok"}. env names the variable
// host came from, for the message.
func probeEmulator(ctx context.Context, host, env string) error {
	const what = "the emulator"
	if err := probeGRPC(ctx, host, env, what, startHint(env)); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+host+"/_emulator/v1/health", nil)
	if err != nil {
		return &probeError{host: host, env: env, what: what, problem: "not an address", detail: err.Error(), hint: startHint(env)}
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return probeTimedOut(host, env)
		}
		return &probeError{host: host, env: env, what: what, problem: "it speaks gRPC but is not the iapguard emulator",
			detail: "GET /_emulator/v1/health over HTTP/1.1 got no HTTP answer", hint: startHint(env)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var health struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &health) != nil || health.Status != "ok" {
		return &probeError{host: host, env: env, what: what, problem: "it speaks gRPC but is not the iapguard emulator",
			detail: fmt.Sprintf("GET /_emulator/v1/health answered %s", resp.Status), hint: startHint(env)}
	}
	return nil
}

// probeGRPC checks that something listens at host and answers the HTTP/2
// connection preface in plain text, as a gRPC server does, within
// probeTimeout. what names what should be there ("the emulator"); hint
// says what to do otherwise.
func probeGRPC(ctx context.Context, host, env, what, hint string) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(pctx, "tcp", host)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return probeTimedOut(host, env)
		case errors.Is(err, syscall.ECONNREFUSED):
			return &probeError{host: host, env: env, what: what, problem: problemRefused, detail: "connection refused", hint: hint}
		case pctx.Err() != nil:
			return &probeError{host: host, env: env, what: what, problem: "no answer", detail: fmt.Sprintf("connecting took over %s", probeTimeout), hint: hint}
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return &probeError{host: host, env: env, what: what, problem: "unknown host", detail: dnsErr.Err, hint: hint}
		}
		return &probeError{host: host, env: env, what: what, problem: "cannot connect", detail: oneLine(errors.Unwrap(err)).Error(), hint: hint}
	}
	defer conn.Close()
	if dl, ok := pctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(http2Preface); err != nil {
		return &probeError{host: host, env: env, what: what, problem: "it closed the connection", detail: oneLine(err).Error(), hint: hint}
	}
	var buf [16]byte
	n, err := io.ReadAtLeast(conn, buf[:], 9)
	got := buf[:n]
	switch {
	case n >= 9 && got[3] == 0x4: // a SETTINGS frame: HTTP/2, as gRPC needs
		return nil
	case bytes.HasPrefix(got, []byte("HTTP/")):
		return &probeError{host: host, env: env, what: what, problem: "wrong protocol: it is a plain HTTP/1 server, not a gRPC server like the emulator",
			detail: "it answered " + strings.TrimSpace(strings.SplitN(string(got), "\n", 2)[0]) + "…", hint: hint}
	case n > 0 && (got[0] == 0x15 || got[0] == 0x16):
		return &probeError{host: host, env: env, what: what, problem: "wrong protocol: it speaks TLS, and the emulator serves plain text", hint: hint}
	case n > 0:
		return &probeError{host: host, env: env, what: what, problem: "wrong protocol: it does not answer as a gRPC (HTTP/2) server", hint: hint}
	case ctx.Err() != nil:
		return probeTimedOut(host, env)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &probeError{host: host, env: env, what: what, problem: "wrong protocol: it closed the connection without answering a gRPC (HTTP/2) client, as TLS servers do", hint: hint}
	case pctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &probeError{host: host, env: env, what: what, problem: "wrong protocol: it accepts connections but sent nothing back to a gRPC (HTTP/2) client",
			detail: fmt.Sprintf("waited %s", probeTimeout), hint: hint}
	}
	return &probeError{host: host, env: env, what: what, problem: "wrong protocol", detail: oneLine(err).Error(), hint: hint}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
