package iapauth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// AssertionHeader carries IAP's signed assertion (canonical form of
// x-goog-iap-jwt-assertion).
const AssertionHeader = "X-Goog-Iap-Jwt-Assertion"

type identityKey struct{}

// NewContext returns ctx carrying id. Middleware calls it; tests of handlers
// that read FromContext can call it too.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity Middleware verified for this request.
// ok is false when the request did not pass through Middleware.
func FromContext(ctx context.Context) (id Identity, ok bool) {
	id, ok = ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// unauthorizedBody is the whole 401 response: it names no reason, so a
// caller probing the service learns nothing; the reason is in the log.
const unauthorizedBody = "Unauthorized: this service only accepts requests that come through Identity-Aware Proxy.\n"

// Middleware verifies the IAP assertion of every request before calling
// next. Verified requests reach next with the Identity in their context
// (FromContext). Requests with a missing, repeated or invalid assertion get a
// plain-text 401 and next is not called; one WARN line records the reason,
// method, path and remote address, never the token. A nil v fails closed:
// every request gets 500 and an ERROR line.
//
// Mount endpoints that must answer without IAP (load balancer health checks
// do not carry the assertion) outside this middleware.
func Middleware(v *Verifier) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if v == nil {
				slog.ErrorContext(r.Context(), "iapauth: Middleware has a nil Verifier; refusing all requests")
				http.Error(w, "Internal Server Error", http.StatusInternalServerError)
				return
			}
			id, err := v.verifyRequest(r)
			if err != nil {
				v.log.WarnContext(r.Context(), "iapauth: request rejected",
					"reason", reason(err), "error", err.Error(),
					"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
				writeUnauthorized(w)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
		})
	}
}

func (v *Verifier) verifyRequest(r *http.Request) (Identity, error) {
	vals := r.Header.Values(AssertionHeader)
	switch len(vals) {
	case 0:
		return Identity{}, ErrMissingToken
	case 1:
		return v.Verify(r.Context(), vals[0])
	default:
		return Identity{}, fmt.Errorf("%w: %d %s headers", ErrMalformedToken, len(vals), AssertionHeader)
	}
}

func writeUnauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, unauthorizedBody)
}
