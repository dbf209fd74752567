package conformance

import (
	"io"
	"strings"
	"testing"
)

const getMissing = `GET https://compute.googleapis.com/compute/v1/projects/${projectId}/global/urlMaps/${urlMapID}
Content-Type: application/json

404 Not Found
Content-Type: application/json; charset=UTF-8

{
  "error": {
    "code": 404,
    "errors": [{"domain": "global", "message": "The resource 'projects/${projectId}/global/urlMaps/${urlMapID}' was not found", "reason": "notFound"}],
    "message": "The resource 'projects/${projectId}/global/urlMaps/${urlMapID}' was not found"
  }
}
`

// mockLRO is the answer k8s-config-connector's mocks give an insert
// (mockgcp/mockcompute/operations.go, newLRO): DONE, progress 0, no target.
const mockLRO = `POST https://compute.googleapis.com/compute/v1/projects/${projectId}/global/urlMaps
Content-Type: application/json

{"name": "${urlMapID}", "defaultUrlRedirect": {"hostRedirect": "example.com"}}

200 OK
Content-Type: application/json; charset=UTF-8

{
  "id": "000000000000000000000",
  "insertTime": "2024-04-01T12:34:56.123456Z",
  "kind": "compute#operation",
  "name": "${operationID}",
  "progress": 0,
  "selfLink": "https://www.googleapis.com/compute/v1/projects/${projectId}/global/operations/${operationID}",
  "startTime": "2024-04-01T12:34:56.123456Z",
  "status": "DONE"
}
`

// TestMockComputeLROFile: one exchange with the mocks' fingerprint makes the
// whole file mock-generated (a fixture's log is written by one run against
// one target), so none of it is replayed.
func TestMockComputeLROFile(t *testing.T) {
	for _, tc := range []struct {
		name          string
		log           string
		mock, replays int
	}{
		{"real", getMissing, 0, 1},
		{"mock LRO", getMissing + "\n---\n\n" + mockLRO, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(map[string]io.Reader{"f/_http.log": strings.NewReader(tc.log)})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.ByAPI["compute"]
			if c == nil || c.Mock != tc.mock || c.Replayed != tc.replays {
				t.Errorf("counts %+v, want mock %d replayed %d", c, tc.mock, tc.replays)
			}
		})
	}
}

func TestComputeLinkVersion(t *testing.T) {
	for in, want := range map[string]string{
		"https://www.googleapis.com/compute/beta/projects/p/global/healthChecks/h": "https://www.googleapis.com/compute/v1/projects/p/global/healthChecks/h",
		"https://compute.googleapis.com/compute/beta/projects/p/regions/r":         "https://compute.googleapis.com/compute/v1/projects/p/regions/r",
		"https://www.googleapis.com/compute/v1/projects/p":                         "https://www.googleapis.com/compute/v1/projects/p",
		"beta": "beta",
	} {
		if got := computeLink(in); got != want {
			t.Errorf("computeLink(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWithFingerprint(t *testing.T) {
	b := &bindings{fingerprints: map[string]string{}}
	const u = "http://h/compute/v1/projects/p/global/urlMaps/m"
	b.learnFingerprint(u+"?alt=json", []byte(`{"name":"m","fingerprint":"new=","labelFingerprint":"lab="}`))
	for _, tc := range []struct{ method, body, want string }{
		{"PUT", `{"name":"m","fingerprint":"abcdef0123A=","n":12345678901234567890}`, `{"fingerprint":"new=","n":12345678901234567890,"name":"m"}`},
		{"PATCH", `{"fingerprint":"abcdef0123A="}`, `{"fingerprint":"new="}`},
		{"PUT", `{"name":"m"}`, `{"name":"m"}`},
		{"POST", `{"fingerprint":"x"}`, `{"fingerprint":"x"}`},
	} {
		if got := b.withFingerprint(tc.method, u, tc.body); got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.method, tc.body, got, tc.want)
		}
	}
	for _, tc := range []struct{ method, body, want string }{
		{"POST", `{"labelFingerprint":"abcdef0123A=","labels":{"a":"b"}}`, `{"labelFingerprint":"lab=","labels":{"a":"b"}}`},
	} {
		if got := b.withFingerprint(tc.method, u+"/setLabels", tc.body); got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.method, tc.body, got, tc.want)
		}
	}
}

// TestReusedPlaceholder: the recorder names two backend services
// ${backendServiceID}; a recorded 404 for one that exists in the replay
// starts a second resource, and the teardown's DELETEs restore the names in
// reverse order, so every exchange matches.
func TestReusedPlaceholder(t *testing.T) {
	const base = "https://compute.googleapis.com/compute/v1/projects/${projectId}/global/backendServices"
	ex := func(method, url, body, status string) string {
		s := method + " " + url + "\nContent-Type: application/json\n\n"
		if body != "" {
			s += body + "\n\n"
		}
		return s + status + "\nContent-Type: application/json; charset=UTF-8\n"
	}
	insert := ex("POST", base, `{"name": "${backendServiceID}"}`, "200 OK")
	get := func(status string) string { return ex("GET", base+"/${backendServiceID}", "", status) }
	del := ex("DELETE", base+"/${backendServiceID}", "", "200 OK")
	log := strings.Join([]string{get("404 Not Found"), insert, get("200 OK"), get("404 Not Found"), insert,
		get("200 OK"), del, get("200 OK"), del, get("404 Not Found")}, "\n---\n\n")
	rep, err := Run(map[string]io.Reader{"f/_http.log": strings.NewReader(log)})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.ByAPI["compute"]; c == nil || c.Replayed != 10 || c.Matched != 10 {
		t.Errorf("counts %+v, want 10 replayed and matched; deviations %+v", c, rep.Deviations)
	}
}

// TestLiteralName: the recorder wrote ${backendServiceID} for the name in
// bodies and the literal name in URLs; the insert creates the literal name.
func TestLiteralName(t *testing.T) {
	const base = "https://compute.googleapis.com/compute/v1/projects/${projectId}/global/backendServices"
	log := "POST " + base + "\nContent-Type: application/json\n\n{\"name\": \"${backendServiceID}\"}\n\n200 OK\n\n---\n\n" +
		"GET " + base + "/web-${uniqueId}\n\n200 OK\n\n{\"name\": \"${backendServiceID}\"}\n"
	rep, err := Run(map[string]io.Reader{"f/_http.log": strings.NewReader(log)})
	if err != nil {
		t.Fatal(err)
	}
	// The recorded GET answer is cut down to its name: only the status and
	// the name must agree.
	for _, d := range rep.Deviations {
		for _, diff := range d.Diffs {
			if strings.HasPrefix(diff, "status") || strings.HasPrefix(diff, ".name") {
				t.Errorf("line %d: %s", d.Line, diff)
			}
		}
	}
	if c := rep.ByAPI["compute"]; c == nil || c.Replayed != 2 {
		t.Errorf("counts %+v, want 2 replayed", c)
	}
}
