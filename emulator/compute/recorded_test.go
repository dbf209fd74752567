package compute

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
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
		before                [][2]string    // path and body of inserts to make first
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
		name: "global internal self-managed defaults to HTTP", path: global + "backendServices",
		body: `{"name":"bs","loadBalancingScheme":"INTERNAL_SELF_MANAGED"}`,
		get:  global + "backendServices/bs",
		want: map[string]any{"protocol": "HTTP", "port": 80.0, "portName": "http"},
	}, {
		name: "default network", path: global + "forwardingRules",
		before: [][2]string{
			{global + "backendServices", `{"name":"bs","loadBalancingScheme":"INTERNAL_SELF_MANAGED"}`},
			{global + "urlMaps", `{"name":"um","defaultService":"global/backendServices/bs"}`},
			{global + "targetHttpProxies", `{"name":"tp","urlMap":"global/urlMaps/um"}`},
		},
		body: `{"name":"fr","loadBalancingScheme":"INTERNAL_SELF_MANAGED","network":"global/networks/default","IPAddress":"0.0.0.0","portRange":"80","target":"global/targetHttpProxies/tp"}`,
		get:  global + "forwardingRules/fr",
		want: map[string]any{"network": linkBase + "projects/" + projID + "/global/networks/default"},
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
			for _, b := range tc.before {
				if code, m := e.raw(t, "POST", b[0], b[1]); code != 200 {
					t.Fatalf("insert %s: %d %v", b[0], code, m)
				}
			}
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

// TestReferencedCollections: networks, subnetworks, health checks and
// target proxies exist as far as the load balancer needs them, and every
// reference to them is checked as Google checks it: a regional managed
// forwarding rule needs its network (with an active proxy-only subnet in
// the region), a backend service's health checks must exist, and nothing
// still referenced can be deleted.
func TestReferencedCollections(t *testing.T) {
	e := newEnv(t)
	const g = "/compute/v1/projects/" + projID + "/global/"
	const r = "/compute/v1/projects/" + projID + "/regions/" + region + "/"
	post := func(path string, body map[string]any) (int, map[string]any) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		return e.raw(t, "POST", path, string(b))
	}
	must := func(path string, body map[string]any) {
		t.Helper()
		if code, m := post(path, body); code != 200 {
			t.Fatalf("POST %s: %d %v", path, code, m)
		}
	}
	neg := e.neg(t, region, "r-neg", "hello")
	must(r+"backendServices", map[string]any{"name": "r-bs", "loadBalancingScheme": "EXTERNAL_MANAGED", "protocol": "HTTPS",
		"backends": []any{map[string]any{"group": neg}}})
	must(r+"urlMaps", map[string]any{"name": "r-um", "defaultService": "regions/" + region + "/backendServices/r-bs"})
	cert, key := selfSigned(t, "r.example.com")
	must(r+"sslCertificates", map[string]any{"name": "r-cert", "certificate": cert, "privateKey": key})
	must(r+"targetHttpsProxies", map[string]any{"name": "r-px", "urlMap": "regions/" + region + "/urlMaps/r-um",
		"sslCertificates": []any{"regions/" + region + "/sslCertificates/r-cert"}})
	rule := func(network string) map[string]any {
		fr := map[string]any{"name": "r-fr", "target": "regions/" + region + "/targetHttpsProxies/r-px",
			"loadBalancingScheme": "EXTERNAL_MANAGED", "portRange": "443"}
		if network != "" {
			fr["network"] = network
		}
		return fr
	}
	for _, tc := range []struct {
		name         string
		setup        func()
		network      string
		code         int
		reason, want string
	}{
		{name: "no network", code: 400, reason: "required", want: "Required field 'resource.network' not specified"},
		{name: "missing network", network: "global/networks/lb-net", code: 404, reason: "notFound",
			want: "The resource 'projects/" + projID + "/global/networks/lb-net' was not found"},
		{name: "no proxy-only subnet", network: "global/networks/lb-net", code: 400, reason: "invalid",
			setup: func() {
				must(g+"networks", map[string]any{"name": "lb-net", "autoCreateSubnetworks": false})
				must(r+"subnetworks", map[string]any{"name": "vms", "network": "global/networks/lb-net", "ipCidrRange": "10.1.0.0/24"})
			},
			want: "An active proxy-only subnetwork is required"},
		{name: "proxy-only subnet", network: "global/networks/lb-net", code: 200,
			setup: func() {
				must(r+"subnetworks", map[string]any{"name": "proxies", "network": "global/networks/lb-net",
					"ipCidrRange": "10.129.0.0/23", "purpose": "REGIONAL_MANAGED_PROXY", "role": "ACTIVE"})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			code, m := post(r+"forwardingRules", rule(tc.network))
			if code != tc.code {
				t.Fatalf("insert: %d %v, want %d", code, m, tc.code)
			}
			if tc.code != 200 {
				msg, _ := m["error"].(map[string]any)["message"].(string)
				errs, _ := m["error"].(map[string]any)["errors"].([]any)
				if !strings.Contains(msg, tc.want) || len(errs) == 0 || errs[0].(map[string]any)["reason"] != tc.reason {
					t.Errorf("error %v, want reason %s and %q", m, tc.reason, tc.want)
				}
			}
		})
	}
	// A proxy-only subnet needs a role, in Google's words.
	code, m := post(r+"subnetworks", map[string]any{"name": "p2", "network": "global/networks/lb-net",
		"ipCidrRange": "10.130.0.0/23", "purpose": "REGIONAL_MANAGED_PROXY"})
	if code != 400 || !strings.Contains(fmt.Sprint(m), "Subnetwork role must be specified when purpose set to REGIONAL_MANAGED_PROXY.") {
		t.Errorf("proxy-only subnet without role: %d %v", code, m)
	}
	// In use: the network (by the rule and the subnets) cannot be deleted.
	if code, m := e.raw(t, "DELETE", g+"networks/lb-net", ""); code != 400 || !strings.Contains(fmt.Sprint(m), "resourceInUseByAnotherResource") {
		t.Errorf("delete network in use: %d %v", code, m)
	}
	// A backend service's health check must exist, and stays while used.
	if code, m := post(g+"backendServices", map[string]any{"name": "hc-bs", "healthChecks": []any{"global/healthChecks/hc"}}); code != 404 {
		t.Errorf("backend service naming a missing health check: %d %v, want 404", code, m)
	}
	must(g+"healthChecks", map[string]any{"name": "hc", "type": "TCP", "tcpHealthCheck": map[string]any{"port": 443}})
	must(g+"backendServices", map[string]any{"name": "hc-bs", "healthChecks": []any{"global/healthChecks/hc"}})
	if code, m := e.raw(t, "DELETE", g+"healthChecks/hc", ""); code != 400 || !strings.Contains(fmt.Sprint(m), "The health_check resource") {
		t.Errorf("delete health check in use: %d %v", code, m)
	}
	if code, m := post(g+"healthChecks", map[string]any{"name": "hc2"}); code != 400 || !strings.Contains(fmt.Sprint(m), "Required field 'resource.type' not specified") {
		t.Errorf("health check without type: %d %v", code, m)
	}
}

