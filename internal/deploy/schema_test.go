package deploy

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// protoField is one field of a message in deploy/pubsub/outcome.proto.
type protoField struct {
	JSONName string // proto3 JSON name (lowerCamelCase of the field name)
	Type     string // scalar type or message name
	Repeated bool
	Number   int
}

var (
	protoMessageRE = regexp.MustCompile(`^message\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{$`)
	protoFieldRE   = regexp.MustCompile(`^(repeated\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s+([a-z_][a-z0-9_]*)\s*=\s*([0-9]+)\s*;$`)
)

// parseProto reads the subset of proto3 the schema uses: nested message
// blocks and "[repeated] type name = number;" fields. Anything else is an
// error, so the parser cannot silently skip a field.
func parseProto(src string) (messages map[string][]protoField, topLevel []string, err error) {
	messages = map[string][]protoField{}
	var stack []string
	for i, line := range strings.Split(src, "\n") {
		if j := strings.Index(line, "//"); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case line == `syntax = "proto3";`:
		case protoMessageRE.MatchString(line):
			name := protoMessageRE.FindStringSubmatch(line)[1]
			if _, dup := messages[name]; dup {
				return nil, nil, fmt.Errorf("line %d: message %s defined twice", i+1, name)
			}
			messages[name] = nil
			if len(stack) == 0 {
				topLevel = append(topLevel, name)
			}
			stack = append(stack, name)
		case line == "}":
			if len(stack) == 0 {
				return nil, nil, fmt.Errorf("line %d: unbalanced }", i+1)
			}
			stack = stack[:len(stack)-1]
		case protoFieldRE.MatchString(line):
			if len(stack) == 0 {
				return nil, nil, fmt.Errorf("line %d: field outside a message", i+1)
			}
			m := protoFieldRE.FindStringSubmatch(line)
			var n int
			fmt.Sscan(m[4], &n)
			cur := stack[len(stack)-1]
			messages[cur] = append(messages[cur], protoField{JSONName: lowerCamel(m[3]), Type: m[2], Repeated: m[1] != "", Number: n})
		default:
			return nil, nil, fmt.Errorf("line %d: %q is not understood by this test's proto parser", i+1, line)
		}
	}
	if len(stack) != 0 {
		return nil, nil, fmt.Errorf("message %s is not closed", stack[len(stack)-1])
	}
	return messages, topLevel, nil
}

// lowerCamel is protoc's JSON name: underscores removed, the next letter
// upper-cased.
func lowerCamel(s string) string {
	var b strings.Builder
	up := false
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up {
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var timeType = reflect.TypeOf(time.Time{})

// goFields describes struct type t as the proto fields it must have: JSON
// name, proto type (string for string kinds and time.Time, the struct's type
// name for nested structs) and whether it is a list; nested structs are
// added to out.
func goFields(t reflect.Type, out map[string][]protoField) {
	var fs []protoField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft, repeated := f.Type, false
		if ft.Kind() == reflect.Slice {
			ft, repeated = ft.Elem(), true
		}
		var typ string
		switch {
		case ft == timeType:
			typ = "string"
		case ft.Kind() == reflect.String:
			typ = "string"
		case ft.Kind() == reflect.Bool:
			typ = "bool"
		case ft.Kind() == reflect.Int64:
			typ = "int64"
		case ft.Kind() == reflect.Struct:
			typ = ft.Name()
			goFields(ft, out)
		default:
			typ = "unsupported:" + ft.String()
		}
		fs = append(fs, protoField{JSONName: name, Type: typ, Repeated: repeated})
	}
	out[t.Name()] = fs
}

// TestOutcomeSchemaMatchesGo checks deploy/pubsub/outcome.proto, the schema
// the outcomes topic validates against, field by field against
// pkg/outcome.Message: a field the Go type gains without the schema would
// make every publish fail validation.
func TestOutcomeSchemaMatchesGo(t *testing.T) {
	msgs, top, err := parseProto(string(readRepoFile(t, "deploy/pubsub/outcome.proto")))
	if err != nil {
		t.Fatalf("parsing outcome.proto: %v", err)
	}
	if diff := cmp.Diff([]string{"Outcome"}, top); diff != "" {
		t.Errorf("top-level messages (Pub/Sub allows exactly one) (-want +got):\n%s", diff)
	}
	goMsgs := map[string][]protoField{}
	goFields(reflect.TypeOf(outcome.Message{}), goMsgs)
	goMsgs["Outcome"] = goMsgs["Message"] // the proto's name for the top-level message
	delete(goMsgs, "Message")

	for name, pf := range msgs {
		numbers := map[int]bool{}
		for _, f := range pf {
			if numbers[f.Number] || f.Number < 1 {
				t.Errorf("message %s: field number %d reused or invalid", name, f.Number)
			}
			numbers[f.Number] = true
		}
	}
	norm := func(fs []protoField) []protoField {
		out := make([]protoField, len(fs))
		for i, f := range fs {
			f.Number = 0
			out[i] = f
		}
		sort.Slice(out, func(i, j int) bool { return out[i].JSONName < out[j].JSONName })
		return out
	}
	for name, gf := range goMsgs {
		pf, ok := msgs[name]
		if !ok {
			t.Errorf("outcome.proto has no message %s (Go type %s)", name, name)
			continue
		}
		if diff := cmp.Diff(norm(gf), norm(pf)); diff != "" {
			t.Errorf("message %s: Go JSON fields vs outcome.proto (-go +proto):\n%s", name, diff)
		}
	}
	for name := range msgs {
		if _, ok := goMsgs[name]; !ok {
			t.Errorf("outcome.proto message %s has no Go counterpart", name)
		}
	}
}

func TestParseProtoRejectsWhatItDoesNotUnderstand(t *testing.T) {
	for _, src := range []string{
		"message A {\n  map<string, string> labels = 1;\n}",
		"message A {\n  string a = 1;\n",
		"string a = 1;",
		"message A {\n  oneof x {\n  }\n}",
	} {
		if _, _, err := parseProto(src); err == nil {
			t.Errorf("parseProto(%q) succeeded, want an error", src)
		}
	}
	msgs, _, err := parseProto("message A {\n  repeated string event_ids = 2; // c\n}")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]protoField{"A": {{JSONName: "eventIds", Type: "string", Repeated: true, Number: 2}}}, msgs); diff != "" {
		t.Errorf("parseProto (-want +got):\n%s", diff)
	}
}
