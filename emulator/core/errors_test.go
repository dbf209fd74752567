package core_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/googleapi"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/core"
)

// TestHTTPStatusOf checks every gRPC code against the HTTP mapping documented
// in google/rpc/code.proto.
func TestHTTPStatusOf(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK:                 200,
		codes.Canceled:           499,
		codes.Unknown:            500,
		codes.InvalidArgument:    400,
		codes.DeadlineExceeded:   504,
		codes.NotFound:           404,
		codes.AlreadyExists:      409,
		codes.PermissionDenied:   403,
		codes.ResourceExhausted:  429,
		codes.FailedPrecondition: 400,
		codes.Aborted:            409,
		codes.OutOfRange:         400,
		codes.Unimplemented:      501,
		codes.Internal:           500,
		codes.Unavailable:        503,
		codes.DataLoss:           500,
		codes.Unauthenticated:    401,
	}
	for c, w := range want {
		t.Run(c.String(), func(t *testing.T) {
			if got := core.HTTPStatusOf(c); got != w {
				t.Errorf("HTTPStatusOf(%v) = %d, want %d", c, got, w)
			}
			if got := (&core.Error{Code: c}).Status(); got != w {
				t.Errorf("Error{Code: %v}.Status() = %d, want %d", c, got, w)
			}
		})
	}
	if got := (&core.Error{Code: codes.FailedPrecondition, HTTPStatus: 412}).Status(); got != 412 {
		t.Errorf("explicit HTTPStatus: Status() = %d, want 412", got)
	}
}

// envelope is the part of Google's error body googleapi.Error does not expose.
type envelope struct {
	Error struct {
		Code   int     `json:"code"`
		Status *string `json:"status"`
		Errors []struct {
			Domain string `json:"domain"`
		} `json:"errors"`
	} `json:"error"`
}

type parsed struct {
	HTTPStatus  int
	ContentType string
	Code        int
	Message     string
	Reason      string
	ItemMessage string
	Domain      string
	Status      string // "-" when absent
}

// render writes err with core.WriteHTTPError and parses the response the way
// google.golang.org/api clients do.
func render(t *testing.T, err error) parsed {
	t.Helper()
	rec := httptest.NewRecorder()
	core.WriteHTTPError(rec, err)
	res := rec.Result()
	defer res.Body.Close()
	cerr := googleapi.CheckResponse(res)
	var gerr *googleapi.Error
	if !errors.As(cerr, &gerr) {
		t.Fatalf("CheckResponse = %v, want *googleapi.Error", cerr)
	}
	if len(gerr.Errors) != 1 {
		t.Fatalf("googleapi errors = %+v, want one item", gerr.Errors)
	}
	var env envelope
	if err := json.Unmarshal([]byte(gerr.Body), &env); err != nil {
		t.Fatalf("body %s: %v", gerr.Body, err)
	}
	p := parsed{
		HTTPStatus: res.StatusCode, ContentType: res.Header.Get("Content-Type"),
		Code: gerr.Code, Message: gerr.Message,
		Reason: gerr.Errors[0].Reason, ItemMessage: gerr.Errors[0].Message,
		Domain: env.Error.Errors[0].Domain, Status: "-",
	}
	if env.Error.Status != nil {
		p.Status = *env.Error.Status
	}
	return p
}

