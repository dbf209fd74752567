package compute

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/grpc/codes"
)

// TestRecordedDefaults holds server defaults and zero values that recorded
// real Compute traffic shows (k8s-config-connector v1.155.1's fixtures,
// replayed by emulator/conformance).
func TestRecordedDefaults(t *testing.T) {
	const regional = "/compute/v1/projects/" + projID + "/regions/" + region + "/"
	const global = "/compute/v1/projects/" + projID + "/global/"
	for _, tc := range []struct {
		name, path, body, get string
		want                  map[string]any // members of the GET answer (nil: must be absent)
	}{{
		// An empty oauth2ClientSecret that is sent is hashed: SHA-256("").
		name: "empty secret sent", path: global + "backendServices",
		body: `{"name":"bs","iap":{"enabled":false,"oauth2ClientId":"","oauth2ClientSecret":""}}`,
		get:  global + "backendServices/bs",
		want: map[string]any{"iap": map[string]any{"enabled": false, "oauth2ClientId": "",
			"oauth2ClientSecretSha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
	}, {
		name: "no secret sent", path: global + "backendServices",
		body: `{"name":"bs","iap":{"enabled":false}}`,
		get:  global + "backendServices/bs",
		want: map[string]any{"iap": map[string]any{"enabled": false, "oauth2ClientId": ""}, "enableCDN": nil},
	}, {
		name: "regional HTTP port", path: regional + "backendServices",
		body: `{"name":"bs","protocol":"HTTP","loadBalancingScheme":"INTERNAL_MANAGED"}`,
		get:  regional + "backendServices/bs",
		want: map[string]any{"port": 80.0, "portName": "http"},
	}, {
		name: "regional TCP has no port", path: regional + "backendServices",
		body: `{"name":"bs","protocol":"TCP","loadBalancingScheme":"INTERNAL_MANAGED"}`,
		get:  regional + "backendServices/bs",
		want: map[string]any{"port": nil, "portName": nil},
	}, {
		name: "url map zero values", path: global + "urlMaps",
		body: `{"name":"um","defaultUrlRedirect":{"hostRedirect":"x.example"},"tests":[{"host":"h","path":"/","expectedRedirectResponseCode":301,"expectedOutputUrl":"https://x.example/"}],
			"defaultRouteAction":{"retryPolicy":{"numRetries":1,"perTryTimeout":{"seconds":"30"}}}}`,
		get: global + "urlMaps/um",
		want: map[string]any{
			"tests":              []any{map[string]any{"host": "h", "path": "/", "description": "", "expectedRedirectResponseCode": 301.0, "expectedOutputUrl": "https://x.example/"}},
			"defaultRouteAction": map[string]any{"retryPolicy": map[string]any{"numRetries": 1.0, "perTryTimeout": map[string]any{"seconds": "30", "nanos": 0.0}}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if code, m := e.raw(t, "POST", tc.path, tc.body); code != 200 {
				t.Fatalf("insert: %d %v", code, m)
			}
			code, m := e.raw(t, "GET", tc.get, "")
			if code != 200 {
				t.Fatalf("get: %d %v", code, m)
			}
			for k, want := range tc.want {
				got, present := m[k]
				if want == nil {
					if present {
						t.Errorf("%s = %#v, want it absent", k, got)
					}
					continue
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", k, diff)
				}
			}
		})
	}
}

// TestRefusedMutationKeepsFailOperationsRule: a mutation Compute refuses
// starts no operation, so it must not take a failOperations rule; the next
// accepted one does, and its operation ends with the error.
func TestRefusedMutationKeepsFailOperationsRule(t *testing.T) {
	e := newEnv(t)
	e.backend(t, "f-bs")
	if err := e.c.Faults.FailOperations("compute.backendServices.patch", 1, codes.Unavailable); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Fingerprint: "AAAAAAAAAAA=", Description: "d"}).Do()
	apiErr(t, err, 412, "conditionNotMet")
	op, err := e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Description: "d"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.GlobalOperations.Wait(projID, op.Name).Do()
	if err != nil {
		t.Fatal(err)
	}
	if got.Error == nil || len(got.Error.Errors) == 0 || got.Error.Errors[0].Code != "UNAVAILABLE" {
		t.Errorf("operation of the accepted patch: error %+v, want UNAVAILABLE", got.Error)
	}
	bs, err := e.svc.BackendServices.Get(projID, "f-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if bs.Description == "d" {
		t.Error("the failed operation's change was kept")
	}
}