// TestForwardingRuleLabels: insert ignores labels and only setLabels sets
// them, with the current labelFingerprint, answering an operation already
// DONE (recorded traffic).
func TestForwardingRuleLabels(t *testing.T) {
	e := newEnv(t)
	e.lb(t)
	e.ok(t)(e.svc.GlobalForwardingRules.Insert(projID, &compute.ForwardingRule{
		Name: "lab-fr", PortRange: "443", LoadBalancingScheme: "EXTERNAL_MANAGED", Labels: map[string]string{"a": "b"},
		Target: "global/targetHttpsProxies/hello-proxy",
	}).Do())
	fr, err := e.svc.GlobalForwardingRules.Get(projID, "lab-fr").Do()
	if err != nil {
		t.Fatal(err)
	}
	if len(fr.Labels) != 0 || fr.LabelFingerprint != "42WmSpB8rSM=" {
		t.Fatalf("after insert: labels %v fingerprint %q, want none and the empty set's", fr.Labels, fr.LabelFingerprint)
	}
	_, err = e.svc.GlobalForwardingRules.SetLabels(projID, "lab-fr", &compute.GlobalSetLabelsRequest{
		Labels: map[string]string{"a": "b"}, LabelFingerprint: "AAAAAAAAAAA="}).Do()
	apiErr(t, err, 412, "conditionNotMet")
	op, err := e.svc.GlobalForwardingRules.SetLabels(projID, "lab-fr", &compute.GlobalSetLabelsRequest{
		Labels: map[string]string{"a": "b"}, LabelFingerprint: fr.LabelFingerprint}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != "DONE" || op.Progress != 100 || op.EndTime == "" || op.OperationType != "setLabels" {
		t.Errorf("setLabels answered %s %d %q %q, want a DONE setLabels operation", op.Status, op.Progress, op.EndTime, op.OperationType)
	}
	fr, err = e.svc.GlobalForwardingRules.Get(projID, "lab-fr").Do()
	if err != nil || fr.Labels["a"] != "b" || fr.LabelFingerprint == "42WmSpB8rSM=" {
		t.Errorf("after setLabels: %v labels %v fingerprint %q", err, fr.Labels, fr.LabelFingerprint)
	}
	_, err = e.svc.GlobalForwardingRules.SetLabels(projID, "lab-fr", &compute.GlobalSetLabelsRequest{
		Labels: map[string]string{"Bad": "x"}, LabelFingerprint: fr.LabelFingerprint}).Do()
	apiErr(t, err, 400, "invalid")
	// setTarget moves the rule to another existing proxy (operation type
	// "SetTarget", as recorded) and keeps the old one deletable.
	e.ok(t)(e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{Name: "p2",
		UrlMap: "global/urlMaps/hello-map", SslCertificates: []string{"global/sslCertificates/hello-cert"}}).Do())
	_, err = e.svc.GlobalForwardingRules.SetTarget(projID, "lab-fr", &compute.TargetReference{Target: "global/targetHttpsProxies/nope"}).Do()
	apiErr(t, err, 404, "notFound")
	op, err = e.svc.GlobalForwardingRules.SetTarget(projID, "lab-fr", &compute.TargetReference{Target: "global/targetHttpsProxies/p2"}).Do()
	if got := e.ok(t)(op, err); got.OperationType != "SetTarget" {
		t.Errorf("setTarget operation type %q, want SetTarget", got.OperationType)
	}
	if fr, err = e.svc.GlobalForwardingRules.Get(projID, "lab-fr").Do(); err != nil || !strings.HasSuffix(fr.Target, "/targetHttpsProxies/p2") {
		t.Errorf("after setTarget: %v target %q", err, fr.Target)
	}
	// A network a global rule names must exist too.
	_, err = e.svc.GlobalForwardingRules.Insert(projID, &compute.ForwardingRule{
		Name: "net-fr", PortRange: "443", LoadBalancingScheme: "EXTERNAL_MANAGED", Network: "global/networks/nope",
		Target: "global/targetHttpsProxies/hello-proxy",
	}).Do()
	apiErr(t, err, 404, "notFound")
}

