package iapauth

import (
	"net/http"
	"strings"
)

// ServerlessAuthorizationHeader is the header IAP uses to authenticate to
// Cloud Run. Cloud Run hands it to the service with its signature stripped,
// so it must not be forwarded: a Cloud Run service that requires IAM
// authentication would read it and reject the call ("Secure a Cloud Run
// service with IAP", Known limitations).
const ServerlessAuthorizationHeader = "X-Serverless-Authorization"

// StripForwardHeaders removes X-Serverless-Authorization from h, whatever the
// case of its key. Call it on the outbound header of a reverse proxy:
// pr.Out.Header in httputil.ReverseProxy.Rewrite, or req.Header in a
// Director. Other headers, including Authorization and the IAP assertion,
// are left alone.
func StripForwardHeaders(h http.Header) {
	for k := range h {
		if strings.EqualFold(k, ServerlessAuthorizationHeader) {
			delete(h, k)
		}
	}
}

// StripServerlessAuthorization returns a RoundTripper that sends each request
// through next without X-Serverless-Authorization; the caller's request is
// not modified (it is cloned when the header is present). A nil next means
// http.DefaultTransport.
func StripServerlessAuthorization(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &stripTransport{next: next}
}

type stripTransport struct{ next http.RoundTripper }

func (t *stripTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if hasServerlessAuthorization(req.Header) {
		req = req.Clone(req.Context())
		StripForwardHeaders(req.Header)
	}
	return t.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach next.
func (t *stripTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func hasServerlessAuthorization(h http.Header) bool {
	for k := range h {
		if strings.EqualFold(k, ServerlessAuthorizationHeader) {
			return true
		}
	}
	return false
}
