package iapsetup

import (
	"strings"
	"testing"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// Unenforced reports what planFor decides from the labels alone, and
// nothing for a service labelled iap=enabled.
func TestUnenforced(t *testing.T) {
	t.Parallel()
	if res := Unenforced(tService()); res != nil {
		t.Fatalf("labelled iap=enabled: %+v, want nil", res)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   outcome.Kind
		reason string
		warn   string
	}{
		{"no label", map[string]string{"team": "web"}, outcome.Skipped, "has no iap label", ""},
		{"disabled", map[string]string{LabelKey: labelDisabled}, outcome.Skipped, "is labelled iap=disabled", ""},
		{"unknown value", map[string]string{LabelKey: "yes"}, outcome.Rejected, `label iap="yes" is not valid`, ""},
		{"look-alike key", map[string]string{"іap": labelEnabled}, outcome.Skipped, "has no iap label", "looks like"},
	} {
		s := tService(func(s *Service) { s.Labels = tc.labels })
		res := Unenforced(s)
		if res == nil {
			t.Errorf("%s: nil", tc.name)
			continue
		}
		if res.Outcome != tc.want || !strings.Contains(res.Reason, tc.reason) || res.Ref != s.Ref || res.Resource != s.Ref.String() || len(res.Steps)+len(res.Changes) != 0 {
			t.Errorf("%s: %s %q ref %s steps %d changes %d; want %s containing %q", tc.name, res.Outcome, res.Reason, res.Ref, len(res.Steps), len(res.Changes), tc.want, tc.reason)
		}
		if got := strings.Join(res.Warnings, "\n"); tc.warn == "" && got != "" || !strings.Contains(got, tc.warn) {
			t.Errorf("%s: warnings %q, want %q", tc.name, got, tc.warn)
		}
	}
	// A managed marker is not verified: skipped, never opted-out.
	s := tService(func(s *Service) {
		s.Labels = map[string]string{}
		s.Annotations = map[string]string{managedAnnotation: managedValue}
	})
	if res := Unenforced(s); res == nil || res.Outcome != outcome.Skipped {
		t.Errorf("unlabelled with a marker: %+v, want skipped", res)
	}
}
