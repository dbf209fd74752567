package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is an API error that renders correctly on both transports: as a gRPC
// status (GRPCStatus) and as Google's JSON error envelope (WriteJSON), the one
// that google.golang.org/api's googleapi.CheckResponse parses.
type Error struct {
	Code       codes.Code
	HTTPStatus int    // 0: derived from Code
	Reason     string // googleapi errors[0].reason, e.g. "notFound", "conditionNotMet"
	Message    string
	// OmitStatus leaves the "status" member out of the JSON envelope, as
	// Compute does for 404/409/412 (recorded real traffic).
	OmitStatus bool
	// Injected marks errors produced by fault injection.
	Injected bool
}

// Errorf builds an Error with the HTTP status and reason derived from code.
func Errorf(code codes.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// GRPCStatus lets grpc-go return the error with its code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Status returns the HTTP status code.
func (e *Error) Status() int {
	if e.HTTPStatus != 0 {
		return e.HTTPStatus
	}
	return HTTPStatusOf(e.Code)
}

// HTTPStatusOf maps a gRPC code to the HTTP status Google's REST APIs use.
func HTTPStatusOf(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

func defaultReason(c codes.Code) string {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange:
		return "invalid"
	case codes.FailedPrecondition:
		return "failedPrecondition"
	case codes.NotFound:
		return "notFound"
	case codes.AlreadyExists:
		return "alreadyExists"
	case codes.Aborted:
		return "aborted"
	case codes.PermissionDenied:
		return "forbidden"
	case codes.Unauthenticated:
		return "required"
	case codes.ResourceExhausted:
		return "rateLimitExceeded"
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DeadlineExceeded:
		return "backendError"
	default:
		return "invalid"
	}
}

// WriteJSON writes Google's error envelope:
//
//	{"error":{"code":404,"message":"...","errors":[{"domain":"global","reason":"notFound","message":"..."}],"status":"NOT_FOUND"}}
func (e *Error) WriteJSON(w http.ResponseWriter) {
	body := e.Envelope()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.Status())
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

// Envelope returns the "error" member of Google's JSON error envelope.
func (e *Error) Envelope() map[string]any {
	reason := e.Reason
	if reason == "" {
		reason = defaultReason(e.Code)
	}
	domain := "global"
	if reason == "rateLimitExceeded" {
		domain = "usageLimits"
	}
	body := map[string]any{
		"code":    e.Status(),
		"message": e.Message,
		"errors":  []map[string]any{{"domain": domain, "reason": reason, "message": e.Message}},
	}
	if !e.OmitStatus {
		body["status"] = codeName(e.Code)
	}
	return body
}

// AuditableRejection reports whether err is a refusal that Google records in
// the Admin Activity audit log as a failed call (severity ERROR, with its
// status): the request reached the service and was refused for what it
// asked — invalid, conflicting, a failed precondition or a lost etag race.
// Refusals before that are not: denied permissions (Policy Denied logs, not
// Admin Activity), unknown projects, quota, injected faults and server
// trouble.
func AuditableRejection(err error) (*Error, bool) {
	var ce *Error
	if !errors.As(err, &ce) || ce.Injected {
		return nil, false
	}
	switch ce.Code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted, codes.NotFound, codes.OutOfRange:
		return ce, true
	}
	return nil, false
}

// codeName is the canonical upper-snake name ("NOT_FOUND").
func codeName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	case codes.Unknown:
		return "UNKNOWN"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.AlreadyExists:
		return "ALREADY_EXISTS"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Aborted:
		return "ABORTED"
	case codes.OutOfRange:
		return "OUT_OF_RANGE"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.DataLoss:
		return "DATA_LOSS"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	}
	return "UNKNOWN"
}

// WriteOnePlatformError writes err as the APIs defined in protos and served
// through Google's transcoding (Cloud Run Admin API v2, Pub/Sub v1, ...)
// answer REST errors: code, message and status, without the "errors" array
// of the older discovery-era APIs (Compute):
//
//	{"error":{"code":404,"message":"...","status":"NOT_FOUND"}}
//
// Recorded real traffic: every 4xx answer of run.googleapis.com/v2 (23) and
// pubsub.googleapis.com/v1 (61) in k8s-config-connector v1.155.1's
// recordings has this shape. Errors that are not *Error become 500
// INTERNAL.
func WriteOnePlatformError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: codes.Internal, Message: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.Status())
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": e.Status(), "message": e.Message, "status": codeName(e.Code)}})
}

// WriteHTTPError writes err as Google's JSON envelope; errors that are not
// *Error become 500 INTERNAL (which a surface should never produce for a
// client mistake).
func WriteHTTPError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: codes.Internal, Message: err.Error()}
	}
	e.WriteJSON(w)
}
