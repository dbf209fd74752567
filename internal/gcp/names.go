package gcp

import (
	"fmt"
	"strings"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// parseServiceName parses projects/P/locations/R/services/S (a leading
// "//run.googleapis.com/" or "https://run.googleapis.com/v2/" prefix is
// accepted, as audit logs and URLs carry them). Every part must be
// non-empty and free of spaces.
func parseServiceName(name string) (iapsetup.ServiceRef, error) {
	s := name
	for _, prefix := range []string{"//run.googleapis.com/", "https://run.googleapis.com/v2/", "https://run.googleapis.com/v1/"} {
		s = strings.TrimPrefix(s, prefix)
	}
	parts := strings.Split(s, "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "services" {
		return iapsetup.ServiceRef{}, fmt.Errorf("service name %q: want projects/P/locations/R/services/S", name)
	}
	for _, p := range []struct {
		what string
		i    int
	}{{"project", 1}, {"region", 3}, {"service", 5}} {
		if v := parts[p.i]; v == "" || strings.Contains(v, " ") {
			return iapsetup.ServiceRef{}, fmt.Errorf("service name %q: %s %q is empty or contains a space", name, p.what, v)
		}
	}
	return iapsetup.ServiceRef{Project: parts[1], Region: parts[3], Name: parts[5]}, nil
}

// ParseBackendRef parses a backend service URL or path
// (.../projects/P/global/backendServices/B or .../projects/P/regions/R/backendServices/B).
func ParseBackendRef(s string) (iapsetup.BackendRef, error) {
	parts := strings.Split(iapsetup.ResourcePath(s), "/")
	switch {
	case len(parts) == 5 && parts[0] == "projects" && parts[2] == "global" && parts[3] == "backendServices" && parts[1] != "" && parts[4] != "":
		return iapsetup.BackendRef{Project: parts[1], Name: parts[4]}, nil
	case len(parts) == 6 && parts[0] == "projects" && parts[2] == "regions" && parts[4] == "backendServices" && parts[1] != "" && parts[3] != "" && parts[5] != "":
		return iapsetup.BackendRef{Project: parts[1], Region: parts[3], Name: parts[5]}, nil
	}
	return iapsetup.BackendRef{}, fmt.Errorf("backend service %q: want projects/P/global/backendServices/B or projects/P/regions/R/backendServices/B", s)
}

// pathSegment returns the segment after "key/" in the resource path of
// the URL or path s ("" when there is none): pathSegment(selfLink,
// "projects") is the project of a Compute resource.
func pathSegment(s, key string) string {
	parts := strings.Split(iapsetup.ResourcePath(s), "/")
	for i := 0; i+1 < len(parts); i += 2 {
		if parts[i] == key {
			return parts[i+1]
		}
	}
	return ""
}