// TestPassthroughForwardingRule: a regional rule to a backend service (the
// internal passthrough Network Load Balancer), as recorded in
// k8s-config-connector's regionalcomputeforwardingrulefull-direct: no
// target, the backend service's scheme, a service name from the
// serviceLabel, an empty description printed; patch changes only
// allowGlobalAccess / allowPscGlobalAccess / networkTier.
func TestPassthroughForwardingRule(t *testing.T) {
	e := newEnv(t)
	e.ok(t)(e.svc.RegionBackendServices.Insert(projID, "us-central1", &compute.BackendService{
		Name: "ilb-bs", LoadBalancingScheme: "INTERNAL", Protocol: "TCP"}).Do())
	e.ok(t)(e.svc.RegionBackendServices.Insert(projID, "us-central1", &compute.BackendService{
		Name: "ext-bs", LoadBalancingScheme: "EXTERNAL", Protocol: "TCP"}).Do())
	for _, c := range []struct {
		name string
		fr   *compute.ForwardingRule
		code int
	}{
		{"scheme mismatch", &compute.ForwardingRule{Name: "a", BackendService: "regions/us-central1/backendServices/ext-bs", LoadBalancingScheme: "INTERNAL", AllPorts: true}, 400},
		{"target and backend service", &compute.ForwardingRule{Name: "b", BackendService: "regions/us-central1/backendServices/ilb-bs", Target: "regions/us-central1/targetHttpsProxies/x", LoadBalancingScheme: "INTERNAL"}, 400},
		{"missing backend service", &compute.ForwardingRule{Name: "c", BackendService: "regions/us-central1/backendServices/nope", LoadBalancingScheme: "INTERNAL"}, 404},
		{"portRange on internal", &compute.ForwardingRule{Name: "d", BackendService: "regions/us-central1/backendServices/ilb-bs", LoadBalancingScheme: "INTERNAL", PortRange: "80"}, 400},
		{"managed scheme", &compute.ForwardingRule{Name: "e", BackendService: "regions/us-central1/backendServices/ilb-bs", LoadBalancingScheme: "INTERNAL_MANAGED"}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.svc.ForwardingRules.Insert(projID, "us-central1", c.fr).Do()
			apiErr(t, err, c.code, map[int]string{400: "invalid", 404: "notFound"}[c.code])
		})
	}
	e.ok(t)(e.svc.ForwardingRules.Insert(projID, "us-central1", &compute.ForwardingRule{
		Name: "ilb", BackendService: "regions/us-central1/backendServices/ilb-bs", LoadBalancingScheme: "INTERNAL",
		AllPorts: true, ServiceLabel: "label", Labels: map[string]string{"a": "b"},
	}).Do())
	fr, err := e.svc.ForwardingRules.Get(projID, "us-central1", "ilb").Do()
	if err != nil {
		t.Fatal(err)
	}
	if want := "label.ilb.il4.us-central1.lb." + projID + ".internal"; fr.ServiceName != want || fr.Target != "" ||
		!strings.HasSuffix(fr.Network, "/global/networks/default") || fr.IPProtocol != "TCP" || len(fr.Labels) != 0 {
		t.Errorf("got service name %q target %q network %q protocol %q labels %v", fr.ServiceName, fr.Target, fr.Network, fr.IPProtocol, fr.Labels)
	}
	resp, err := http.Get(e.url + "/compute/v1/projects/" + projID + "/regions/us-central1/forwardingRules/ilb")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	err = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := raw["description"]; !ok || d != "" {
		t.Errorf("description printed as %v (present %v), want \"\"", d, ok)
	}
	// The backend service is in use now.
	_, err = e.svc.RegionBackendServices.Delete(projID, "us-central1", "ilb-bs").Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	e.ok(t)(e.svc.ForwardingRules.Patch(projID, "us-central1", "ilb", &compute.ForwardingRule{AllowGlobalAccess: true}).Do())
	if fr, err = e.svc.ForwardingRules.Get(projID, "us-central1", "ilb").Do(); err != nil || !fr.AllowGlobalAccess {
		t.Errorf("after patch: %v allowGlobalAccess %v", err, fr.AllowGlobalAccess)
	}
	_, err = e.svc.ForwardingRules.Patch(projID, "us-central1", "ilb", &compute.ForwardingRule{Description: "x"}).Do()
	apiErr(t, err, 400, "invalid")
}

// TestLegacyHealthCheckOperationLink: an operation on a legacy HTTP health
// check names it under healthChecks when read back (recorded traffic).
func TestLegacyHealthCheckOperationLink(t *testing.T) {
	e := newEnv(t)
	op, err := e.svc.HttpHealthChecks.Insert(projID, &compute.HttpHealthCheck{Name: "legacy"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(op.TargetLink, "/global/httpHealthChecks/legacy") {
		t.Errorf("insert answered targetLink %q", op.TargetLink)
	}
	got, err := e.svc.GlobalOperations.Get(projID, op.Name).Do()
	if err != nil || !strings.HasSuffix(got.TargetLink, "/global/healthChecks/legacy") {
		t.Errorf("read back: %v targetLink %q, want .../global/healthChecks/legacy", err, got.TargetLink)
	}
}
