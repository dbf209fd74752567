package compute

import (
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

// Compute's own 4xx bodies carry no "status" member (recorded real traffic),
// so every error built here sets OmitStatus. Errors produced by fault
// injection come from core.Begin and keep core's rendering.

func notFound(rel string) *core.Error {
	return &core.Error{Code: codes.NotFound, Reason: "notFound", OmitStatus: true,
		Message: fmt.Sprintf("The resource '%s' was not found", rel)}
}

func alreadyExists(rel string) *core.Error {
	return &core.Error{Code: codes.AlreadyExists, Reason: "alreadyExists", OmitStatus: true,
		Message: fmt.Sprintf("The resource '%s' already exists", rel)}
}

// invalidField is Compute's "Invalid value for field" error; field is the
// path below the request body ("backends[0].group"), rendered as
// 'resource.backends[0].group'.
func invalidField(field, value, why string) *core.Error {
	msg := fmt.Sprintf("Invalid value for field 'resource.%s': '%s'.", field, value)
	if why != "" {
		msg += " " + why
	}
	return &core.Error{Code: codes.InvalidArgument, Reason: "invalid", OmitStatus: true, Message: msg}
}

// invalidParam is invalidField for a query parameter ("filter", "pageToken").
func invalidParam(param, value, why string) *core.Error {
	msg := fmt.Sprintf("Invalid value for field '%s': '%s'.", param, value)
	if why != "" {
		msg += " " + why
	}
	return &core.Error{Code: codes.InvalidArgument, Reason: "invalid", OmitStatus: true, Message: msg}
}

func invalid(msg string) *core.Error {
	return &core.Error{Code: codes.InvalidArgument, Reason: "invalid", OmitStatus: true, Message: msg}
}

func requiredField(field string) *core.Error {
	return &core.Error{Code: codes.InvalidArgument, Reason: "required", OmitStatus: true,
		Message: fmt.Sprintf("Required field 'resource.%s' not specified", field)}
}

func staleFingerprint() *core.Error {
	return &core.Error{Code: codes.FailedPrecondition, HTTPStatus: http.StatusPreconditionFailed,
		Reason: "conditionNotMet", OmitStatus: true, Message: "Invalid fingerprint."}
}

// inUse is the error for deleting a resource something still references:
// "The backend_service resource 'projects/p/global/backendServices/b' is
// already being used by 'projects/p/global/urlMaps/m'".
func inUse(snake, rel, user string) *core.Error {
	return &core.Error{Code: codes.FailedPrecondition, HTTPStatus: http.StatusBadRequest,
		Reason: "resourceInUseByAnotherResource", OmitStatus: true,
		Message: fmt.Sprintf("The %s resource '%s' is already being used by '%s'", snake, rel, user)}
}

// badPayload is the JSON-parsing error the Google front end returns; unlike
// Compute's own errors it carries status INVALID_ARGUMENT.
func badPayload(detail string) *core.Error {
	return &core.Error{Code: codes.InvalidArgument, Reason: "invalid",
		Message: "Invalid JSON payload received. " + detail}
}

func noRoute(method, path string) *core.Error {
	return &core.Error{Code: codes.NotFound, Reason: "notFound", OmitStatus: true,
		Message: fmt.Sprintf("The requested URL %s %s was not found on this server (not served by the emulator).", method, path)}
}

func internal(err error) *core.Error {
	return &core.Error{Code: codes.Internal, Reason: "backendError", Message: err.Error()}
}

// notReady is Compute's answer to a mutation of a resource another
// operation is still changing (here: one whose delete is running).
func notReady(rel string) *core.Error {
	return &core.Error{Code: codes.FailedPrecondition, HTTPStatus: http.StatusBadRequest, Reason: "resourceNotReady",
		OmitStatus: true, Message: "The resource '" + rel + "' is not ready"}
}
