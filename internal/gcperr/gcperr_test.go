package gcperr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"

	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// restError returns the error the real compute client produces when the
// server answers with status and the JSON envelope body.
func restError(t *testing.T, httpStatus int, body string) error {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(httpStatus)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	cs, err := compute.NewService(t.Context(), option.WithEndpoint(srv.URL+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("compute.NewService: %v", err)
	}
	_, err = cs.BackendServices.Get("p", "b").Context(t.Context()).Do()
	if err == nil {
		t.Fatalf("BackendServices.Get: got nil error from a %d answer", httpStatus)
	}
	return err
}

func envelope(code int, reason, status string) string {
	s := ""
	if status != "" {
		s = fmt.Sprintf(`,"status":%q`, status)
	}
	return fmt.Sprintf(`{"error":{"code":%d,"message":"m","errors":[{"domain":"global","reason":%q,"message":"m"}]%s}}`, code, reason, s)
}

func grpcWithReason(code codes.Code, reason string) error {
	st, err := status.New(code, "m").WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "googleapis.com"})
	if err != nil {
		panic(err)
	}
	ae, _ := apierror.FromError(st.Err())
	return ae
}

type class struct {
	NotFound, Conflict, Retryable, Transient, Permanent, PermissionDenied bool
	Code                                                                  codes.Code
}

