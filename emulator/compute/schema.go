package compute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// The compute/v1 Go types implement UnmarshalJSON through an alias type, so
// json.Decoder.DisallowUnknownFields does not reach them. Unknown members
// are therefore found by walking the decoded JSON against the Go type's
// json tags, which is also what validates list filter field paths.

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the JSON member names of struct type t to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			if f.Anonymous {
				continue
			}
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// checkKnown reports the first member of v (decoded JSON) that type t does
// not declare, in Google's words.
func checkKnown(v any, t reflect.Type, at string) error {
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type mismatch; json.Unmarshal reports it
		}
		fields := jsonFields(t)
		for k, sub := range obj {
			ft, ok := fields[k]
			if !ok {
				//lint:ignore ST1005 this is Google's wire message, verbatim
				return fmt.Errorf("Unknown name %q at '%s': Cannot find field.", k, at)
			}
			if err := checkKnown(sub, ft, at+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok || t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
		for i, sub := range arr {
			if err := checkKnown(sub, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		for k, sub := range obj {
			if err := checkKnown(sub, t.Elem(), at+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

// leafType is the type of the field the dotted JSON path names in t, ok
// false when it names none. Repeated fields are traversed transparently;
// map keys are free.
func leafType(t reflect.Type, path []string) (reflect.Type, bool) {
	for _, seg := range path {
		t = deref(t)
		for t.Kind() == reflect.Slice {
			t = deref(t.Elem())
		}
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := jsonFields(t)[seg]
			if !ok {
				return nil, false
			}
			t = ft
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, false
		}
	}
	return deref(t), true
}

// decodeObject parses a request body that must be one JSON object.
func decodeObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badPayload(fmt.Sprintf("Syntax error: %v", err))
	}
	if dec.More() {
		return nil, badPayload("Unexpected data after the JSON object.")
	}
	if _, err := dec.Token(); err == nil {
		return nil, badPayload("Unexpected data after the JSON object.")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, badPayload("Expected a JSON object for 'resource'.")
	}
	return obj, nil
}

// fromMap decodes obj into a fresh value of target's type after checking
// that every member is known.
func fromMap(obj map[string]any, target any) error {
	if err := checkKnown(obj, reflect.TypeOf(target), "resource"); err != nil {
		return badPayload(err.Error())
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return badPayload(err.Error())
	}
	if err := json.Unmarshal(b, target); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badPayload(fmt.Sprintf("Invalid value at 'resource.%s' (%s), a JSON %s was given.", te.Field, te.Type, te.Value))
		}
		return badPayload(err.Error())
	}
	return nil
}

// toMap renders v (a compute/v1 value) as decoded JSON.
func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	return m, nil
}

// mergePatch applies an RFC 7396 JSON merge patch: objects merge
// recursively, null deletes a member, anything else (arrays included)
// replaces. Neither argument is modified.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	out := map[string]any{}
	if t, ok := target.(map[string]any); ok {
		for k, v := range t {
			out[k] = v
		}
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}

// redact removes secrets from a request map before it is audited
// (Compute never logs or returns oauth2ClientSecret or a private key).
func redact(v any) {
	switch t := v.(type) {
	case map[string]any:
		delete(t, "oauth2ClientSecret")
		delete(t, "privateKey")
		for _, sub := range t {
			redact(sub)
		}
	case []any:
		for _, sub := range t {
			redact(sub)
		}
	}
}

// deepCopy copies decoded JSON.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, sub := range t {
			out[k] = deepCopy(sub)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, sub := range t {
			out[i] = deepCopy(sub)
		}
		return out
	default:
		return v
	}
}
