package cloudrun

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// reservedPrefixes are the label/annotation namespaces Cloud Run v2 rejects.
var reservedPrefixes = []string{
	"run.googleapis.com/",
	"cloud.googleapis.com/",
	"serving.knative.dev/",
	"autoscaling.knative.dev/",
}

const (
	maxLabels          = 64
	maxDescription     = 512
	maxAnnotationBytes = 256 * 1024
)

var (
	labelKeyRE   = regexp.MustCompile(`^\p{Ll}[\p{Ll}\p{Lo}\p{Nd}_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[\p{Ll}\p{Lo}\p{Nd}_-]{0,63}$`)
	// Kubernetes annotation keys: [DNS-1123 subdomain "/"] name.
	annotationPrefixRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	annotationNameRE   = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	revisionRE         = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

func reservedPrefix(key string) (string, bool) {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(key, p) {
			return p, true
		}
	}
	return "", false
}

// validateLabels applies the GCP label rules and Cloud Run's reserved
// namespaces; messages follow the ones Cloud Run returns.
func validateLabels(field string, m map[string]string) error {
	if len(m) > maxLabels {
		return invalid("%s: at most %d labels are allowed, got %d", field, maxLabels, len(m))
	}
	for _, k := range sortedKeys(m) {
		if p, ok := reservedPrefix(k); ok {
			return invalid("%s: label key %q uses the reserved namespace %q; Cloud Run API v2 does not support labels in the run.googleapis.com, cloud.googleapis.com, serving.knative.dev or autoscaling.knative.dev namespaces", field, k, strings.TrimSuffix(p, "/"))
		}
		if !labelKeyRE.MatchString(k) {
			return invalid("%s: At least one label does not conform to GCP naming style. Label key '%s' violates format constraints. The key must start with a lowercase character, can only contain lowercase letters, numeric characters, underscores and dashes. The key can be at most 63 characters long. International characters are allowed.", field, k)
		}
		if v := m[k]; !labelValueRE.MatchString(v) {
			return invalid("%s: At least one label does not conform to GCP naming style. Label value '%s' violates format constraints. The value can only contain lowercase letters, numeric characters, underscores and dashes. The value can be at most 63 characters long. International characters are allowed.", field, v)
		}
	}
	return nil
}

// validateAnnotations applies Kubernetes annotation key rules, the 256 KiB
// total size limit and Cloud Run's reserved namespaces.
func validateAnnotations(field string, m map[string]string) error {
	size := 0
	for _, k := range sortedKeys(m) {
		size += len(k) + len(m[k])
		if p, ok := reservedPrefix(k); ok {
			return invalid("%s: annotation key %q uses the reserved namespace %q; Cloud Run API v2 does not support annotations in the run.googleapis.com, cloud.googleapis.com, serving.knative.dev or autoscaling.knative.dev namespaces", field, k, strings.TrimSuffix(p, "/"))
		}
		prefix, name, hasPrefix := strings.Cut(k, "/")
		if !hasPrefix {
			name, prefix = prefix, ""
		}
		okPrefix := !hasPrefix || (len(prefix) <= 253 && annotationPrefixRE.MatchString(prefix))
		if !okPrefix || len(name) > 63 || !annotationNameRE.MatchString(name) {
			return invalid("%s: annotation key %q is invalid: want an optional DNS subdomain prefix and '/', then a name of at most 63 characters of alphanumerics, '-', '_' and '.', beginning and ending with an alphanumeric", field, k)
		}
	}
	if size > maxAnnotationBytes {
		return invalid("%s: total size of annotations must be at most %d bytes, got %d", field, maxAnnotationBytes, size)
	}
	return nil
}

// validateService checks what the emulator enforces on a Service written by
// a caller (after update-mask merging): required template with at least one
// container image, labels and annotations on the service and its template,
// description length, defined enum values everywhere and a well-formed
// traffic split. field is the request's field name ("service").
func validateService(field string, svc *runpb.Service) error {
	if err := checkEnums(field, svc.ProtoReflect()); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(svc.GetDescription()); n > maxDescription {
		return invalid("%s.description: at most %d characters are allowed, got %d", field, maxDescription, n)
	}
	if err := validateLabels(field+".labels", svc.GetLabels()); err != nil {
		return err
	}
	if err := validateAnnotations(field+".annotations", svc.GetAnnotations()); err != nil {
		return err
	}
	t := svc.GetTemplate()
	if t == nil {
		return invalid("%s.template: required field is not set", field)
	}
	if err := validateLabels(field+".template.labels", t.GetLabels()); err != nil {
		return err
	}
	if err := validateAnnotations(field+".template.annotations", t.GetAnnotations()); err != nil {
		return err
	}
	if len(t.GetContainers()) == 0 {
		return invalid("%s.template.containers: at least one container is required", field)
	}
	for i, c := range t.GetContainers() {
		if c.GetImage() == "" {
			return invalid("%s.template.containers[%d].image: required field is not set", field, i)
		}
	}
	return validateTraffic(field+".traffic", svc.GetTraffic())
}

func validateTraffic(field string, ts []*runpb.TrafficTarget) error {
	if len(ts) == 0 {
		return nil
	}
	sum := 0
	for i, t := range ts {
		f := fmt.Sprintf("%s[%d]", field, i)
		if t.GetPercent() < 0 || t.GetPercent() > 100 {
			return invalid("%s.percent: must be between 0 and 100, got %d", f, t.GetPercent())
		}
		switch t.GetType() {
		case runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION:
			if t.GetRevision() == "" {
				return invalid("%s.revision: required when type is TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", f)
			}
		case runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST:
			if t.GetRevision() != "" {
				return invalid("%s.revision: must be empty when type is TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", f)
			}
		}
		sum += int(t.GetPercent())
	}
	if sum != 100 {
		return invalid("%s: traffic percentages must add up to 100, got %d", field, sum)
	}
	return nil
}

// checkRevisionName enforces that a caller-chosen revision name is prefixed
// by the service name.
func checkRevisionName(field, serviceID, rev string) error {
	if rev == "" {
		return nil
	}
	if !strings.HasPrefix(rev, serviceID+"-") || !revisionRE.MatchString(rev) {
		return invalid("%s: revision name %q must be prefixed by the service name %q and a hyphen, contain only lowercase letters, digits and hyphens, not end with a hyphen, and have at most 63 characters", field, rev, serviceID)
	}
	return nil
}

// checkEnums rejects enum values that the proto does not define, anywhere in m.
func checkEnums(path string, m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		f := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					err = checkEnums(fmt.Sprintf("%s[%q]", f, k.String()), mv.Message())
					return err == nil
				})
			}
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkValue(fmt.Sprintf("%s[%d]", f, i), fd, l.Get(i))
			}
		default:
			err = checkValue(f, fd, v)
		}
		return err == nil
	})
	return err
}

func checkValue(f string, fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			return invalid("%s: invalid value %d for enum %s", f, v.Enum(), fd.Enum().FullName())
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkEnums(f, v.Message())
	}
	return nil
}
