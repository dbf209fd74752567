package iapsetup

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	unavailable := fmt.Errorf("reading: %w", status.Error(codes.Unavailable, "x"))
	denied := fmt.Errorf("writing: %w", status.Error(codes.PermissionDenied, "x"))
	aborted := status.Error(codes.Aborted, "x")
	tests := []struct {
		name      string
		err       error
		transient bool
	}{
		{"unavailable", unavailable, true},
		{"permission denied", denied, false},
		{"conflict left after retries", aborted, true},
		{"unsafe write", unsafeWrite("x"), false},
		{"relabelled", fmt.Errorf("x: %w", errRelabelled), true},
		{"transient and permanent joined: transient wins", joinPreferTransient(denied, unavailable), true},
		{"permanent and transient joined: transient wins", joinPreferTransient(unavailable, denied), true},
		{"permanent only", joinPreferTransient(denied, nil, errNotAttempted), false},
		{"unsafe and transient joined", joinPreferTransient(unsafeWrite("x"), unavailable), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newError("projects/p/locations/r/services/s", tc.err)
			if got := IsTransient(e); got != tc.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", e, got, tc.transient)
			}
			if got := errors.Is(e, ErrPermanent); got == tc.transient {
				t.Errorf("errors.Is(%v, ErrPermanent) = %v, want %v", e, got, !tc.transient)
			}
			if !errors.Is(e, tc.err) {
				t.Errorf("error does not wrap its cause")
			}
		})
	}
	if joinPreferTransient(nil, errNotAttempted) != nil {
		t.Error("joinPreferTransient(nil, errNotAttempted) != nil")
	}
}
