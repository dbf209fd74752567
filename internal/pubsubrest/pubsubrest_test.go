package pubsubrest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"

	"google.golang.org/api/googleapi"
)

// Retryable retries the HTTP statuses of the gRPC codes the generated
// client retried Publish on, and transport failures, and nothing else.
func TestRetryable(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/v1/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"409 ABORTED", &googleapi.Error{Code: 409}, true},
		{"499 CANCELLED", &googleapi.Error{Code: 499}, true},
		{"500 INTERNAL/UNKNOWN", &googleapi.Error{Code: 500}, true},
		{"429 RESOURCE_EXHAUSTED", &googleapi.Error{Code: 429}, true},
		{"503 UNAVAILABLE", &googleapi.Error{Code: 503}, true},
		{"504 DEADLINE_EXCEEDED", fmt.Errorf("wrapped: %w", &googleapi.Error{Code: 504}), true},
		{"400", &googleapi.Error{Code: 400}, false},
		{"403", &googleapi.Error{Code: 403}, false},
		{"404", &googleapi.Error{Code: 404}, false},
		{"501 UNIMPLEMENTED", &googleapi.Error{Code: 501}, false},
		{"502", &googleapi.Error{Code: 502}, false},
		{"connection refused", refused, true},
		{"truncated answer", io.ErrUnexpectedEOF, true},
		{"caller cancelled", &url.Error{Op: "Post", URL: "http://x/", Err: context.Canceled}, false},
		{"caller's deadline", &url.Error{Op: "Post", URL: "http://x/", Err: context.DeadlineExceeded}, false},
		{"other error", errors.New("boom"), false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