func TestClassify(t *testing.T) {
	t.Parallel()
	apiErr := func(c codes.Code) error {
		ae, ok := apierror.FromError(status.Error(c, "m"))
		if !ok {
			t.Fatalf("apierror.FromError(%v) failed", c)
		}
		return ae
	}
	tests := []struct {
		name string
		err  func(t *testing.T) error
		want class
	}{
		{"nil", func(*testing.T) error { return nil }, class{Code: codes.OK}},
		{"plain error", func(*testing.T) error { return errors.New("boom") }, class{Permanent: true, Code: codes.Unknown}},

		// gRPC (Cloud Run v2), bare, wrapped in APIError, wrapped with %w.
		{"grpc not found", func(*testing.T) error { return status.Error(codes.NotFound, "m") }, class{NotFound: true, Permanent: true, Code: codes.NotFound}},
		{"grpc apierror not found wrapped", func(*testing.T) error { return fmt.Errorf("getting service: %w", apiErr(codes.NotFound)) }, class{NotFound: true, Permanent: true, Code: codes.NotFound}},
		{"grpc aborted", func(*testing.T) error { return apiErr(codes.Aborted) }, class{Conflict: true, Transient: true, Code: codes.Aborted}},
		{"grpc failed precondition is permanent", func(*testing.T) error { return apiErr(codes.FailedPrecondition) }, class{Permanent: true, Code: codes.FailedPrecondition}},
		{"grpc unavailable", func(*testing.T) error { return fmt.Errorf("x: %w", status.Error(codes.Unavailable, "m")) }, class{Retryable: true, Transient: true, Code: codes.Unavailable}},
		{"grpc deadline", func(*testing.T) error { return apiErr(codes.DeadlineExceeded) }, class{Retryable: true, Transient: true, Code: codes.DeadlineExceeded}},
		{"grpc resource exhausted", func(*testing.T) error { return apiErr(codes.ResourceExhausted) }, class{Retryable: true, Transient: true, Code: codes.ResourceExhausted}},
		{"grpc internal", func(*testing.T) error { return apiErr(codes.Internal) }, class{Retryable: true, Transient: true, Code: codes.Internal}},
		{"grpc permission denied", func(*testing.T) error { return apiErr(codes.PermissionDenied) }, class{Permanent: true, PermissionDenied: true, Code: codes.PermissionDenied}},
		{"grpc permission denied rate limit reason", func(*testing.T) error { return grpcWithReason(codes.PermissionDenied, "RATE_LIMIT_EXCEEDED") }, class{Retryable: true, Transient: true, Code: codes.PermissionDenied}},
		{"grpc invalid argument", func(*testing.T) error { return apiErr(codes.InvalidArgument) }, class{Permanent: true, Code: codes.InvalidArgument}},
		{"grpc already exists", func(*testing.T) error { return apiErr(codes.AlreadyExists) }, class{Permanent: true, Code: codes.AlreadyExists}},
		{"grpc canceled", func(*testing.T) error { return status.Error(codes.Canceled, "m") }, class{Transient: true, Code: codes.Canceled}},

		// REST (Compute, Service Usage) through the real client.
		{"rest 404", func(t *testing.T) error {
			return restError(t, 404, `{"error":{"code":404,"errors":[{"domain":"global","message":"The resource 'projects/p/global/backendServices/b' was not found","reason":"notFound"}],"message":"The resource 'projects/p/global/backendServices/b' was not found"}}`)
		}, class{NotFound: true, Permanent: true, Code: codes.NotFound}},
		{"rest 412 conditionNotMet", func(t *testing.T) error { return restError(t, 412, envelope(412, "conditionNotMet", "")) }, class{Conflict: true, Transient: true, Code: codes.Aborted}},
		{"rest 409 aborted", func(t *testing.T) error { return restError(t, 409, envelope(409, "aborted", "ABORTED")) }, class{Conflict: true, Transient: true, Code: codes.Aborted}},
		{"rest 409 alreadyExists", func(t *testing.T) error { return restError(t, 409, envelope(409, "alreadyExists", "")) }, class{Permanent: true, Code: codes.AlreadyExists}},
		{"rest 429", func(t *testing.T) error {
			return restError(t, 429, envelope(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED"))
		}, class{Retryable: true, Transient: true, Code: codes.ResourceExhausted}},
		{"rest 403 rateLimitExceeded", func(t *testing.T) error {
			return restError(t, 403, envelope(403, "rateLimitExceeded", "PERMISSION_DENIED"))
		}, class{Retryable: true, Transient: true, Code: codes.ResourceExhausted}},
		{"rest 403 userRateLimitExceeded", func(t *testing.T) error {
			return restError(t, 403, envelope(403, "userRateLimitExceeded", ""))
		}, class{Retryable: true, Transient: true, Code: codes.ResourceExhausted}},
		{"rest 403 forbidden", func(t *testing.T) error { return restError(t, 403, envelope(403, "forbidden", "PERMISSION_DENIED")) }, class{Permanent: true, PermissionDenied: true, Code: codes.PermissionDenied}},
		{"rest 400 invalid", func(t *testing.T) error { return restError(t, 400, envelope(400, "invalid", "INVALID_ARGUMENT")) }, class{Permanent: true, Code: codes.InvalidArgument}},
		{"rest 400 resourceNotReady", func(t *testing.T) error { return restError(t, 400, envelope(400, "resourceNotReady", "")) }, class{Retryable: true, Transient: true, Code: codes.InvalidArgument}},
		{"rest 500", func(t *testing.T) error { return restError(t, 500, envelope(500, "backendError", "INTERNAL")) }, class{Retryable: true, Transient: true, Code: codes.Internal}},
		{"rest 503 wrapped", func(t *testing.T) error {
			return fmt.Errorf("patching backend service: %w", restError(t, 503, envelope(503, "backendError", "UNAVAILABLE")))
		}, class{Retryable: true, Transient: true, Code: codes.Unavailable}},
		{"rest 503 non-JSON body", func(t *testing.T) error { return restError(t, 503, "upstream connect error") }, class{Retryable: true, Transient: true, Code: codes.Unavailable}},

		// Transport and context errors.
		{"connection refused", func(t *testing.T) error {
			srv := httptest.NewServer(http.NotFoundHandler())
			url := srv.URL
			srv.Close()
			cs, err := compute.NewService(t.Context(), option.WithEndpoint(url+"/compute/v1/"), option.WithoutAuthentication())
			if err != nil {
				t.Fatalf("compute.NewService: %v", err)
			}
			_, err = cs.BackendServices.Get("p", "b").Context(t.Context()).Do()
			return err
		}, class{Retryable: true, Transient: true, Code: codes.Unknown}},
		{"context deadline", func(*testing.T) error { return fmt.Errorf("waiting: %w", context.DeadlineExceeded) }, class{Retryable: true, Transient: true, Code: codes.DeadlineExceeded}},
		{"context canceled", func(*testing.T) error { return fmt.Errorf("waiting: %w", context.Canceled) }, class{Transient: true, Code: codes.Canceled}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.err(t)
			got := class{
				NotFound:         IsNotFound(err),
				Conflict:         IsConflict(err),
				Retryable:        IsRetryable(err),
				Transient:        IsTransient(err),
				Permanent:        err != nil && !IsTransient(err),
				PermissionDenied: IsPermissionDenied(err),
				Code:             Code(err),
			}
			if got != tc.want {
				t.Errorf("classify(%v) = %+v, want %+v", err, got, tc.want)
			}
		})
	}
}

func TestIsTransportFailure(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/v2/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", fmt.Errorf("getting: %w", refused), true},
		{"truncated answer", io.ErrUnexpectedEOF, true},
		{"HTTP 503 answered", &googleapi.Error{Code: 503}, false},
		{"gRPC UNAVAILABLE answered", status.Error(codes.Unavailable, "x"), false},
		{"caller cancelled", &url.Error{Op: "Get", URL: "http://x/", Err: context.Canceled}, false},
		{"caller's deadline", &url.Error{Op: "Get", URL: "http://x/", Err: context.DeadlineExceeded}, false},
		{"other", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsTransportFailure(tc.err); got != tc.want {
				t.Errorf("IsTransportFailure(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
