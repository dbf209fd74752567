package iapsetup

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	unavailable := fmt.Errorf("reading: %w", fmt.Errorf("x: %w", ErrTransient))
	denied := fmt.Errorf("writing: %w", fmt.Errorf("x: %w", ErrPermission))
	aborted := fmt.Errorf("x: %w", ErrConflict)
	tests := []struct {
		name      string
		err       error
		transient bool
	}{
		{"unavailable", unavailable, true},
		{"permission denied", denied, false},
		{"conflict left after retries", aborted, true},
		{"not found", fmt.Errorf("x: %w", ErrNotFound), false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), true},
		{"unclassified", errors.New("x"), false},
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
			if got := errors.Is(e, ErrTransient); got != tc.transient {
				t.Errorf("errors.Is(%v, ErrTransient) = %v, want %v", e, got, tc.transient)
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

func TestMissingAccount(t *testing.T) {
	t.Parallel()
	const email = "service-123@gcp-sa-iap.iam.gserviceaccount.com"
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"invalid argument naming the account", fmt.Errorf("setting policy: %w", fmt.Errorf("Service account %s does not exist.: %w", email, ErrInvalid)), email},
		{"other invalid argument", fmt.Errorf("Role roles/x is not supported for this resource.: %w", ErrInvalid), ""},
		{"not found is not it", fmt.Errorf("Service account %s does not exist.: %w", email, ErrNotFound), ""},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := missingAccount(tc.err)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("missingAccount = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}
