package logging

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/iapguard/iapguard/emulator/core"
)

// The filter language is the subset of the Logging query language that
// logadmin sends and operators write against audit logs:
//
//	filter     = [ conj ]
//	conj       = disj { [ "AND" ] disj }        (juxtaposition means AND)
//	disj       = unary { "OR" unary }           (OR binds tighter than AND, as in Cloud Logging)
//	unary      = ( "NOT" | "-" ) unary | "(" conj ")" | comparison
//	comparison = field op value | field ":" "*"
//	op         = "=" | "!=" | ":" | "<" | "<=" | ">" | ">="
//	field      = segment { "." segment }         (segment: name or "quoted string")
//	value      = "quoted string" | bare word
//
// Fields are resolved against the entry's JSON (protoPayload.methodName,
// resource.labels.service_name, labels."compute.googleapis.com/root_trigger_id",
// operation.last, ...); the first segment must be a LogEntry field. "=" and
// "!=" compare strings case-insensitively (Cloud Logging: "String
// comparisons aren't case sensitive"), ":" is a case-insensitive substring
// test (":*" tests presence). Ordering operators apply to timestamp,
// receiveTimestamp (RFC 3339 values) and severity (names or numbers) only.
// A missing field matches nothing ("!=" is NOT "="). Global restrictions
// (bare values), regular expressions (=~, !~), functions (SEARCH, sample,
// ...), value lists (field = ("a" OR "b")) and other syntax are rejected
// with an error, never ignored.

// expr is a parsed filter node.
type expr interface {
	eval(e *entryView) bool
}

type andExpr []expr
type orExpr []expr
type notExpr struct{ x expr }

func (a andExpr) eval(e *entryView) bool {
	for _, x := range a {
		if !x.eval(e) {
			return false
		}
	}
	return true
}

func (o orExpr) eval(e *entryView) bool {
	for _, x := range o {
		if x.eval(e) {
			return true
		}
	}
	return false
}

func (n notExpr) eval(e *entryView) bool { return !n.x.eval(e) }

// matchAll is the empty filter.
type matchAll struct{}

func (matchAll) eval(*entryView) bool { return true }

type comparison struct {
	path     []string
	op       string
	value    string
	presence bool // field:*
	// Parsed values: times for timestamp fields, severity for ordering on
	// severity.
	isTime bool
	when   time.Time
	sev    int
}

// topFields are the LogEntry fields a path may start with.
var topFields = map[string]bool{
	"logName": true, "resource": true, "timestamp": true, "receiveTimestamp": true,
	"severity": true, "insertId": true, "labels": true, "operation": true,
	"protoPayload": true, "httpRequest": true, "trace": true, "spanId": true,
	"traceSampled": true, "sourceLocation": true, "split": true,
	"textPayload": true, "jsonPayload": true,
}

var severities = map[string]int{
	"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400,
	"ERROR": 500, "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800,
}

func severityOf(s string) (int, bool) {
	if n, ok := severities[strings.ToUpper(s)]; ok {
		return n, true
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n, true
	}
	return 0, false
}

func (c *comparison) eval(e *entryView) bool {
	v, ok := e.lookup(c.path)
	if c.presence {
		return ok
	}
	if c.op == "!=" {
		return !(ok && c.equal(v))
	}
	if !ok {
		return false
	}
	switch c.op {
	case "=":
		return c.equal(v)
	case ":":
		return strings.Contains(strings.ToLower(v), strings.ToLower(c.value))
	}
	// Ordering.
	var cmp int
	if c.isTime {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return false
		}
		cmp = t.Compare(c.when)
	} else {
		n, ok := severityOf(v)
		if !ok {
			return false
		}
		cmp = n - c.sev
	}
	switch c.op {
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	case ">":
		return cmp > 0
	default: // ">="
		return cmp >= 0
	}
}

func (c *comparison) equal(v string) bool {
	if c.isTime {
		t, err := time.Parse(time.RFC3339Nano, v)
		return err == nil && t.Equal(c.when)
	}
	return strings.EqualFold(v, c.value)
}

// entryView resolves field paths on one entry, rendering its JSON only when
// a path is not one of the common ones.
type entryView struct {
	e    *core.LogEntry
	json map[string]any
}

