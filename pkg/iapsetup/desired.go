package iapsetup

import (
	"fmt"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"strings"
)

// Label and annotation keys iapguard reads and writes on Cloud Run services.
const (
	// LabelKey is the service label that opts a service in:
	// iap=enabled enforces, iap=disabled (or no label) leaves it alone.
	LabelKey = "iap"
	// labelEnabled and labelDisabled are the allowed values of LabelKey.
	labelEnabled  = "enabled"
	labelDisabled = "disabled"
	// managedAnnotation marks a service iapguard enforces, so that removing
	// the label later is reported as opted-out rather than silently
	// forgotten. Every reconcile of an enforced service that lacks it plans
	// it: in the same UpdateService call as the first remediation, or alone
	// when nothing else is to be written. iapguard never removes it.
	managedAnnotation = "iapguard.dev/managed"
	// managedValue is the value of managedAnnotation written without an
	// access-record key (and before markers were signed); with a key the
	// value is signed (see marker.go) and only a verified marker makes a
	// lost label opted-out.
	managedValue = "true"
)

// Intent is what the labels ask for.
type Intent int

const (
	// Unmanaged: label absent or iap=disabled; iapguard changes nothing.
	Unmanaged Intent = iota
	// Enforce: iap=enabled; the service must comply.
	Enforce
	// Invalid: the label has a value iapguard does not know.
	Invalid
)

func (i Intent) String() string {
	switch i {
	case Enforce:
		return "enforce"
	case Invalid:
		return "invalid"
	}
	return "unmanaged"
}

// Desired is the desired state read from a service's labels and annotations.
type Desired struct {
	Intent Intent
	// Label is the raw value of the iap label; LabelSet reports whether the
	// label is present at all.
	Label    string
	LabelSet bool
	// Managed reports whether the service carries the annotation
	// iapguard.dev/managed with a value iapguard writes (isManagedMarker);
	// whether iapguard can verify it wrote it is decided by the reconciler
	// (observed.marker).
	Managed bool
	// Access is the value of the iap-access label (the access policy name);
	// AccessSet reports whether the label is present.
	Access    string
	AccessSet bool
	// Granted is the raw value of the annotation
	// iapguard.dev/access-granted: the members iapguard granted earlier.
	Granted string
}

// DesiredFor reads the desired state from s. A nil service is unmanaged.
func DesiredFor(s *Service) Desired {
	if s == nil {
		return Desired{}
	}
	d := Desired{Managed: isManagedMarker(s.Annotations[managedAnnotation]), Granted: s.Annotations[accessAnnotation]}
	d.Label, d.LabelSet = s.Labels[LabelKey]
	d.Access, d.AccessSet = s.Labels[access.LabelKey]
	switch {
	case !d.LabelSet || d.Label == labelDisabled:
		d.Intent = Unmanaged
	case d.Label == labelEnabled:
		d.Intent = Enforce
	default:
		d.Intent = Invalid
	}
	return d
}

// Unenforced reports, from s alone and without any call, what Reconcile
// reports for a service whose labels do not ask for enforcement: skipped
// (no iap label, or iap=disabled) or rejected (a value iapguard does not
// know), with the reason and any warning about a look-alike label. It is
// nil for a service labelled iap=enabled. Unlike Reconcile it does not
// verify a managed marker, so it never reports opted-out. Audits use it
// for the services they list but do not reconcile.
func Unenforced(s *Service) *Result {
	d := DesiredFor(s)
	if d.Intent == Enforce {
		return nil
	}
	res := &Result{}
	if s != nil {
		res.Ref, res.Resource = s.Ref, s.Ref.String()
	}
	res.fill(planFor(d, &observed{Service: s}), nil)
	return res
}

// reason explains a non-enforcing intent.
func (d Desired) reason(ref ServiceRef, marker *markerState) string {
	switch d.Intent {
	case Invalid:
		return fmt.Sprintf("label %s=%q is not valid: allowed values are %q (enforce IAP) and %q (leave alone); fix: gcloud run services update %s --project=%s --region=%s --update-labels=%s=%s",
			LabelKey, d.Label, labelEnabled, labelDisabled, ref.Name, ref.Project, ref.Region, LabelKey, labelEnabled)
	case Unmanaged:
		what := "has no " + LabelKey + " label"
		if d.LabelSet {
			what = "is labelled " + LabelKey + "=" + strings.TrimSpace(d.Label)
		}
		if d.Managed && marker != nil && marker.verified {
			return "service " + what + " but iapguard managed it before (annotation " + managedAnnotation +
				"): iapguard no longer enforces IAP on it and turned nothing off; IAP, ingress and IAM stay as they are"
		}
		if d.Managed {
			why := "it was not verified"
			if marker != nil && marker.why != "" {
				why = marker.why
			}
			return "service " + what + "; iapguard enforces IAP only on services labelled " + LabelKey + "=" + labelEnabled +
				". It carries the annotation " + managedAnnotation + ", but iapguard cannot verify that it wrote it (" + why +
				"), so this is not reported as opted-out; if iapguard did enforce IAP here, IAP, ingress and IAM stay as they are"
		}
		return "service " + what + "; iapguard enforces IAP only on services labelled " + LabelKey + "=" + labelEnabled
	}
	return ""
}
