package iapauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// whoami answers with the identity Middleware put in the context.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, ok := FromContext(r.Context())
	if !ok {
		http.Error(w, "no identity", http.StatusTeapot)
		return
	}
	fmt.Fprintf(w, "%s|%s|%s", id.Email, id.Subject, id.Hd)
})

func TestMiddleware(t *testing.T) {
	e := newEnv(t)
	valid := e.token(t)
	expired := e.token(t, "exp", e.clock.Now().Add(-time.Hour).Unix(), "iat", e.clock.Now().Add(-2*time.Hour).Unix())
	wrongAud := e.token(t, "aud", "/projects/1/global/backendServices/2")
	h := Middleware(e.v)(whoami)

	tests := []struct {
		name       string
		headers    [][2]string
		wantStatus int
		wantBody   string
		wantReason string
	}{
		{name: "valid", headers: [][2]string{{"x-goog-iap-jwt-assertion", valid}},
			wantStatus: http.StatusOK, wantBody: testEmail + "|" + testSubject + "|" + testHd},
		{name: "missing header", wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "missing"},
		{name: "empty header", headers: [][2]string{{AssertionHeader, ""}},
			wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "missing"},
		{name: "expired", headers: [][2]string{{AssertionHeader, expired}},
			wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "expired"},
		{name: "wrong audience", headers: [][2]string{{AssertionHeader, wrongAud}},
			wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "audience"},
		{name: "garbage", headers: [][2]string{{AssertionHeader, "garbage.garbage.garbage"}},
			wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "malformed"},
		{name: "valid header repeated with a forged one", headers: [][2]string{{AssertionHeader, valid}, {AssertionHeader, wrongAud}},
			wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "malformed"},
		{name: "unsigned identity headers alone are not enough",
			headers:    [][2]string{{"X-Goog-Authenticated-User-Email", "accounts.google.com:" + testEmail}},
			wantStatus: http.StatusUnauthorized, wantBody: unauthorizedBody, wantReason: "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logStart := len(e.logs.String())
			req := httptest.NewRequest(http.MethodGet, "/private/page?q=1", nil)
			for _, kv := range tc.headers {
				req.Header.Add(kv[0], kv[1])
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantBody, rec.Body.String()); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			logs := e.logs.String()[logStart:]
			if tc.wantReason == "" {
				if logs != "" {
					t.Errorf("accepted request logged: %s", logs)
				}
				return
			}
			if got := rec.Header().Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			for _, want := range []string{"level=WARN", "reason=" + tc.wantReason, "path=/private/page", "method=GET"} {
				if !strings.Contains(logs, want) {
					t.Errorf("log line lacks %q: %s", want, logs)
				}
			}
			if n := strings.Count(logs, "\n"); n != 1 {
				t.Errorf("got %d log lines, want 1: %s", n, logs)
			}
			for _, kv := range tc.headers {
				for _, part := range strings.Split(kv[1], ".") {
					if len(part) > 8 && (strings.Contains(logs, part) || strings.Contains(rec.Body.String(), part)) {
						t.Errorf("token segment %q leaked into log or body", part)
					}
				}
			}
		})
	}
}

func TestMiddlewareKeyFetchFailureIs401(t *testing.T) {
	e := newEnv(t)
	e.ks.setStatus(http.StatusBadGateway)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(AssertionHeader, e.token(t))
	rec := httptest.NewRecorder()
	Middleware(e.v)(whoami).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", rec.Code)
	}
	logs := e.logs.String()
	for _, want := range []string{"reason=keys_unavailable", "level=ERROR", "502 Bad Gateway"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q: %s", want, logs)
		}
	}
}

func TestMiddlewareNilVerifierFailsClosed(t *testing.T) {
	called := false
	h := Middleware(nil)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusInternalServerError || called {
		t.Errorf("status = %d, handler called = %v; want 500, false", rec.Code, called)
	}
	if _, err := (*Verifier)(nil).Verify(context.Background(), "x"); err == nil {
		t.Errorf("nil Verifier accepted a token")
	}
}

// TestMiddlewareConcurrent runs valid and invalid requests in parallel over
// real HTTP (meaningful under -race): one key fetch, no cross-talk between
// requests' identities.
func TestMiddlewareConcurrent(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(Middleware(e.v)(whoami))
	defer srv.Close()

	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			email := fmt.Sprintf("user%d@example.com", i)
			tok := e.token(t, "email", email, "sub", fmt.Sprintf("accounts.google.com:%d", i))
			if i%4 == 3 {
				tok = e.token(t, "aud", "/projects/9/global/backendServices/9")
			}
			for range 10 {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				req.Header.Set(AssertionHeader, tok)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if i%4 == 3 {
					if resp.StatusCode != http.StatusUnauthorized {
						t.Errorf("bad audience: status %d", resp.StatusCode)
					}
					continue
				}
				if want := fmt.Sprintf("%s|%d|%s", email, i, testHd); resp.StatusCode != http.StatusOK || string(body) != want {
					t.Errorf("status %d body %q, want 200 %q", resp.StatusCode, body, want)
				}
			}
		})
	}
	wg.Wait()
	wantHits(t, e.ks, 1)
}

func TestContextRoundTrip(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Errorf("FromContext on a bare context reported an identity")
	}
	want := Identity{Email: "a@b.c", Subject: "1"}
	got, ok := FromContext(NewContext(context.Background(), want))
	if !ok {
		t.Fatal("FromContext: no identity")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identity mismatch (-want +got):\n%s", diff)
	}
}