func (v *entryView) lookup(path []string) (string, bool) {
	e := v.e
	switch len(path) {
	case 1:
		switch path[0] {
		case "logName":
			return e.LogName, true
		case "timestamp":
			return e.Timestamp.UTC().Format(time.RFC3339Nano), true
		case "receiveTimestamp":
			return e.ReceiveTimestamp.UTC().Format(time.RFC3339Nano), true
		case "severity":
			return e.Severity, e.Severity != ""
		case "insertId":
			return e.InsertID, true
		}
	case 2:
		if path[0] == "resource" && path[1] == "type" {
			return e.Resource.Type, true
		}
		if path[0] == "protoPayload" && e.ProtoPayload != nil {
			switch path[1] {
			case "serviceName":
				return e.ProtoPayload.ServiceName, true
			case "methodName":
				return e.ProtoPayload.MethodName, true
			case "resourceName":
				return e.ProtoPayload.ResourceName, true
			}
		}
	}
	if v.json == nil {
		v.json = map[string]any{}
		if b, err := json.Marshal(e); err == nil {
			_ = json.Unmarshal(b, &v.json)
		}
	}
	var cur any = v.json
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[seg]; !ok {
			return "", false
		}
	}
	switch x := cur.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case nil:
		return "", false
	default:
		// Objects and arrays: compare against their JSON text, so ":" finds
		// substrings anywhere inside them.
		b, _ := json.Marshal(x)
		return string(b), true
	}
}

// Tokens.
type tokKind int

const (
	tEOF tokKind = iota
	tWord
	tString
	tOp
	tLParen
	tRParen
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func tokenize(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{tLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")", i})
			i++
		case c == '"':
			str, n, err := readString(s[i:])
			if err != nil {
				return nil, fmt.Errorf("at offset %d: %w", i, err)
			}
			out = append(out, token{tString, str, i})
			i += n
		case strings.ContainsRune("=!<>:~", rune(c)):
			op := string(c)
			if i+1 < len(s) && strings.ContainsRune("=~", rune(s[i+1])) && c != ':' {
				op += string(s[i+1])
			}
			out = append(out, token{tOp, op, i})
			i += len(op)
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()\"=!<>:~", rune(s[j])) {
				j++
			}
			out = append(out, token{tWord, s[i:j], i})
			i = j
		}
	}
	return append(out, token{tEOF, "", len(s)}), nil
}

// readString reads a double-quoted string with backslash escapes and
// returns its value and length in s.
func readString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 >= len(s) {
				return "", 0, fmt.Errorf("unterminated escape")
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("unterminated string")
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

// parseFilter parses a Cloud Logging filter; the empty filter matches
// everything.
func parseFilter(s string) (expr, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == tEOF {
		return matchAll{}, nil
	}
	x, err := p.conj()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.pos)
	}
	return x, nil
}

func (p *parser) conj() (expr, error) {
	var xs andExpr
	for {
		x, err := p.disj()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
		t := p.peek()
		if t.kind == tWord && t.text == "AND" {
			p.next()
			continue
		}
		if t.kind == tEOF || t.kind == tRParen {
			break
		}
		// Juxtaposition is an implicit AND.
	}
	if len(xs) == 1 {
		return xs[0], nil
	}
	return xs, nil
}

func (p *parser) disj() (expr, error) {
	var xs orExpr
	for {
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
		if t := p.peek(); t.kind == tWord && t.text == "OR" {
			p.next()
			continue
		}
		break
	}
	if len(xs) == 1 {
		return xs[0], nil
	}
	return xs, nil
}

func (p *parser) unary() (expr, error) {
	t := p.peek()
	switch {
	case t.kind == tWord && t.text == "NOT":
		p.next()
		x, err := p.unary()
		return notExpr{x}, err
	case t.kind == tWord && strings.HasPrefix(t.text, "-") && len(t.text) > 1:
		// "-field op value": negation.
		p.toks[p.i].text = t.text[1:]
		x, err := p.unary()
		return notExpr{x}, err
	case t.kind == tLParen:
		p.next()
		x, err := p.conj()
		if err != nil {
			return nil, err
		}
		if r := p.next(); r.kind != tRParen {
			return nil, fmt.Errorf("missing ')' at offset %d", r.pos)
		}
		return x, nil
	case t.kind == tWord && (t.text == "AND" || t.text == "OR"):
		return nil, fmt.Errorf("unexpected %s at offset %d", t.text, t.pos)
	}
	return p.comparison()
}

