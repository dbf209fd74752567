// Package rest serves an emulated API's gRPC methods over REST/JSON as
// Google's front end transcodes them (google.api.http rules): the request
// message is bound from the path, the query and the JSON body; the answer
// is the response message in proto3 JSON (lowerCamelCase names, int64 as
// strings, bytes as base64); errors are the JSON error envelope of APIs
// served this way, with the HTTP status of the gRPC code and no "errors"
// array (core.WriteOnePlatformError). Each call is counted, faulted and
// audited under the same method key as its gRPC twin (core.Core.Begin),
// so the discovery-based REST clients (google.golang.org/api/...) and the
// gRPC clients meet the same emulator.
package rest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
)

// MaxBody bounds a request body (Google's front end refuses far smaller
// requests than this for the methods served here).
const MaxBody = 4 << 20

// Call is one transcoded method: it builds the request message (from q and
// body) and calls the gRPC implementation.
type Call func(ctx context.Context, q *Query, body []byte) (proto.Message, error)

// Serve runs call as method for r and writes the answer. A method that
// Google does not serve at r's path is the caller's NotFound.
func Serve(w http.ResponseWriter, r *http.Request, c *core.Core, method string, call Call) {
	serve(w, r, c, method, MaxBody, false, call)
}

// ServeLimited is Serve for a method whose request body may be larger
// than MaxBody, up to limit bytes (Pub/Sub's Publish: 10 MiB). A longer
// body is refused as Google's front end refuses it, before the call is
// counted: 400 INVALID_ARGUMENT "Request payload size exceeds the limit:
// LIMIT bytes."
func ServeLimited(w http.ResponseWriter, r *http.Request, c *core.Core, method string, limit int64, call Call) {
	serve(w, r, c, method, limit, true, call)
}

func serve(w http.ResponseWriter, r *http.Request, c *core.Core, method string, limit int64, refuseLonger bool, call Call) {
	r = core.WithHTTPCaller(r)
	read := limit
	if refuseLonger {
		read++ // one byte more tells a longer body
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, read))
	if err != nil {
		core.WriteOnePlatformError(w, core.Errorf(codes.InvalidArgument, "reading the request body: %v", err))
		return
	}
	if refuseLonger && int64(len(body)) > limit {
		core.WriteOnePlatformError(w, core.Errorf(codes.InvalidArgument, "Request payload size exceeds the limit: %d bytes.", limit))
		return
	}
	if err := c.Begin(r.Context(), method); err != nil {
		core.WriteOnePlatformError(w, err)
		return
	}
	q := &Query{vals: r.URL.Query()}
	resp, err := call(r.Context(), q, body)
	if err == nil {
		err = q.err
	}
	if err != nil {
		var ce *core.Error
		if !errors.As(err, &ce) {
			st, _ := status.FromError(err)
			ce = core.Errorf(st.Code(), "%s", st.Message())
		}
		core.WriteOnePlatformError(w, ce)
		return
	}
	// The Go REST clients of gapic libraries ask for enums as numbers
	// ($alt=json;enum-encoding=int); the discovery clients for names.
	out := protojson.MarshalOptions{UseEnumNumbers: strings.Contains(r.URL.Query().Get("$alt"), "enum-encoding=int")}
	b, err := out.Marshal(resp)
	if err != nil {
		core.WriteOnePlatformError(w, core.Errorf(codes.Internal, "encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

// NotFound answers a path no method is served at, as Google's front end
// does (404 with its HTML-free JSON error).
func NotFound(w http.ResponseWriter, r *http.Request) {
	core.Errorf(codes.NotFound, "The requested URL %s was not found on this server.", r.URL.Path).WriteJSON(w)
}

// Unmarshal decodes a JSON request body into m as Google does: unknown
// fields are refused ("Invalid JSON payload received. Unknown name ...");
// an empty body leaves m empty.
func Unmarshal(body []byte, m proto.Message) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		return core.Errorf(codes.InvalidArgument, "Invalid JSON payload received. %v", err)
	}
	return nil
}

// systemParams are the query parameters every Google REST API takes
// besides a method's own (Google's "system parameters"; the $-prefixed
// spellings are equivalent).
var systemParams = []string{
	"alt", "fields", "key", "prettyPrint", "quotaUser", "callback",
	"access_token", "oauth_token", "upload_protocol", "uploadType", "$.xgafv",
}

func isSystemParam(k string) bool {
	return slices.Contains(systemParams, strings.TrimPrefix(k, "$")) || k == "$.xgafv"
}

// Query is a request's query parameters, bound to the request message's
// fields as Google's transcoding binds them: a field's JSON
// (lowerCamelCase) and proto (snake_case) spellings both bind, a parameter
// naming no field the method takes is refused. The getters record the
// first malformed value; Serve answers it as 400.
type Query struct {
	vals url.Values
	err  error
}

// Bind checks that every parameter (system parameters aside) names one of
// fields (proto names, dotted for nested fields), else 400 "Invalid JSON
// payload received. Unknown name "P": Cannot bind query parameter. Field
// 'P' could not be found in request message." It keeps the values under
// their proto names.
func (q *Query) Bind(fields ...string) error {
	bound := url.Values{}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q.vals {
			if !yield(k) {
				return
			}
		}
	}) {
		if isSystemParam(k) {
			continue
		}
		name := snakePath(k)
		if !slices.Contains(fields, name) {
			return core.Errorf(codes.InvalidArgument,
				"Invalid JSON payload received. Unknown name %q: Cannot bind query parameter. Field '%s' could not be found in request message.", k, k)
		}
		bound[name] = append(bound[name], q.vals[k]...)
	}
	q.vals = bound
	return nil
}

