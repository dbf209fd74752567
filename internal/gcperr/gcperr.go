// Package gcperr classifies errors returned by Google Cloud clients, both the
// gRPC ones (cloud.google.com/go/..., errors carrying a gRPC status, usually
// wrapped in *apierror.APIError) and the REST ones (google.golang.org/api/...,
// *googleapi.Error, which itself wraps an *apierror.APIError).
//
// The classes are:
//   - not found: the resource is gone (gRPC NOT_FOUND, HTTP 404);
//   - conflict: an optimistic-concurrency precondition failed, so the caller
//     should re-read and retry its read-modify-write (gRPC ABORTED, HTTP 409
//     other than alreadyExists, HTTP 412 / conditionNotMet);
//   - retryable: the request may succeed unchanged later (UNAVAILABLE,
//     DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, HTTP 429 and 5xx,
//     Compute's 403 rateLimitExceeded / userRateLimitExceeded, transport
//     errors such as a refused connection, and Compute's 400
//     resourceNotReady while another operation runs on the resource);
//   - transient: retryable or conflict (or the caller's context was
//     cancelled) — redelivering the event is worthwhile;
//   - permanent: everything else (permission denied, invalid argument, not
//     found, failed precondition, unknown errors).
//
// FAILED_PRECONDITION is deliberately not a conflict: Google uses it for
// organisation-policy and state violations that a retry cannot fix; etag
// mismatches are ABORTED (AIP-154).
package gcperr

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// details is what the classifier knows about an error.
type details struct {
	// httpCode is the HTTP status of a REST error (0: not a REST error).
	httpCode int
	// code is the gRPC code of a gRPC error (valid when hasCode).
	code    codes.Code
	hasCode bool
	// reasons are googleapi errors[].reason values and the ErrorInfo reason.
	reasons []string
}

func inspect(err error) details {
	var d details
	if err == nil {
		return d
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		d.httpCode = ge.Code
		for _, it := range ge.Errors {
			if it.Reason != "" {
				d.reasons = append(d.reasons, it.Reason)
			}
		}
	}
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		if r := ae.Reason(); r != "" {
			d.reasons = append(d.reasons, r)
		}
		if d.httpCode == 0 && ae.HTTPCode() > 0 {
			d.httpCode = ae.HTTPCode()
		}
	}
	if d.httpCode != 0 {
		// A REST error: its HTTP status is authoritative. (APIError.GRPCStatus
		// of a REST error is a lossy mapping: 403 rateLimitExceeded becomes
		// PERMISSION_DENIED, 412 FAILED_PRECONDITION.)
		return d
	}
	if st, ok := status.FromError(err); ok && st != nil {
		d.code, d.hasCode = st.Code(), true
	}
	return d
}

func (d details) hasReason(rs ...string) bool {
	for _, have := range d.reasons {
		for _, want := range rs {
			if strings.EqualFold(have, want) {
				return true
			}
		}
	}
	return false
}

// IsNotFound reports whether err means the resource does not exist
// (gRPC NOT_FOUND or HTTP 404).
func IsNotFound(err error) bool {
	d := inspect(err)
	if d.httpCode != 0 {
		return d.httpCode == http.StatusNotFound
	}
	return d.hasCode && d.code == codes.NotFound
}

// IsPermissionDenied reports whether err is an authorisation failure (gRPC
// PERMISSION_DENIED or HTTP 403) that is not a rate limit.
func IsPermissionDenied(err error) bool {
	d := inspect(err)
	if d.httpCode != 0 {
		return d.httpCode == http.StatusForbidden && !isRateLimitReason(d)
	}
	return d.hasCode && d.code == codes.PermissionDenied && !isRateLimitReason(d)
}

// IsConflict reports whether err is a failed optimistic-concurrency check
// that a fresh read-modify-write may fix: gRPC ABORTED, HTTP 409 (ABORTED,
// e.g. IAM's "There were concurrent policy changes") unless its reason is
// alreadyExists, and HTTP 412 / reason conditionNotMet (Compute's
// "Invalid fingerprint.").
func IsConflict(err error) bool {
	d := inspect(err)
	if d.hasReason("conditionNotMet") {
		return true
	}
	if d.httpCode != 0 {
		switch d.httpCode {
		case http.StatusPreconditionFailed:
			return true
		case http.StatusConflict:
			return !d.hasReason("alreadyExists", "resourceInUseByAnotherResource")
		}
		return false
	}
	return d.hasCode && d.code == codes.Aborted
}

func isRateLimitReason(d details) bool {
	return d.hasReason("rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED")
}

// IsRetryable reports whether err may go away if the same request is sent
// again later: throttling (RESOURCE_EXHAUSTED, HTTP 429, Compute's 403
// rateLimitExceeded/userRateLimitExceeded), server trouble (UNAVAILABLE,
// INTERNAL, HTTP 5xx), deadlines, and transport failures.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	d := inspect(err)
	switch {
	case d.httpCode != 0:
		if d.httpCode == http.StatusTooManyRequests || d.httpCode >= 500 && d.httpCode <= 599 {
			return true
		}
		if d.httpCode == http.StatusBadRequest && d.hasReason("resourceNotReady") {
			// Compute: another operation on the resource is still running.
			return true
		}
		return d.httpCode == http.StatusForbidden && isRateLimitReason(d)
	case d.hasCode:
		switch d.code {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal:
			return true
		case codes.PermissionDenied:
			return isRateLimitReason(d)
		case codes.Unknown:
			// status.FromError reports Unknown for errors that carry no
			// status; fall through to the transport checks below.
		default:
			return false
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// IsTransportFailure reports whether err is a call that got no answer from
// the server — a refused or reset connection, a truncated response — as
// opposed to an error the server answered, or the caller's own
// cancellation or deadline. The gRPC clients report such failures as
// UNAVAILABLE, so their retry settings cover them; a REST client's
// retryer must name them.
func IsTransportFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if d := inspect(err); d.httpCode != 0 || d.hasCode && d.code != codes.Unknown {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IsTransient reports whether redelivering the work later is worthwhile: the
// error is retryable, a conflict left after bounded retries, or the caller's
// context was cancelled.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if IsRetryable(err) || IsConflict(err) || errors.Is(err, context.Canceled) {
		return true
	}
	d := inspect(err)
	return d.httpCode == 0 && d.hasCode && d.code == codes.Canceled
}

// Code returns err's gRPC code, mapping REST errors from their HTTP status
// (codes.OK for nil, codes.Unknown when nothing is known).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	d := inspect(err)
	if d.httpCode != 0 {
		switch {
		case d.httpCode == http.StatusForbidden && isRateLimitReason(d):
			return codes.ResourceExhausted
		case d.httpCode == http.StatusPreconditionFailed:
			return codes.Aborted
		case d.httpCode == http.StatusConflict && d.hasReason("alreadyExists"):
			return codes.AlreadyExists
		}
		return httpToCode(d.httpCode)
	}
	if d.hasCode {
		return d.code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

func httpToCode(c int) codes.Code {
	switch c {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case 499:
		return codes.Canceled
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	if c >= 500 {
		return codes.Internal
	}
	if c >= 400 {
		return codes.FailedPrecondition
	}
	return codes.Unknown
}
