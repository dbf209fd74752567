package core

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
)

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

// RESTQuery is a request's query parameters bound to the fields of the
// request message they may fill (proto names, dotted for nested fields),
// as Google's HTTP transcoding binds them: the JSON (lowerCamelCase) and
// the proto (snake_case) spelling of a field both bind, and a parameter
// that names no such field is refused.
type RESTQuery struct {
	vals map[string]string // by proto name
}

// BindQuery binds q to fields (proto names), refusing unknown parameters
// with Google's 400 INVALID_ARGUMENT "Invalid JSON payload received.
// Unknown name "P": Cannot bind query parameter. Field 'P' could not be
// found in request message."
func BindQuery(q url.Values, fields ...string) (*RESTQuery, error) {
	rq := &RESTQuery{vals: map[string]string{}}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		if isSystemParam(k) {
			continue
		}
		proto := snakePath(k)
		if !slices.Contains(fields, proto) {
			return nil, Errorf(codes.InvalidArgument,
				"Invalid JSON payload received. Unknown name %q: Cannot bind query parameter. Field '%s' could not be found in request message.", k, k)
		}
		if v := q[k]; len(v) > 0 {
			rq.vals[proto] = v[len(v)-1]
		}
	}
	return rq, nil
}

// snakePath converts a dotted lowerCamelCase path to proto names
// (options.requestedPolicyVersion -> options.requested_policy_version);
// a path already in proto names is returned unchanged.
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

// Str is a string parameter ("" when absent).
func (q *RESTQuery) Str(field string) string { return q.vals[field] }

// Bool parses a TYPE_BOOL parameter: "true" or "false" (what Google's
// clients send); anything else is 400 "Invalid value at 'FIELD'
// (TYPE_BOOL), "V"", as Google's transcoding answers.
func (q *RESTQuery) Bool(field string) (bool, error) {
	switch v, ok := q.vals[field]; {
	case !ok || v == "false":
		return false, nil
	case v == "true":
		return true, nil
	default:
		return false, Errorf(codes.InvalidArgument, "Invalid value at '%s' (TYPE_BOOL), %q", field, v)
	}
}

// Int32 parses a TYPE_INT32 parameter (a decimal integer in range), else
// 400 "Invalid value at 'FIELD' (TYPE_INT32), "V"".
func (q *RESTQuery) Int32(field string) (int32, error) {
	v, ok := q.vals[field]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, Errorf(codes.InvalidArgument, "Invalid value at '%s' (TYPE_INT32), %q", field, v)
	}
	return int32(n), nil
}
