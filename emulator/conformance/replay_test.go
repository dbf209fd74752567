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

// A go-vcr cassette (SYNTHETIC, written by this project in the shape of
// k8s-config-connector's recorded cassettes) replays like an _http.log:
// its project, operation names, revision suffixes and run.app project
// hash become placeholders learnt from the emulator's answers, so a
// create, its poll, a read and a delete all match.
func TestCassetteReplay(t *testing.T) {
	const svc = `"name": "projects/example-project/locations/us-central1/services/web",
  "generation": "1", "uid": "u", "etag": "e", "createTime": "t", "updateTime": "t", "creator": "c", "lastModifier": "c",
  "ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "GA",
  "template": {"timeout": "300s", "serviceAccount": "123456789-compute@developer.gserviceaccount.com", "maxInstanceRequestConcurrency": 80,
    "containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello",
      "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true},
      "ports": [{"name": "http1", "containerPort": 8080}],
      "startupProbe": {"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1, "tcpSocket": {"port": 8080}}}]},
  "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]`
	const ready = `,
  "observedGeneration": "1",
  "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "t"},
  "conditions": [{"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "t"},
    {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "t"}],
  "latestReadyRevision": "projects/example-project/locations/us-central1/services/web/revisions/web-00001-abc",
  "latestCreatedRevision": "projects/example-project/locations/us-central1/services/web/revisions/web-00001-abc",
  "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
  "uri": "https://web-abcdefghij-uc.a.run.app"`
	indent := func(s string) string { return strings.ReplaceAll(s, "\n", "\n        ") }
	cassette := `---
version: 2
interactions:
  - id: 0
    request:
      body: |
        {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}
      url: https://run.googleapis.com/v2/projects/example-project/locations/us-central1/services?alt=json&serviceId=web
      method: POST
    response:
      body: |
        {"name": "projects/example-project/locations/us-central1/operations/91ecdd0d-9cab-422c-b991-3936eb579e76",
         "metadata": {"@type": "type.googleapis.com/google.cloud.run.v2.Service", ` + indent(strings.Replace(svc, `"ingress": "INGRESS_TRAFFIC_ALL", `, "", 1)) + `,
          "terminalCondition": {"state": "CONDITION_PENDING"}, "reconciling": true}}
      code: 200
  - id: 1
    request:
      body: ""
      url: https://run.googleapis.com/v2/projects/example-project/locations/us-central1/operations/91ecdd0d-9cab-422c-b991-3936eb579e76?alt=json
      method: GET
    response:
      body: |
        {"name": "projects/example-project/locations/us-central1/operations/91ecdd0d-9cab-422c-b991-3936eb579e76", "done": true,
         "metadata": {"@type": "type.googleapis.com/google.cloud.run.v2.Service", ` + indent(svc+ready) + `},
         "response": {"@type": "type.googleapis.com/google.cloud.run.v2.Service", ` + indent(svc+ready) + `}}
      code: 200
  - id: 2
    request:
      body: ""
      url: https://run.googleapis.com/v2/projects/example-project/locations/us-central1/services/web?alt=json
      method: GET
    response:
      body: |
        {` + indent(svc+ready) + `}
      code: 200
`
	rep, err := Run(map[string]io.Reader{"f/_vcr_cassettes/tf.yaml": strings.NewReader(cassette)})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.ByAPI["run"]
	if c == nil || c.Replayed != 3 || c.Matched != 3 {
		t.Errorf("run counts %+v, want 3 replayed and matched; deviations %+v", c, rep.Deviations)
	}
}
