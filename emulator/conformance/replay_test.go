package conformance

import (
	"io"
	"strings"
	"testing"
)

// A file that k8s-config-connector regenerated against its own Cloud Run
// mock (the mock's constant caller in an answer) is skipped as a whole and
// counted as mock, its other exchanges included; the same exchanges
// without the constant are replayed.
func TestRegeneratedFileCountedAsMock(t *testing.T) {
	const get404 = `GET https://run.googleapis.com/v2/projects/${projectId}/locations/us-central1/services/svc-a?alt=json

404 Not Found
Content-Type: application/json; charset=UTF-8

{
  "error": {
    "code": 404,
    "message": "service \"projects/${projectId}/locations/us-central1/services/svc-a\" not found",
    "status": "NOT_FOUND"
  }
}
`
	const mockAnswer = `
---

GET https://run.googleapis.com/v2/projects/${projectId}/locations/us-central1/services/svc-b?alt=json

200 OK
Content-Type: application/json; charset=UTF-8

{
  "creator": "${creatorID}",
  "lastModifier": "test@google.com",
  "name": "projects/${projectId}/locations/us-central1/services/svc-b"
}
`
	for _, tc := range []struct {
		name                 string
		log                  string
		wantReplayed, wantMk int
	}{
		{"recorded", get404, 1, 0},
		{"regenerated", get404 + mockAnswer, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(map[string]io.Reader{"f/_http.log": strings.NewReader(tc.log)})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.ByAPI["run"]
			if c == nil {
				t.Fatalf("no run counts: %+v", rep.ByAPI)
			}
			if c.Replayed != tc.wantReplayed || c.Mock != tc.wantMk {
				t.Errorf("run: %d replayed, %d mock; want %d, %d", c.Replayed, c.Mock, tc.wantReplayed, tc.wantMk)
			}
			if tc.wantReplayed > 0 && c.Matched != c.Replayed {
				t.Errorf("deviations: %+v", rep.Deviations)
			}
		})
	}
}