// snakePath converts a dotted lowerCamelCase path to proto names
// (options.requestedPolicyVersion -> options.requested_policy_version).
func snakePath(k string) string {
	var b strings.Builder
	for _, r := range k {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (q *Query) fail(err error) {
	if q.err == nil {
		q.err = err
	}
}

// Str is a string field (the last value given).
func (q *Query) Str(field string) string {
	v := q.vals[field]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Strs is a repeated string field (the parameter given once per value).
func (q *Query) Strs(field string) []string { return slices.Clone(q.vals[field]) }

// Bool is a TYPE_BOOL field: "true" or "false"; anything else is 400
// "Invalid value at 'FIELD' (TYPE_BOOL), "V"".
func (q *Query) Bool(field string) bool {
	switch v := q.Str(field); v {
	case "", "false":
		return false
	case "true":
		return true
	default:
		q.fail(core.Errorf(codes.InvalidArgument, "Invalid value at '%s' (TYPE_BOOL), %q", field, v))
		return false
	}
}

// Int32 is a TYPE_INT32 field: a decimal integer in range, else 400
// "Invalid value at 'FIELD' (TYPE_INT32), "V"".
func (q *Query) Int32(field string) int32 {
	v := q.Str(field)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		q.fail(core.Errorf(codes.InvalidArgument, "Invalid value at '%s' (TYPE_INT32), %q", field, v))
	}
	return int32(n)
}

// FieldMask is a google.protobuf.FieldMask field in its JSON form
// (comma-separated lowerCamelCase paths, converted to proto names); nil
// when absent.
func (q *Query) FieldMask(field string) *fieldmaskpb.FieldMask {
	v := q.Str(field)
	if v == "" {
		return nil
	}
	fm := &fieldmaskpb.FieldMask{}
	if err := protojson.Unmarshal([]byte(strconv.Quote(v)), fm); err != nil {
		q.fail(core.Errorf(codes.InvalidArgument, "Invalid value at '%s' (type.googleapis.com/google.protobuf.FieldMask), %q", field, v))
		return nil
	}
	return fm
}
