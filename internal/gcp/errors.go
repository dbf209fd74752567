package gcp

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// Classify adds to err the iapsetup sentinels that say what happened
// (ErrNotFound, ErrConflict, ErrPermission, ErrInvalid; ErrTransient when
// retrying later may cure it), as internal/gcperr reads Google's errors.
// The message and the chain are kept: callers that look at the client
// error itself (errors.As, gcperr) still find it. An error that already
// wraps ErrTransient or ErrPermanent is returned as it is. Every adapter
// method of the iapsetup.Deps interfaces ends with it.
func Classify(err error) error {
	if err == nil || errors.Is(err, iapsetup.ErrTransient) || errors.Is(err, iapsetup.ErrPermanent) {
		return err
	}
	c := &classified{err: err}
	switch {
	case gcperr.IsNotFound(err):
		c.kinds = append(c.kinds, iapsetup.ErrNotFound)
	case gcperr.IsConflict(err):
		c.kinds = append(c.kinds, iapsetup.ErrConflict)
	case gcperr.IsPermissionDenied(err):
		c.kinds = append(c.kinds, iapsetup.ErrPermission)
	case gcperr.Code(err) == codes.InvalidArgument:
		c.kinds = append(c.kinds, iapsetup.ErrInvalid)
	}
	if gcperr.IsTransient(err) || errors.Is(err, context.Canceled) {
		c.kinds = append(c.kinds, iapsetup.ErrTransient)
	}
	return c
}

// classify is Classify on a named result: defer classify(&err).
func classify(err *error) { *err = Classify(*err) }

// classified is an error with the sentinels Classify found.
type classified struct {
	err   error
	kinds []error
}

func (c *classified) Error() string { return c.err.Error() }

func (c *classified) Unwrap() []error { return append([]error{c.err}, c.kinds...) }
