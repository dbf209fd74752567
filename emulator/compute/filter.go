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

// List filters. Compute accepts two syntaxes that cannot be mixed
// (compute.json, "filter" parameter):
//
//   - AIP-160 style: `field OP value` with OP one of = != < <= > >= : ;
//     value a bare word, a "double" or 'single' quoted string, a number or a
//     boolean; `field:*` tests presence; terms combine with AND, OR, NOT (or a
//     leading -), parentheses, and juxtaposition (implicit AND). Precedence is
//     AIP-160's: OR binds tighter than AND.
//   - Regular expressions: `field eq RE` / `field ne RE`, either as the whole
//     filter (the rest of the filter is the expression, quotes optional) or as
//     parenthesised terms joined by juxtaposition. RE2 syntax; the expression
//     must match the whole field value.
//
// Field paths are JSON member names joined by dots; repeated fields match when
// any element matches; map keys are free ("labels.env"). A path the resource
// type does not declare, an unknown operator, a bare word without operator,
// OR/NOT in regex syntax, or a mix of both syntaxes is answered with 400
// invalid, never ignored. Functions such as `labels.env.exists()` are not
// supported (400). Differences from Google that are not errors: a * inside
// an = value is literal (no wildcard matching), and `:` is AIP-160 "has"
// (equality for scalars and repeated fields, key presence for maps, `:*`
// presence); older Compute docs describe `:` as a substring match on
// strings, which is not emulated.

type filterNode interface {
	eval(obj map[string]any) bool
}

type andNode []filterNode

func (n andNode) eval(o map[string]any) bool {
	for _, c := range n {
		if !c.eval(o) {
			return false
		}
	}
	return true
}

type orNode []filterNode

func (n orNode) eval(o map[string]any) bool {
	for _, c := range n {
		if c.eval(o) {
			return true
		}
	}
	return false
}

type notNode struct{ n filterNode }

func (n notNode) eval(o map[string]any) bool { return !n.n.eval(o) }

type cmpNode struct {
	path []string
	op   string // = != < <= > >= : eq ne
	lit  string
	re   *regexp.Regexp
}

type filterError struct{ why string }

func (e *filterError) Error() string { return e.why }

// parseFilter parses src for resources of Go type t (a compute/v1 struct).
// An empty filter matches everything (nil node).
func parseFilter(src string, t reflect.Type) (filterNode, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	p := &filterParser{src: src, t: t}
	n, err := p.expression(0)
	if err != nil {
		return nil, err
	}
	if tok := p.next(); tok.kind != tEOF {
		return nil, &filterError{fmt.Sprintf("unexpected %q at offset %d", tok.text, tok.pos)}
	}
	if p.sawRegex && p.sawAIP {
		return nil, &filterError{"regular-expression (eq/ne) and AIP-160 comparisons cannot be mixed"}
	}
	if p.sawRegex && p.sawLogic {
		return nil, &filterError{"AND/OR/NOT are not allowed with eq/ne expressions"}
	}
	return n, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tLParen
	tRParen
	tOp
	tWord
	tString
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type filterParser struct {
	src                        string
	pos                        int
	t                          reflect.Type
	sawRegex, sawAIP, sawLogic bool
}

func isOpChar(r byte) bool { return r == '=' || r == '!' || r == '<' || r == '>' || r == ':' }

func (p *filterParser) skipSpace() {
	for p.pos < len(p.src) && unicode.IsSpace(rune(p.src[p.pos])) {
		p.pos++
	}
}

// next lexes one token in the default mode.
func (p *filterParser) next() token {
	p.skipSpace()
	if p.pos >= len(p.src) {
		return token{kind: tEOF, pos: p.pos}
	}
	start := p.pos
	c := p.src[p.pos]
	switch {
	case c == '(':
		p.pos++
		return token{tLParen, "(", start}
	case c == ')':
		p.pos++
		return token{tRParen, ")", start}
	case c == '"' || c == '\'':
		s, ok := p.quoted()
		if !ok {
			return token{tEOF, "", -1}
		}
		return token{tString, s, start}
	case isOpChar(c):
		if p.pos+1 < len(p.src) && p.src[p.pos+1] == '=' && c != '=' && c != ':' {
			p.pos += 2
			return token{tOp, p.src[start:p.pos], start}
		}
		p.pos++
		return token{tOp, string(c), start}
	}
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if unicode.IsSpace(rune(c)) || c == '(' || c == ')' || isOpChar(c) {
			break
		}
		p.pos++
	}
	return token{tWord, p.src[start:p.pos], start}
}

