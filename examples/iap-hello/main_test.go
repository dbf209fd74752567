package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/iapguard/iapguard/pkg/iapauth"
)

const audience = "/projects/123456789012/locations/europe-west1/services/iap-hello"

// localIAP signs assertions the way IAP does, with a locally generated key
// published by a local JWK endpoint.
type localIAP struct {
	priv *ecdsa.PrivateKey
	jwks *httptest.Server
}

func newLocalIAP(t *testing.T) *localIAP {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &priv.PublicKey, KeyID: "local-1", Algorithm: "ES256", Use: "sig"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	return &localIAP{priv: priv, jwks: srv}
}

func (l *localIAP) assertion(t *testing.T, aud, email string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: l.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "local-1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{
		"iss": iapauth.Issuer, "aud": aud,
		"sub": "accounts.google.com:1234567890", "email": email,
		"iat": now.Add(-time.Second).Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestService(t *testing.T) {
	iap := newLocalIAP(t)
	seen := make(chan http.Header, 1)
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Path", r.URL.Path)
		seen <- h
		io.WriteString(w, "pong")
	}))
	defer downstream.Close()

	t.Setenv("IAP_JWKS_URL", iap.jwks.URL)
	t.Setenv("IAP_AUDIENCE", "/projects/1/global/backendServices/2, "+audience)
	t.Setenv("FORWARD_URL", downstream.URL)
	h, err := newHandler(os.Getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("newHandler: %v", err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	valid := iap.assertion(t, audience, "alice@example.com")
	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		wantStatus int
		wantBody   string
		downstream bool
	}{
		{name: "hello with a valid assertion", path: "/", headers: map[string]string{iapauth.AssertionHeader: valid},
			wantStatus: 200, wantBody: "hello alice@example.com\n"},
		{name: "no assertion", path: "/", wantStatus: 401},
		{name: "assertion for another service", path: "/",
			headers:    map[string]string{iapauth.AssertionHeader: iap.assertion(t, "/projects/123456789012/locations/europe-west1/services/other", "alice@example.com")},
			wantStatus: 401},
		{name: "health check needs no assertion", path: "/healthz", wantStatus: 200, wantBody: "ok\n"},
		{name: "forward without assertion", path: "/forward/ping", wantStatus: 401},
		{name: "forward drops X-Serverless-Authorization", path: "/forward/ping",
			headers:    map[string]string{iapauth.AssertionHeader: valid, iapauth.ServerlessAuthorizationHeader: "Bearer header.payload.", "X-Request-Id": "r-1"},
			wantStatus: 200, wantBody: "pong", downstream: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if tc.wantBody != "" {
				if diff := cmp.Diff(tc.wantBody, string(body)); diff != "" {
					t.Errorf("body mismatch (-want +got):\n%s", diff)
				}
			}
			if !tc.downstream {
				return
			}
			got := <-seen
			if v := got.Values(iapauth.ServerlessAuthorizationHeader); len(v) != 0 {
				t.Errorf("downstream saw X-Serverless-Authorization %q", v)
			}
			if got.Get("Path") != "/ping" || got.Get("X-Request-Id") != "r-1" {
				t.Errorf("downstream path %q, X-Request-Id %q; want /ping, r-1", got.Get("Path"), got.Get("X-Request-Id"))
			}
		})
	}
}

func TestNewHandlerConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "no audience", env: map[string]string{}, want: "IAP_AUDIENCE"},
		{name: "audience is a URL", env: map[string]string{"IAP_AUDIENCE": "https://x.a.run.app"}, want: "IAP_AUDIENCE"},
		{name: "bad forward URL", env: map[string]string{"IAP_AUDIENCE": audience, "FORWARD_URL": "downstream:8080"}, want: "FORWARD_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newHandler(func(k string) string { return tc.env[k] }, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("newHandler() error = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// TestRun starts the real server loop on a loopback port and stops it.
func TestRun(t *testing.T) {
	iap := newLocalIAP(t)
	env := map[string]string{"IAP_AUDIENCE": audience, "IAP_JWKS_URL": iap.jwks.URL}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }, ln, slog.New(slog.DiscardHandler)) }()

	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	req.Header.Set(iapauth.AssertionHeader, iap.assertion(t, audience, "bob@example.com"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello bob@example.com\n" {
		t.Errorf("body = %q", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run() = %v, want nil after shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
