package compute

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// List filters. Compute's filter language is large (compute.json, "filter"
// parameter: AIP-160 comparisons with AND/OR/NOT and parentheses, or RE2
// `field eq RE` expressions). The emulator implements only what the Google
// clients send it on iapguard's behalf — the adapters send one filter,
// `networkEndpointType = "SERVERLESS"` (internal/gcp, ListServerlessNEGs) —
// and a little around it:
//
//	filter := term { [AND] term }
//	term   := FIELD ( = | != ) VALUE
//
// FIELD is a dotted path of JSON member names the resource type declares
// (repeated fields match when any element matches; map keys are free,
// "labels.env"); VALUE a bare word or a "double" or 'single' quoted string,
// compared as a string, number or boolean as the field's value is. A field
// the resource type does not declare, a term without operator or value, or
// an unterminated string is answered with 400 invalid, as Google answers
// it. Every other form Google accepts (OR, NOT or a leading -,
// parentheses, < <= > >= :, eq/ne regular expressions, functions) is
// answered with 400 "not supported by the emulator", never ignored.

// filterNode is a parsed filter: every term must match.
type filterNode []cmpNode

func (n filterNode) eval(o map[string]any) bool {
	for _, c := range n {
		if !c.eval(o) {
			return false
		}
	}
	return true
}

// cmpNode is one term, FIELD = VALUE or FIELD != VALUE.
type cmpNode struct {
	path    []string
	not     bool
	lit     string
	boolean bool // an absent boolean field is false (Compute omits false ones)
}

type filterError struct{ why string }

func (e *filterError) Error() string { return e.why }

func unsupported(what string) error {
	return &filterError{what + " is not supported by the emulator (it implements FIELD = VALUE and FIELD != VALUE terms joined by AND)"}
}

var fieldPathRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$`)

// parseFilter parses src for resources of Go type t (a compute/v1 struct).
// An empty filter matches everything (nil node).
func parseFilter(src string, t reflect.Type) (filterNode, error) {
	var out filterNode
	rest := strings.TrimLeftFunc(src, unicode.IsSpace)
	for rest != "" {
		if len(out) > 0 {
			if r, ok := cutWord(rest, "AND"); ok {
				if rest = r; rest == "" {
					return nil, &filterError{"missing term after AND"}
				}
			}
		}
		for _, w := range []string{"OR", "NOT"} {
			if _, ok := cutWord(rest, w); ok {
				return nil, unsupported(w)
			}
		}
		switch rest[0] {
		case '(', ')':
			return nil, unsupported("parentheses")
		case '-':
			return nil, unsupported("negation (-)")
		}
		n, r, err := parseTerm(rest, t)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
		rest = strings.TrimLeftFunc(r, unicode.IsSpace)
	}
	return out, nil
}

// cutWord removes the keyword w and the white space after it from s.
func cutWord(s, w string) (string, bool) {
	r, ok := strings.CutPrefix(s, w)
	if !ok || (r != "" && !unicode.IsSpace(rune(r[0]))) {
		return s, false
	}
	return strings.TrimLeftFunc(r, unicode.IsSpace), true
}

// parseTerm parses FIELD OP VALUE at the start of s and returns the rest.
func parseTerm(s string, t reflect.Type) (cmpNode, string, error) {
	end := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune("=!<>:~()", r) })
	if end < 0 {
		end = len(s)
	}
	field, rest := s[:end], strings.TrimLeftFunc(s[end:], unicode.IsSpace)
	if strings.HasPrefix(rest, "(") {
		return cmpNode{}, "", unsupported("function " + strconv.Quote(field+"()"))
	}
	if !fieldPathRE.MatchString(field) {
		return cmpNode{}, "", &filterError{fmt.Sprintf("bad field name %q", field)}
	}
	path := strings.Split(field, ".")
	lt, ok := leafType(t, path)
	if !ok {
		return cmpNode{}, "", &filterError{fmt.Sprintf("unknown field %q", field)}
	}
	n := cmpNode{path: path, boolean: lt.Kind() == reflect.Bool}
	switch {
	case strings.HasPrefix(rest, "!="):
		n.not, rest = true, rest[2:]
	case strings.HasPrefix(rest, "=") && !strings.HasPrefix(rest, "==") && !strings.HasPrefix(rest, "=~"):
		rest = rest[1:]
	case rest == "":
		return cmpNode{}, "", &filterError{fmt.Sprintf("expected an operator after %q", field)}
	default:
		op := rest
		if i := strings.IndexFunc(rest, unicode.IsSpace); i > 0 {
			op = rest[:i]
		}
		if strings.ContainsAny(op[:1], "=<>:~") || op == "eq" || op == "ne" {
			return cmpNode{}, "", unsupported("operator " + strconv.Quote(op))
		}
		return cmpNode{}, "", &filterError{fmt.Sprintf("expected an operator after %q", field)}
	}
	rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
	if rest == "" {
		return cmpNode{}, "", &filterError{"missing value"}
	}
	if q := rest[0]; q == '"' || q == '\'' {
		var b strings.Builder
		for i := 1; i < len(rest); i++ {
			switch c := rest[i]; {
			case c == '\\' && i+1 < len(rest):
				i++
				b.WriteByte(rest[i])
			case c == q:
				n.lit = b.String()
				return n, rest[i+1:], nil
			default:
				b.WriteByte(c)
			}
		}
		return cmpNode{}, "", &filterError{"unterminated string"}
	}
	end = strings.IndexFunc(rest, unicode.IsSpace)
	if end < 0 {
		end = len(rest)
	}
	if n.lit = rest[:end]; strings.ContainsAny(n.lit, "()") {
		return cmpNode{}, "", unsupported("parentheses")
	}
	return n, rest[end:], nil
}

// leaves collects the values at path, fanning out over arrays.
func leaves(v any, path []string) []any {
	if len(path) == 0 {
		if arr, ok := v.([]any); ok {
			return arr
		}
		return []any{v}
	}
	switch t := v.(type) {
	case map[string]any:
		sub, ok := t[path[0]]
		if !ok {
			return nil
		}
		return leaves(sub, path[1:])
	case []any:
		var out []any
		for _, e := range t {
			out = append(out, leaves(e, path)...)
		}
		return out
	}
	return nil
}

// eval: = matches when any value at the path equals the literal; != when
// none does (so also when the field is absent).
func (n cmpNode) eval(o map[string]any) bool {
	vs := leaves(o, n.path)
	if len(vs) == 0 && n.boolean {
		vs = []any{false}
	}
	for _, v := range vs {
		if equal(v, n.lit) {
			return !n.not
		}
	}
	return n.not
}

// equal compares a JSON scalar with a literal: numbers numerically,
// booleans by value (any case), strings exactly.
func equal(v any, lit string) bool {
	switch t := v.(type) {
	case string:
		return t == lit
	case bool:
		b, err := strconv.ParseBool(strings.ToLower(lit))
		return err == nil && t == b
	case json.Number:
		a, err1 := t.Float64()
		b, err2 := strconv.ParseFloat(lit, 64)
		if err1 != nil || err2 != nil {
			return t.String() == lit
		}
		return a == b
	}
	return false
}
