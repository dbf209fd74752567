// Package sentinel holds the error sentinels of pkg/iapsetup, which exports
// them as ErrNotFound, ErrConflict, ... (documented there). They live here
// so that pkg/iapsetup/scope, which pkg/iapsetup's tests import, can test
// errors against them too.
package sentinel

import "errors"

var (
	ErrNotFound   = errors.New("not found")
	ErrConflict   = errors.New("conflict")
	ErrPermission = errors.New("permission denied")
	ErrInvalid    = errors.New("invalid argument")
	ErrTransient  = errors.New("transient")
	ErrPermanent  = errors.New("permanent")
)
