package cloudrun

import (
	"slices"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// serviceDesc is the descriptor of google.cloud.run.v2.Service.
var serviceDesc = (&runpb.Service{}).ProtoReflect().Descriptor()

// outputOnly reports whether fd carries field_behavior OUTPUT_ONLY.
func outputOnly(fd protoreflect.FieldDescriptor) bool {
	fb, _ := proto.GetExtension(fd.Options(), annotations.E_FieldBehavior).([]annotations.FieldBehavior)
	return slices.Contains(fb, annotations.FieldBehavior_OUTPUT_ONLY)
}

// writableTop reports whether a top-level Service field is part of the
// writable spec: not output-only, and neither the identifier nor the etag.
func writableTop(fd protoreflect.FieldDescriptor) bool {
	return !outputOnly(fd) && fd.Name() != "name" && fd.Name() != "etag"
}

// replaceWritable makes dst's writable spec equal to src's (UpdateService
// without an update_mask, or with "*").
func replaceWritable(dst, src *runpb.Service) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	fields := serviceDesc.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !writableTop(fd) {
			continue
		}
		if s.Has(fd) {
			d.Set(fd, s.Get(fd))
		} else {
			d.Clear(fd)
		}
	}
}

// splitPath splits a field-mask path on dots, keeping backtick-quoted
// segments (map keys such as `iapguard.dev/managed`) whole, per AIP-161.
func splitPath(p string) ([]string, bool) {
	var segs []string
	var b strings.Builder
	quoted := false
	for _, r := range p {
		switch {
		case r == '`':
			quoted = !quoted
		case r == '.' && !quoted:
			segs = append(segs, b.String())
			b.Reset()
		default:
			b.WriteRune(r)
		}
	}
	if quoted {
		return nil, false
	}
	segs = append(segs, b.String())
	for _, s := range segs {
		if s == "" {
			return nil, false
		}
	}
	return segs, true
}

// fieldByName resolves a field-mask segment. Over gRPC a FieldMask path is
// made of proto field names (snake_case); lowerCamelCase is only the JSON
// spelling, which the REST front end converts before the service sees it
// (google/protobuf/field_mask.proto, "JSON Encoding of Field Masks"). A
// camelCase segment therefore names no field here, as on Google.
func fieldByName(md protoreflect.MessageDescriptor, seg string) protoreflect.FieldDescriptor {
	return md.Fields().ByName(protoreflect.Name(seg))
}

// checkMask validates update_mask paths against the Service message before
// anything is looked up: unknown fields → INVALID_ARGUMENT.
func checkMask(paths []string) error {
	for _, p := range paths {
		if p == "*" {
			continue
		}
		if _, err := resolvePath(p); err != nil {
			return err
		}
	}
	return nil
}

// maskStep is one resolved path segment; key is set for a map entry.
type maskStep struct {
	fd    protoreflect.FieldDescriptor
	key   string
	isMap bool
}

func resolvePath(p string) ([]maskStep, error) {
	segs, ok := splitPath(p)
	if !ok {
		return nil, invalid("update_mask: malformed field path %q", p)
	}
	md := serviceDesc
	var steps []maskStep
	for i := 0; i < len(segs); i++ {
		if md == nil {
			return nil, invalid("update_mask: field path %q descends into a field that is not a message", p)
		}
		fd := fieldByName(md, segs[i])
		if fd == nil {
			return nil, invalid("update_mask: unknown field path %q: %s has no field %q", p, md.FullName(), segs[i])
		}
		if fd.IsMap() && i+1 < len(segs) {
			if i+2 != len(segs) || fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() == protoreflect.MessageKind {
				return nil, invalid("update_mask: field path %q: only a single string map entry can follow map field %q", p, fd.Name())
			}
			steps = append(steps, maskStep{fd: fd, key: segs[i+1], isMap: true})
			return steps, nil
		}
		steps = append(steps, maskStep{fd: fd})
		if i+1 < len(segs) {
			if fd.IsList() || fd.IsMap() || fd.Kind() != protoreflect.MessageKind {
				return nil, invalid("update_mask: field path %q descends into %q, which is not a singular message", p, fd.Name())
			}
			md = fd.Message()
		} else {
			md = nil
		}
	}
	return steps, nil
}

// applyMask copies the masked paths from src to dst: a path present in src
// is set, absent is cleared. Paths naming the identifier, the etag or
// output-only fields are ignored, as AIP-203 asks.
func applyMask(dst, src *runpb.Service, paths []string) error {
	for _, p := range paths {
		if p == "*" {
			replaceWritable(dst, src)
			continue
		}
		steps, err := resolvePath(p)
		if err != nil {
			return err
		}
		if !writableTop(steps[0].fd) || slices.ContainsFunc(steps, func(s maskStep) bool { return outputOnly(s.fd) }) {
			continue
		}
		d, s := dst.ProtoReflect(), src.ProtoReflect()
		for i, st := range steps {
			last := i == len(steps)-1
			switch {
			case st.isMap:
				k := protoreflect.ValueOfString(st.key).MapKey()
				if s.Has(st.fd) && s.Get(st.fd).Map().Has(k) {
					d.Mutable(st.fd).Map().Set(k, s.Get(st.fd).Map().Get(k))
				} else if d.Has(st.fd) {
					d.Mutable(st.fd).Map().Clear(k)
				}
			case last:
				if s.Has(st.fd) {
					d.Set(st.fd, s.Get(st.fd))
				} else {
					d.Clear(st.fd)
				}
			default:
				d = d.Mutable(st.fd).Message()
				s = s.Get(st.fd).Message()
			}
		}
	}
	return nil
}
