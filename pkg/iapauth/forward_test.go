package iapauth

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStripForwardHeaders(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{name: "canonical key",
			in:   http.Header{"X-Serverless-Authorization": {"Bearer x.y"}, "Authorization": {"Bearer a.b.c"}, "Accept": {"*/*"}},
			want: http.Header{"Authorization": {"Bearer a.b.c"}, "Accept": {"*/*"}}},
		{name: "non-canonical keys set directly in the map",
			in:   http.Header{"x-serverless-authorization": {"1"}, "X-SERVERLESS-AUTHORIZATION": {"2"}, "X-Goog-Iap-Jwt-Assertion": {"t"}},
			want: http.Header{"X-Goog-Iap-Jwt-Assertion": {"t"}}},
		{name: "absent", in: http.Header{"Accept": {"*/*"}}, want: http.Header{"Accept": {"*/*"}}},
		{name: "nil header", in: nil, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			StripForwardHeaders(tc.in)
			if diff := cmp.Diff(tc.want, tc.in); diff != "" {
				t.Errorf("header mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// recordingBackend records the headers of the last request it served.
func recordingBackend(t *testing.T) (*httptest.Server, func() http.Header) {
	t.Helper()
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, func() http.Header {
		select {
		case h := <-got:
			return h
		default:
			t.Fatal("backend saw no request")
			return nil
		}
	}
}

func TestStripServerlessAuthorizationRoundTripper(t *testing.T) {
	backend, last := recordingBackend(t)
	tests := []struct {
		name string
		next http.RoundTripper
	}{
		{name: "explicit transport", next: backend.Client().Transport},
		{name: "nil means DefaultTransport", next: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: StripServerlessAuthorization(tc.next)}
			req, err := http.NewRequest(http.MethodGet, backend.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(ServerlessAuthorizationHeader, "Bearer stripped-signature")
			req.Header.Set("Authorization", "Bearer downstream-token")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			resp.Body.Close()
			h := last()
			if v := h.Values(ServerlessAuthorizationHeader); len(v) != 0 {
				t.Errorf("backend saw %s: %q", ServerlessAuthorizationHeader, v)
			}
			if got := h.Get("Authorization"); got != "Bearer downstream-token" {
				t.Errorf("backend Authorization = %q, want it forwarded", got)
			}
			if got := req.Header.Get(ServerlessAuthorizationHeader); got == "" {
				t.Errorf("caller's request was modified")
			}
			client.CloseIdleConnections()
		})
	}
}

func TestReverseProxyStripping(t *testing.T) {
	backend, last := recordingBackend(t)
	target, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		proxy *httputil.ReverseProxy
	}{
		{name: "Rewrite hook", proxy: &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			StripForwardHeaders(pr.Out.Header)
		}}},
		{name: "stripping transport", proxy: &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport: StripServerlessAuthorization(nil),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			front := httptest.NewServer(tc.proxy)
			defer front.Close()
			req, _ := http.NewRequest(http.MethodGet, front.URL+"/x", nil)
			req.Header.Set(ServerlessAuthorizationHeader, "Bearer stripped-signature")
			req.Header.Set("X-Request-Id", "r1")
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			h := last()
			if v := h.Values(ServerlessAuthorizationHeader); len(v) != 0 {
				t.Errorf("backend saw %s: %q", ServerlessAuthorizationHeader, v)
			}
			if h.Get("X-Request-Id") != "r1" {
				t.Errorf("other headers not forwarded: %v", h)
			}
		})
	}
}