func TestWriteJSONParsedByGoogleAPI(t *testing.T) {
	const ct = "application/json; charset=UTF-8"
	tests := []struct {
		name string
		err  error
		want parsed
	}{
		{
			name: "not found defaults",
			err:  core.Errorf(codes.NotFound, "The resource '%s' was not found", "projects/p/global/backendServices/b"),
			want: parsed{404, ct, 404, "The resource 'projects/p/global/backendServices/b' was not found", "notFound",
				"The resource 'projects/p/global/backendServices/b' was not found", "global", "NOT_FOUND"},
		},
		{
			name: "compute precondition omits status",
			err: &core.Error{Code: codes.FailedPrecondition, HTTPStatus: 412, Reason: "conditionNotMet",
				Message: "Invalid fingerprint.", OmitStatus: true},
			want: parsed{412, ct, 412, "Invalid fingerprint.", "conditionNotMet", "Invalid fingerprint.", "global", "-"},
		},
		{
			name: "concurrent policy change",
			err:  core.Errorf(codes.Aborted, "There were concurrent policy changes."),
			want: parsed{409, ct, 409, "There were concurrent policy changes.", "aborted", "There were concurrent policy changes.", "global", "ABORTED"},
		},
		{
			name: "rate limit is a usage limit",
			err:  core.Errorf(codes.ResourceExhausted, "Quota exceeded."),
			want: parsed{429, ct, 429, "Quota exceeded.", "rateLimitExceeded", "Quota exceeded.", "usageLimits", "RESOURCE_EXHAUSTED"},
		},
		{
			name: "compute quota as 403",
			err:  &core.Error{Code: codes.PermissionDenied, HTTPStatus: 403, Reason: "rateLimitExceeded", Message: "Quota exceeded."},
			want: parsed{403, ct, 403, "Quota exceeded.", "rateLimitExceeded", "Quota exceeded.", "usageLimits", "PERMISSION_DENIED"},
		},
		{
			name: "invalid argument",
			err:  core.Errorf(codes.InvalidArgument, "Invalid value for field 'resource.name': ''."),
			want: parsed{400, ct, 400, "Invalid value for field 'resource.name': ''.", "invalid", "Invalid value for field 'resource.name': ''.", "global", "INVALID_ARGUMENT"},
		},
		{
			name: "custom reason kept",
			err:  &core.Error{Code: codes.InvalidArgument, Reason: "resourceInUseByAnotherResource", Message: "in use", OmitStatus: true},
			want: parsed{400, ct, 400, "in use", "resourceInUseByAnotherResource", "in use", "global", "-"},
		},
		{
			name: "forbidden",
			err:  core.Errorf(codes.PermissionDenied, "denied"),
			want: parsed{403, ct, 403, "denied", "forbidden", "denied", "global", "PERMISSION_DENIED"},
		},
		{
			name: "unauthenticated",
			err:  core.Errorf(codes.Unauthenticated, "login"),
			want: parsed{401, ct, 401, "login", "required", "login", "global", "UNAUTHENTICATED"},
		},
		{
			name: "unavailable",
			err:  core.Errorf(codes.Unavailable, "The service is currently unavailable."),
			want: parsed{503, ct, 503, "The service is currently unavailable.", "backendError", "The service is currently unavailable.", "global", "UNAVAILABLE"},
		},
		{
			name: "wrapped core error keeps its code",
			err:  fmt.Errorf("patching: %w", core.Errorf(codes.AlreadyExists, "exists")),
			want: parsed{409, ct, 409, "exists", "alreadyExists", "exists", "global", "ALREADY_EXISTS"},
		},
		{
			name: "plain error is internal",
			err:  errors.New("boom"),
			want: parsed{500, ct, 500, "boom", "backendError", "boom", "global", "INTERNAL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, render(t, tt.err)); diff != "" {
				t.Errorf("parsed error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStatusNamesAreRPCCodes checks the "status" member against the
// google.rpc.Code enum for every code, so clients that parse it as that enum
// (gax-go's apierror does) accept it.
func TestStatusNamesAreRPCCodes(t *testing.T) {
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		t.Run(c.String(), func(t *testing.T) {
			got := render(t, &core.Error{Code: c, Message: "m"})
			if want := rpccode.Code(c).String(); got.Status != want {
				t.Errorf("status = %q, want %q", got.Status, want)
			}
			if got.HTTPStatus != core.HTTPStatusOf(c) || got.Code != core.HTTPStatusOf(c) {
				t.Errorf("HTTP %d, body code %d, want %d", got.HTTPStatus, got.Code, core.HTTPStatusOf(c))
			}
		})
	}
}

func TestErrorGRPCStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"direct", core.Errorf(codes.NotFound, "x"), codes.NotFound},
		{"wrapped", fmt.Errorf("getting: %w", core.Errorf(codes.Aborted, "x")), codes.Aborted},
		{"http status does not change the gRPC code", &core.Error{Code: codes.FailedPrecondition, HTTPStatus: 412}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.err); got != tt.want {
				t.Errorf("status.Code = %v, want %v", got, tt.want)
			}
		})
	}
	e := core.Errorf(codes.NotFound, "service %q not found", "s")
	if got, want := e.Error(), `NotFound: service "s" not found`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if st := e.GRPCStatus(); st.Message() != `service "s" not found` {
		t.Errorf("GRPCStatus message = %q", st.Message())
	}
}

func TestWriteHTTPErrorStatusLine(t *testing.T) {
	rec := httptest.NewRecorder()
	core.WriteHTTPError(rec, core.Errorf(codes.NotFound, "gone"))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status %d, want 404", rec.Code)
	}
	var body map[string]map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range body["error"] {
		keys = append(keys, k)
	}
	want := map[string]bool{"code": true, "message": true, "errors": true, "status": true}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected member error.%s", k)
		}
		delete(want, k)
	}
	if len(want) != 0 {
		t.Errorf("missing members %v", want)
	}
}
