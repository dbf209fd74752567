package gcp

import (
	"testing"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

func TestParseServiceName(t *testing.T) {
	t.Parallel()
	want := iapsetup.ServiceRef{Project: "p", Region: "r", Name: "s"}
	for _, name := range []string{
		"projects/p/locations/r/services/s",
		"//run.googleapis.com/projects/p/locations/r/services/s",
		"https://run.googleapis.com/v2/projects/p/locations/r/services/s",
	} {
		if got, err := parseServiceName(name); err != nil || got != want {
			t.Errorf("parseServiceName(%q) = %+v, %v; want %+v", name, got, err, want)
		}
	}
	for _, name := range []string{
		"", "projects/p/locations/r/services", "projects/p/locations/r/services/s/x",
		"projects//locations/r/services/s", "projects/p/locations/r/services/a b", "projects/p/regions/r/services/s",
	} {
		if got, err := parseServiceName(name); err == nil {
			t.Errorf("parseServiceName(%q) = %+v, want an error", name, got)
		}
	}
}

func TestParseBackendRef(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]iapsetup.BackendRef{
		"https://www.googleapis.com/compute/v1/projects/p/global/backendServices/b": {Project: "p", Name: "b"},
		"projects/p/regions/r/backendServices/b":                                    {Project: "p", Region: "r", Name: "b"},
	} {
		if got, err := ParseBackendRef(in); err != nil || got != want {
			t.Errorf("ParseBackendRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "projects/p/global/backendServices/", "projects/p/regions/r/networkEndpointGroups/n", "projects/p/global/urlMaps/b"} {
		if got, err := ParseBackendRef(in); err == nil {
			t.Errorf("ParseBackendRef(%q) = %+v, want an error", in, got)
		}
	}
}

func TestPathSegment(t *testing.T) {
	t.Parallel()
	neg := "https://www.googleapis.com/compute/v1/projects/p/regions/r/networkEndpointGroups/n"
	if got := pathSegment(neg, "projects"); got != "p" {
		t.Errorf("project: %q", got)
	}
	if got := pathSegment(neg, "regions"); got != "r" {
		t.Errorf("region: %q", got)
	}
	if got := pathSegment("projects/p/global/networkEndpointGroups/n", "regions"); got != "" {
		t.Errorf("region of a global NEG: %q", got)
	}
}