func (p *filterParser) peek() token {
	save := p.pos
	t := p.next()
	p.pos = save
	return t
}

// quoted reads a quoted string at p.pos with backslash escapes.
func (p *filterParser) quoted() (string, bool) {
	q := p.src[p.pos]
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\\' && p.pos+1 < len(p.src):
			b.WriteByte(p.src[p.pos+1])
			p.pos += 2
		case c == q:
			p.pos++
			return b.String(), true
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", false
}

// value reads a comparison's right-hand side: a quoted string, or a bare
// literal up to white space or ')'.
func (p *filterParser) value() (string, error) {
	p.skipSpace()
	if p.pos >= len(p.src) {
		return "", &filterError{"missing value"}
	}
	if c := p.src[p.pos]; c == '"' || c == '\'' {
		s, ok := p.quoted()
		if !ok {
			return "", &filterError{"unterminated string"}
		}
		return s, nil
	}
	start := p.pos
	for p.pos < len(p.src) && !unicode.IsSpace(rune(p.src[p.pos])) && p.src[p.pos] != ')' {
		p.pos++
	}
	if p.pos == start {
		return "", &filterError{"missing value"}
	}
	return p.src[start:p.pos], nil
}

// expression := sequence { AND sequence }
func (p *filterParser) expression(depth int) (filterNode, error) {
	first, err := p.sequence(depth)
	if err != nil {
		return nil, err
	}
	nodes := andNode{first}
	for {
		if t := p.peek(); t.kind == tWord && t.text == "AND" {
			p.next()
			p.sawLogic = true
			n, err := p.sequence(depth)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, n)
			continue
		}
		break
	}
	if len(nodes) == 1 {
		return first, nil
	}
	return nodes, nil
}

// sequence := factor { factor }   (juxtaposition is AND)
func (p *filterParser) sequence(depth int) (filterNode, error) {
	first, err := p.factor(depth)
	if err != nil {
		return nil, err
	}
	nodes := andNode{first}
	for {
		t := p.peek()
		if t.kind == tEOF || t.kind == tRParen || (t.kind == tWord && (t.text == "AND" || t.text == "OR")) {
			break
		}
		n, err := p.factor(depth)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 1 {
		return first, nil
	}
	return nodes, nil
}

// factor := term { OR term }
func (p *filterParser) factor(depth int) (filterNode, error) {
	first, err := p.term(depth)
	if err != nil {
		return nil, err
	}
	nodes := orNode{first}
	for {
		if t := p.peek(); t.kind == tWord && t.text == "OR" {
			p.next()
			p.sawLogic = true
			n, err := p.term(depth)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, n)
			continue
		}
		break
	}
	if len(nodes) == 1 {
		return first, nil
	}
	return nodes, nil
}

// term := [NOT | -] ( '(' expression ')' | restriction )
func (p *filterParser) term(depth int) (filterNode, error) {
	t := p.peek()
	negate := false
	switch {
	case t.kind == tWord && t.text == "NOT":
		p.next()
		negate = true
	case t.kind == tWord && strings.HasPrefix(t.text, "-"):
		p.pos = t.pos + 1
		negate = true
	}
	var n filterNode
	var err error
	if p.peek().kind == tLParen {
		p.next()
		n, err = p.expression(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, &filterError{"missing ')'"}
		}
	} else {
		n, err = p.restriction(depth)
		if err != nil {
			return nil, err
		}
	}
	if negate {
		p.sawLogic = true
		return notNode{n}, nil
	}
	return n, nil
}

var fieldPathRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$`)

// restriction := field comparator value
func (p *filterParser) restriction(depth int) (filterNode, error) {
	f := p.next()
	if f.kind != tWord {
		return nil, &filterError{fmt.Sprintf("expected a field name at offset %d", f.pos)}
	}
	if !fieldPathRE.MatchString(f.text) {
		return nil, &filterError{fmt.Sprintf("bad field name %q", f.text)}
	}
	path := strings.Split(f.text, ".")
	if !validPath(p.t, path) {
		return nil, &filterError{fmt.Sprintf("unknown field %q", f.text)}
	}
	op := p.next()
	switch {
	case op.kind == tOp:
		switch op.text {
		case "=", "!=", "<", "<=", ">", ">=", ":":
		default:
			return nil, &filterError{fmt.Sprintf("unsupported operator %q", op.text)}
		}
		p.sawAIP = true
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		return &cmpNode{path: path, op: op.text, lit: v}, nil
	case op.kind == tWord && (op.text == "eq" || op.text == "ne"):
		p.sawRegex = true
		var v string
		if depth == 0 {
			// Un-parenthesised: the rest of the filter is the expression.
			v = strings.TrimSpace(p.src[p.pos:])
			p.pos = len(p.src)
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			if v == "" {
				return nil, &filterError{"missing value"}
			}
		} else {
			var err error
			if v, err = p.value(); err != nil {
				return nil, err
			}
		}
		re, err := regexp.Compile(`^(?:` + v + `)$`)
		if err != nil {
			return nil, &filterError{fmt.Sprintf("bad regular expression %q: %v", v, err)}
		}
		return &cmpNode{path: path, op: op.text, lit: v, re: re}, nil
	default:
		return nil, &filterError{fmt.Sprintf("expected an operator after %q", f.text)}
	}
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

func (n *cmpNode) eval(o map[string]any) bool {
	vals := leaves(o, n.path)
	switch n.op {
	case "!=":
		for _, v := range vals {
			if compare(v, n.lit) == 0 {
				return false
			}
		}
		return true
	case "ne":
		for _, v := range vals {
			if n.re.MatchString(scalarString(v)) {
				return false
			}
		}
		return true
	case "eq":
		for _, v := range vals {
			if n.re.MatchString(scalarString(v)) {
				return true
			}
		}
		return false
	case ":":
		if n.lit == "*" {
			return len(vals) > 0
		}
		for _, v := range vals {
			if m, ok := v.(map[string]any); ok {
				if _, has := m[n.lit]; has {
					return true
				}
				continue
			}
			if compare(v, n.lit) == 0 {
				return true
			}
		}
		return false
	}
	for _, v := range vals {
		c := compare(v, n.lit)
		if c == incomparable {
			continue
		}
		switch n.op {
		case "=":
			if c == 0 {
				return true
			}
		case "<":
			if c < 0 {
				return true
			}
		case "<=":
			if c <= 0 {
				return true
			}
		case ">":
			if c > 0 {
				return true
			}
		case ">=":
			if c >= 0 {
				return true
			}
		}
	}
	return false
}

const incomparable = 2

// compare orders a JSON scalar against a literal: numbers numerically,
// booleans by value, strings lexically; incomparable otherwise.
func compare(v any, lit string) int {
	switch t := v.(type) {
	case string:
		return strings.Compare(t, lit)
	case bool:
		b, err := strconv.ParseBool(strings.ToLower(lit))
		if err != nil {
			return incomparable
		}
		if t == b {
			return 0
		}
		return incomparable
	case json.Number:
		a, err1 := t.Float64()
		b, err2 := strconv.ParseFloat(lit, 64)
		if err1 != nil || err2 != nil {
			return strings.Compare(t.String(), lit)
		}
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	return incomparable
}

func scalarString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case json.Number:
		return t.String()
	}
	return ""
}
