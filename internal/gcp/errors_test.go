package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// Classify maps Google's errors, gRPC and REST, onto iapsetup's sentinels
// and keeps the message and the client error.
func TestClassify(t *testing.T) {
	t.Parallel()
	sentinels := []error{iapsetup.ErrNotFound, iapsetup.ErrConflict, iapsetup.ErrPermission, iapsetup.ErrInvalid, iapsetup.ErrTransient}
	tests := []struct {
		name string
		err  error
		want []error
	}{
		{"grpc not found", status.Error(codes.NotFound, "gone"), []error{iapsetup.ErrNotFound}},
		{"grpc aborted", status.Error(codes.Aborted, "etag"), []error{iapsetup.ErrConflict, iapsetup.ErrTransient}},
		{"grpc permission denied", status.Error(codes.PermissionDenied, "no"), []error{iapsetup.ErrPermission}},
		{"grpc invalid argument", status.Error(codes.InvalidArgument, "Service account a@b does not exist."), []error{iapsetup.ErrInvalid}},
		{"grpc unavailable", status.Error(codes.Unavailable, "later"), []error{iapsetup.ErrTransient}},
		{"grpc failed precondition", status.Error(codes.FailedPrecondition, "org policy"), nil},
		{"rest 404", &googleapi.Error{Code: http.StatusNotFound}, []error{iapsetup.ErrNotFound}},
		{"rest 412", &googleapi.Error{Code: http.StatusPreconditionFailed}, []error{iapsetup.ErrConflict, iapsetup.ErrTransient}},
		{"rest 403 rate limit", &googleapi.Error{Code: http.StatusForbidden, Errors: []googleapi.ErrorItem{{Reason: "rateLimitExceeded"}}}, []error{iapsetup.ErrTransient}},
		{"rest 403", &googleapi.Error{Code: http.StatusForbidden}, []error{iapsetup.ErrPermission}},
		{"deadline", fmt.Errorf("reading: %w", context.DeadlineExceeded), []error{iapsetup.ErrTransient}},
		{"cancelled", fmt.Errorf("reading: %w", context.Canceled), []error{iapsetup.ErrTransient}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("calling: %w", tc.err)
			got := Classify(err)
			if got.Error() != err.Error() || !errors.Is(got, tc.err) {
				t.Errorf("Classify(%v) = %v: message or chain changed", err, got)
			}
			for _, s := range sentinels {
				want := errors.Is(fmt.Errorf("%w", errors.Join(tc.want...)), s)
				if errors.Is(got, s) != want {
					t.Errorf("errors.Is(Classify(%v), %v) = %v, want %v", err, s, !want, want)
				}
			}
		})
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	done := fmt.Errorf("no directory: %w", iapsetup.ErrPermanent)
	if got := Classify(done); got != done {
		t.Errorf("Classify(already classified) = %v, want it unchanged", got)
	}
}
