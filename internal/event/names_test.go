package event

import (
	"errors"
	"strings"
	"testing"
)

// TestDecodeRejectsInvalidNames: an event naming a resource Google could
// never have created is malformed (rejected with the rule it breaks), on
// every path: audit-log entries (v1 and v2 names, Compute names) and replay
// messages. Before the name rules the decoder accepted any segment of up to
// 128 letters, digits, dots, colons and underscores.
func TestDecodeRejectsInvalidNames(t *testing.T) {
	long := func(n int) string { return "a" + strings.Repeat("b", n-1) }
	for _, tc := range []struct {
		name                     string
		project, region, service string
		wantRule                 string // "" = valid
	}{
		{"valid", "p1", "us-central1", "web", ""},
		{"valid 49-character service", "my-project", "europe-west4", long(49), ""},
		{"valid project number", "123456789012", "us-central1", "web", ""},
		{"valid domain-scoped project", "example.com:my-project", "northamerica-northeast2", "web", ""},
		{"service with dots", "p1", "us-central1", "a..b", ServiceNameRule},
		{"service of 50 characters", "p1", "us-central1", long(50), ServiceNameRule},
		{"service of 128 characters", "p1", "us-central1", long(128), ServiceNameRule},
		{"service in upper case", "p1", "us-central1", "Web", ServiceNameRule},
		{"service starting with a digit", "p1", "us-central1", "1web", ServiceNameRule},
		{"service ending with a hyphen", "p1", "us-central1", "web-", ServiceNameRule},
		{"service with underscore", "p1", "us-central1", "my_web", ServiceNameRule},
		{"project of 31 characters", long(31), "us-central1", "web", ProjectRule},
		{"project with dots", "a..b", "us-central1", "web", ProjectRule},
		{"project ending with a hyphen", "my-project-", "us-central1", "web", ProjectRule},
		{"project in upper case", "My-Project", "us-central1", "web", ProjectRule},
		{"project number starting with 0", "0123456", "us-central1", "web", ProjectRule},
		{"project with empty domain", ":my-project", "us-central1", "web", ProjectRule},
		{"region without digits", "p1", "us-central", "web", RegionRule},
		{"region of one word", "p1", "central1", "web", RegionRule},
		{"region with dots", "p1", "us..central1", "web", RegionRule},
		{"region of 128 characters", "p1", "us-" + long(124) + "1", "web", RegionRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(path string, err error) {
				t.Helper()
				switch {
				case tc.wantRule == "" && err != nil:
					t.Errorf("%s: error %v, want none", path, err)
				case tc.wantRule != "" && !errors.Is(err, ErrMalformed):
					t.Errorf("%s: error %v, want ErrMalformed", path, err)
				case tc.wantRule != "" && !strings.Contains(err.Error(), tc.wantRule):
					t.Errorf("%s: error %q does not state the rule %q", path, err, tc.wantRule)
				}
			}
			v2 := "projects/" + tc.project + "/locations/" + tc.region + "/services/" + tc.service
			_, err := DecodeLogEntry(mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, v2)))
			check("v2 audit entry", err)
			v1 := "namespaces/" + tc.project + "/services/" + tc.service
			_, err = DecodeLogEntry(mustJSON(t, synthEntry(RunServiceName, RunV1ReplaceService, v1, withLocationLabel(tc.region))))
			check("v1 audit entry", err)
			err = ReplayMessage{Version: ReplayVersion, Project: tc.project, Region: tc.region, Service: tc.service}.Validate()
			check("replay message", err)
		})
	}
}

func TestDecodeRejectsInvalidComputeNames(t *testing.T) {
	for _, tc := range []struct {
		name, resource string
		wantRule       string
	}{
		{"valid", "projects/p1/regions/us-central1/backendServices/be-1", ""},
		{"name with dots", "projects/p1/regions/us-central1/backendServices/a..b", ComputeNameRule},
		{"name of 64 characters", "projects/p1/regions/us-central1/backendServices/a" + strings.Repeat("b", 63), ComputeNameRule},
		{"region of one word", "projects/p1/regions/central1/backendServices/be", RegionRule},
		{"project with underscore", "projects/my_project/regions/us-central1/backendServices/be", ProjectRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := synthEntry(ComputeServiceName, "v1.compute.regionBackendServices.patch", tc.resource, withOp(false, true))
			_, err := DecodeLogEntry(mustJSON(t, e))
			switch {
			case tc.wantRule == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantRule != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantRule)):
				t.Errorf("error %v, want ErrMalformed stating %q", err, tc.wantRule)
			}
		})
	}
}