func (p *parser) fieldPath() ([]string, error) {
	t := p.next()
	if t.kind != tWord {
		if t.kind == tString {
			return nil, fmt.Errorf("global restriction %q at offset %d is not supported by the emulator: name a field", t.text, t.pos)
		}
		return nil, fmt.Errorf("expected a field name at offset %d, got %q", t.pos, t.text)
	}
	var path []string
	text := t.text
	for {
		parts := strings.Split(text, ".")
		trailingDot := strings.HasSuffix(text, ".")
		if trailingDot {
			parts = parts[:len(parts)-1]
		}
		for _, seg := range parts {
			if seg == "" || !validSegment(seg) {
				return nil, fmt.Errorf("invalid field name %q at offset %d", t.text, t.pos)
			}
			path = append(path, seg)
		}
		if !trailingDot {
			break
		}
		// A quoted segment: labels."compute.googleapis.com/root_trigger_id".
		q := p.next()
		if q.kind != tString {
			return nil, fmt.Errorf("invalid field name %q at offset %d", t.text, t.pos)
		}
		path = append(path, q.text)
		if n := p.peek(); n.kind == tWord && strings.HasPrefix(n.text, ".") {
			text = strings.TrimPrefix(p.next().text, ".")
			continue
		}
		break
	}
	return path, nil
}

func validSegment(s string) bool {
	for _, r := range s {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '@') {
			return false
		}
	}
	return true
}

func (p *parser) comparison() (expr, error) {
	start := p.peek()
	path, err := p.fieldPath()
	if err != nil {
		return nil, err
	}
	op := p.next()
	if op.kind == tLParen && len(path) == 1 {
		return nil, fmt.Errorf("function %s at offset %d is not supported by the emulator", path[0], start.pos)
	}
	if op.kind != tOp {
		if len(path) == 1 {
			return nil, fmt.Errorf("global restriction %q at offset %d is not supported by the emulator: name a field and an operator", start.text, start.pos)
		}
		return nil, fmt.Errorf("expected an operator after %s at offset %d", strings.Join(path, "."), op.pos)
	}
	if !topFields[path[0]] {
		return nil, fmt.Errorf("unknown field %q at offset %d: not a LogEntry field", path[0], start.pos)
	}
	switch op.text {
	case "=", "!=", ":", "<", "<=", ">", ">=":
	default:
		return nil, fmt.Errorf("operator %s at offset %d is not supported by the emulator", op.text, op.pos)
	}
	v := p.next()
	switch v.kind {
	case tString, tWord:
	case tLParen:
		return nil, fmt.Errorf("value lists at offset %d are not supported by the emulator", v.pos)
	default:
		return nil, fmt.Errorf("expected a value after %s at offset %d", op.text, v.pos)
	}
	if v.kind == tWord && (v.text == "AND" || v.text == "OR" || v.text == "NOT") {
		return nil, fmt.Errorf("expected a value after %s at offset %d, got %s", op.text, v.pos, v.text)
	}
	c := &comparison{path: path, op: op.text, value: v.text}
	if op.text == ":" && v.kind == tWord && v.text == "*" {
		c.presence = true
		return c, nil
	}
	name := strings.Join(path, ".")
	if (name == "timestamp" || name == "receiveTimestamp") && op.text != ":" {
		t, err := time.Parse(time.RFC3339Nano, v.text)
		if err != nil {
			return nil, fmt.Errorf("%s %s %q: want an RFC 3339 time", name, op.text, v.text)
		}
		c.isTime, c.when = true, t
		return c, nil
	}
	switch op.text {
	case "<", "<=", ">", ">=":
		switch name {
		case "severity":
			n, ok := severityOf(v.text)
			if !ok {
				return nil, fmt.Errorf("severity %s %q: unknown severity", op.text, v.text)
			}
			c.sev = n
		default:
			return nil, fmt.Errorf("operator %s on %s is not supported by the emulator (only timestamp, receiveTimestamp and severity)", op.text, name)
		}
	}
	return c, nil
}
