package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/gcperr"
)

var ignoreClientFields = cmpopts.IgnoreFields(compute.BackendService{}, "ServerResponse", "ForceSendFields", "NullFields")

func TestExternalHTTPSLoadBalancer(t *testing.T) {
	e := newEnv(t)
	e.lb(t)
	base := linkBase + "projects/" + projID

	neg, err := e.svc.RegionNetworkEndpointGroups.Get(projID, region, "hello-neg").Do()
	if err != nil {
		t.Fatal(err)
	}
	bs, err := e.svc.BackendServices.Get(projID, "hello-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	want := &compute.BackendService{
		Name: "hello-bs", Kind: "compute#backendService", Id: bs.Id, Fingerprint: bs.Fingerprint,
		CreationTimestamp: bs.CreationTimestamp, SelfLink: base + "/global/backendServices/hello-bs",
		Protocol: "HTTPS", LoadBalancingScheme: "EXTERNAL_MANAGED", SessionAffinity: "NONE", TimeoutSec: 30,
		Port: 80, PortName: "http", // HTTP(S) defaults, as recorded
		ConnectionDraining: &compute.ConnectionDraining{},
		Backends:           []*compute.Backend{{Group: neg.SelfLink}},
		UsedBy:             []*compute.BackendServiceUsedBy{{Reference: base + "/global/urlMaps/hello-map"}},
	}
	if diff := cmp.Diff(want, bs, ignoreClientFields,
		cmpopts.IgnoreFields(compute.ConnectionDraining{}, "ForceSendFields"),
		cmpopts.IgnoreFields(compute.Backend{}, "ForceSendFields"),
		cmpopts.IgnoreFields(compute.BackendServiceUsedBy{}, "ForceSendFields")); diff != "" {
		t.Errorf("backend service (-want +got):\n%s", diff)
	}
	if bs.Id == 0 || bs.Fingerprint == "" || bs.CreationTimestamp == "" {
		t.Errorf("backend service output fields unset: id %d fingerprint %q created %q", bs.Id, bs.Fingerprint, bs.CreationTimestamp)
	}

	um, err := e.svc.UrlMaps.Get(projID, "hello-map").Do()
	if err != nil {
		t.Fatal(err)
	}
	tp, err := e.svc.TargetHttpsProxies.Get(projID, "hello-proxy").Do()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := e.svc.SslCertificates.Get(projID, "hello-cert").Do()
	if err != nil {
		t.Fatal(err)
	}
	fr, err := e.svc.GlobalForwardingRules.Get(projID, "hello-fr").Do()
	if err != nil {
		t.Fatal(err)
	}
	refs := []struct{ name, got, want string }{
		{"neg.region", neg.Region, base + "/regions/" + region},
		{"neg.selfLink", neg.SelfLink, base + "/regions/" + region + "/networkEndpointGroups/hello-neg"},
		{"urlMap.defaultService", um.DefaultService, bs.SelfLink},
		{"proxy.urlMap", tp.UrlMap, um.SelfLink},
		{"proxy.sslCertificates[0]", tp.SslCertificates[0], cert.SelfLink},
		// Not sent, not printed (recorded: k8s-config-connector's
		// regionaltargethttpsproxycertificatemanagercertificates).
		{"proxy.quicOverride", tp.QuicOverride, ""},
		// Given as a beta URL (by project number): stored with the project
		// id, and as a beta URL, as Compute keeps the version it was given
		// (recorded traffic, see keepVersion).
		{"forwardingRule.target", fr.Target, strings.Replace(tp.SelfLink, "/compute/v1/", "/compute/beta/", 1)},
		{"forwardingRule.portRange", fr.PortRange, "443-443"},
		{"forwardingRule.IPProtocol", fr.IPProtocol, "TCP"},
		{"cert.type", cert.Type, "SELF_MANAGED"},
		{"cert.privateKey", cert.PrivateKey, ""},
	}
	for _, r := range refs {
		if r.got != r.want {
			t.Errorf("%s = %q, want %q", r.name, r.got, r.want)
		}
	}
	if cert.ExpireTime == "" || !cmp.Equal(cert.SubjectAlternativeNames, []string{"hello.example.com"}) {
		t.Errorf("certificate expireTime %q SANs %v, want set and [hello.example.com]", cert.ExpireTime, cert.SubjectAlternativeNames)
	}
	if fr.IPAddress == "" || um.Fingerprint == "" || tp.Fingerprint == "" {
		t.Errorf("forwarding rule IP %q, url map fingerprint %q, proxy fingerprint %q: want all set", fr.IPAddress, um.Fingerprint, tp.Fingerprint)
	}

	// GET prints the zero-valued defaults Google prints.
	code, m := e.raw(t, "GET", "/compute/v1/projects/"+projID+"/global/backendServices/hello-bs", "")
	if code != 200 {
		t.Fatalf("raw get: %d %v", code, m)
	}
	for k, want := range map[string]any{"affinityCookieTtlSec": 0.0, "description": "",
		"connectionDraining": map[string]any{"drainingTimeoutSec": 0.0}} {
		if !cmp.Equal(m[k], want) {
			t.Errorf("raw backend service %s = %#v, want %#v", k, m[k], want)
		}
	}
	// enableCDN false is omitted, as in every recorded backend service GET.
	if v, ok := m["enableCDN"]; ok {
		t.Errorf("raw backend service enableCDN = %#v, want it omitted", v)
	}
	code, m = e.raw(t, "GET", "/compute/v1/projects/"+projID+"/regions/"+region+"/networkEndpointGroups/hello-neg", "")
	if code != 200 || m["size"] != 0.0 {
		t.Errorf("raw NEG: %d size %#v, want 200 and 0", code, m["size"])
	}
}

func TestRegionalBackendServiceIAP(t *testing.T) {
	e := newEnv(t)
	neg := e.neg(t, region, "r-neg", "hello")
	other := e.neg(t, "europe-west1", "eu-neg", "hello")
	bs := &compute.BackendService{Name: "r-bs", LoadBalancingScheme: "EXTERNAL_MANAGED", Protocol: "HTTP",
		Backends: []*compute.Backend{{Group: neg}}}
	op, err := e.svc.RegionBackendServices.Insert(projID, region, bs).Do()
	got := e.ok(t)(op, err)
	if got.Region != linkBase+"projects/"+projID+"/regions/"+region || got.OperationType != "insert" {
		t.Errorf("regional op region %q type %q", got.Region, got.OperationType)
	}
	cur, err := e.svc.RegionBackendServices.Get(projID, region, "r-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	e.ok(t)(e.svc.RegionBackendServices.Patch(projID, region, "r-bs", &compute.BackendService{
		Fingerprint: cur.Fingerprint, Iap: &compute.BackendServiceIAP{Enabled: true},
	}).Do())
	after, err := e.svc.RegionBackendServices.Get(projID, region, "r-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if after.Iap == nil || !after.Iap.Enabled || after.Fingerprint == cur.Fingerprint || after.Region != got.Region {
		t.Errorf("after patch: iap %+v fingerprint %q (was %q) region %q", after.Iap, after.Fingerprint, cur.Fingerprint, after.Region)
	}
	if _, err := e.svc.BackendServices.Get(projID, "r-bs").Do(); err == nil {
		t.Error("regional backend service visible as global")
	}
	_, err = e.svc.RegionBackendServices.Insert(projID, region, &compute.BackendService{Name: "x-bs",
		Backends: []*compute.Backend{{Group: other}}}).Do()
	apiErr(t, err, 400, "invalid")
}

func TestPatchIAP(t *testing.T) {
	e := newEnv(t)
	neg := e.neg(t, region, "p-neg", "hello")
	bs := e.backend(t, "p-bs", neg)

	// Google-managed OAuth client: no client id or secret needed.
	e.ok(t)(e.svc.BackendServices.Patch(projID, "p-bs", &compute.BackendService{
		Fingerprint: bs.Fingerprint, Iap: &compute.BackendServiceIAP{Enabled: true},
	}).Do())
	got, err := e.svc.BackendServices.Get(projID, "p-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Iap.Enabled || got.Fingerprint == bs.Fingerprint {
		t.Fatalf("iap %+v fingerprint %q (was %q)", got.Iap, got.Fingerprint, bs.Fingerprint)
	}
	// Merge patch: untouched fields survive.
	if got.Protocol != "HTTPS" || len(got.Backends) != 1 || got.LoadBalancingScheme != "EXTERNAL_MANAGED" {
		t.Errorf("merge patch lost fields: %+v", got)
	}

	// A custom client: the secret is stored as its SHA-256, never echoed.
	e.ok(t)(e.svc.BackendServices.Patch(projID, "p-bs", &compute.BackendService{
		Iap: &compute.BackendServiceIAP{Enabled: true, Oauth2ClientId: "cid", Oauth2ClientSecret: "s3cret"},
	}).Do())
	code, m := e.raw(t, "GET", "/compute/v1/projects/"+projID+"/global/backendServices/p-bs", "")
	iap, _ := m["iap"].(map[string]any)
	sum := sha256.Sum256([]byte("s3cret"))
	if code != 200 || iap["oauth2ClientSecret"] != nil || iap["oauth2ClientId"] != "cid" || iap["oauth2ClientSecretSha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("iap after secret patch: %d %#v", code, iap)
	}
	for _, entry := range e.c.Audit.Entries() {
		if strings.Contains(mustJSON(t, entry), "s3cret") {
			t.Errorf("audit entry leaks the OAuth client secret: %s", mustJSON(t, entry))
		}
	}

	// null deletes (NullFields), IAP+CDN is refused.
	_, err = e.svc.BackendServices.Patch(projID, "p-bs", &compute.BackendService{EnableCDN: true}).Do()
	apiErr(t, err, 400, "invalid")
	e.ok(t)(e.svc.BackendServices.Patch(projID, "p-bs", &compute.BackendService{NullFields: []string{"Iap"}}).Do())
	got, err = e.svc.BackendServices.Get(projID, "p-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if got.Iap != nil {
		t.Errorf("iap after null patch = %+v, want absent", got.Iap)
	}
	e.ok(t)(e.svc.BackendServices.Patch(projID, "p-bs", &compute.BackendService{EnableCDN: true}).Do())
}

func TestFingerprintPreconditions(t *testing.T) {
	tests := []struct {
		name   string
		race   bool
		call   func(e *env, fp string) (*compute.Operation, error)
		code   int
		reason string
		msg    string
	}{
		{name: "patch with current fingerprint", call: func(e *env, fp string) (*compute.Operation, error) {
			return e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Fingerprint: fp, Description: "d"}).Do()
		}},
		{name: "patch without fingerprint", call: func(e *env, _ string) (*compute.Operation, error) {
			return e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Description: "d"}).Do()
		}},
		{name: "patch with stale fingerprint", code: 412, reason: "conditionNotMet", msg: "Invalid fingerprint.",
			call: func(e *env, _ string) (*compute.Operation, error) {
				return e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Fingerprint: "AAAAAAAAAAA=", Description: "d"}).Do()
			}},
		{name: "patch losing a forced race", race: true, code: 412, reason: "conditionNotMet", msg: "Invalid fingerprint.",
			call: func(e *env, fp string) (*compute.Operation, error) {
				return e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Fingerprint: fp, Description: "d"}).Do()
			}},
		{name: "update without fingerprint", code: 400, reason: "required", msg: "Required field 'resource.fingerprint' not specified",
			call: func(e *env, _ string) (*compute.Operation, error) {
				return e.svc.BackendServices.Update(projID, "f-bs", &compute.BackendService{Name: "f-bs"}).Do()
			}},
		{name: "update with stale fingerprint", code: 412, reason: "conditionNotMet", msg: "Invalid fingerprint.",
			call: func(e *env, _ string) (*compute.Operation, error) {
				return e.svc.BackendServices.Update(projID, "f-bs", &compute.BackendService{Name: "f-bs", Fingerprint: "AAAAAAAAAAA="}).Do()
			}},
		{name: "update losing a forced race", race: true, code: 412, reason: "conditionNotMet", msg: "Invalid fingerprint.",
			call: func(e *env, fp string) (*compute.Operation, error) {
				return e.svc.BackendServices.Update(projID, "f-bs", &compute.BackendService{Name: "f-bs", Fingerprint: fp}).Do()
			}},
		{name: "update with current fingerprint", call: func(e *env, fp string) (*compute.Operation, error) {
			return e.svc.BackendServices.Update(projID, "f-bs", &compute.BackendService{Name: "f-bs", Fingerprint: fp, Description: "d"}).Do()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before := e.backend(t, "f-bs")
			if tc.race {
				method := "compute.backendServices.patch"
				if strings.HasPrefix(tc.name, "update") {
					method = "compute.backendServices.update"
				}
				if err := e.c.Faults.ForceRaces(method, 1); err != nil {
					t.Fatal(err)
				}
			}
			op, err := tc.call(e, before.Fingerprint)
			after, gerr := e.svc.BackendServices.Get(projID, "f-bs").Do()
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.code == 0 {
				e.ok(t)(op, err)
				after, _ = e.svc.BackendServices.Get(projID, "f-bs").Do()
				if after.Fingerprint == before.Fingerprint || after.Description != "d" {
					t.Errorf("accepted write: fingerprint %q (was %q) description %q", after.Fingerprint, before.Fingerprint, after.Description)
				}
				return
			}
			ge := apiErr(t, err, tc.code, tc.reason)
			if ge.Message != tc.msg {
				t.Errorf("message %q, want %q", ge.Message, tc.msg)
			}
			if after.Description != "" {
				t.Errorf("rejected write changed the resource: description %q", after.Description)
			}
			if tc.race {
				if after.Fingerprint == before.Fingerprint {
					t.Error("forced race did not change the fingerprint")
				}
				// Re-read and retry wins.
				e.ok(t)(e.svc.BackendServices.Patch(projID, "f-bs", &compute.BackendService{Fingerprint: after.Fingerprint, Description: "d"}).Do())
			}
		})
	}
}

func TestStaleFingerprintBodyShape(t *testing.T) {
	e := newEnv(t)
	e.backend(t, "s-bs")
	code, m := e.raw(t, "PATCH", "/compute/v1/projects/"+projID+"/global/backendServices/s-bs", `{"fingerprint":"AAAAAAAAAAA="}`)
	want := map[string]any{"error": map[string]any{"code": 412.0, "message": "Invalid fingerprint.",
		"errors": []any{map[string]any{"domain": "global", "reason": "conditionNotMet", "message": "Invalid fingerprint."}}}}
	if code != 412 || !cmp.Equal(m, want) {
		t.Errorf("stale fingerprint answer %d %v, want 412 %v", code, m, want)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	neg := e.neg(t, region, "e-neg", "hello")
	e.backend(t, "e-bs", neg)
	cert, key := selfSigned(t, "e.example.com")
	e.ok(t)(e.svc.SslCertificates.Insert(projID, &compute.SslCertificate{Name: "e-cert", Certificate: cert, PrivateKey: key}).Do())
	e.ok(t)(e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "e-map", DefaultService: "global/backendServices/e-bs"}).Do())

	tests := []struct {
		name   string
		call   func() error
		code   int
		reason string
		msg    string
	}{
		{"get missing backend service", func() error {
			_, err := e.svc.BackendServices.Get(projID, "nope").Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/global/backendServices/nope' was not found"},
		{"get missing regional backend service", func() error {
			_, err := e.svc.RegionBackendServices.Get(projID, region, "nope").Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/regions/us-central1/backendServices/nope' was not found"},
		{"unknown project", func() error {
			_, err := e.svc.BackendServices.Get("ghost", "e-bs").Do()
			return err
		}, 404, "notFound", "The resource 'projects/ghost' was not found"},
		{"unknown region", func() error {
			_, err := e.svc.RegionBackendServices.Get(projID, "mars-north1", "e-bs").Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/regions/mars-north1' was not found"},
		{"insert existing name", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "e-bs"}).Do()
			return err
		}, 409, "alreadyExists", "The resource 'projects/demo-proj/global/backendServices/e-bs' already exists"},
		{"insert without name", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{}).Do()
			return err
		}, 400, "required", "Required field 'resource.name' not specified"},
		{"insert bad name", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "Bad_Name"}).Do()
			return err
		}, 400, "invalid", ""},
		{"bad enum", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x", Protocol: "GOPHER"}).Do()
			return err
		}, 400, "invalid", ""},
		{"IAP with CDN", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x", EnableCDN: true, Iap: &compute.BackendServiceIAP{Enabled: true}}).Do()
			return err
		}, 400, "invalid", ""},
		{"partial backend group URL", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x",
				Backends: []*compute.Backend{{Group: "regions/us-central1/networkEndpointGroups/e-neg"}}}).Do()
			return err
		}, 400, "invalid", ""},
		{"missing backend NEG", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x",
				Backends: []*compute.Backend{{Group: linkBase + "projects/demo-proj/regions/us-central1/networkEndpointGroups/ghost"}}}).Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/regions/us-central1/networkEndpointGroups/ghost' was not found"},
		{"duplicate backend group", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x",
				Backends: []*compute.Backend{{Group: neg}, {Group: strings.Replace(neg, "/v1/", "/beta/", 1)}}}).Do()
			return err
		}, 400, "invalid", ""},
		{"serverless backend with health check", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x",
				Backends: []*compute.Backend{{Group: neg}}, HealthChecks: []string{"global/healthChecks/hc"}}).Do()
			return err
		}, 400, "invalid", ""},
		{"url map with missing backend service", func() error {
			_, err := e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "x", DefaultService: "global/backendServices/ghost"}).Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/global/backendServices/ghost' was not found"},
		{"url map path rule with missing backend service", func() error {
			_, err := e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "x", DefaultService: "global/backendServices/e-bs",
				HostRules:    []*compute.HostRule{{Hosts: []string{"*"}, PathMatcher: "pm"}},
				PathMatchers: []*compute.PathMatcher{{Name: "pm", DefaultService: "global/backendServices/e-bs", PathRules: []*compute.PathRule{{Paths: []string{"/a"}, Service: "global/backendServices/ghost"}}}},
			}).Do()
			return err
		}, 404, "notFound", ""},
		{"url map with bare name", func() error {
			_, err := e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "x", DefaultService: "e-bs"}).Do()
			return err
		}, 400, "invalid", "Invalid value for field 'resource.defaultService': 'e-bs'. The URL is malformed."},
		{"url map host rule naming no path matcher", func() error {
			_, err := e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "x", DefaultService: "global/backendServices/e-bs",
				HostRules: []*compute.HostRule{{Hosts: []string{"*"}, PathMatcher: "none"}}}).Do()
			return err
		}, 400, "invalid", ""},
		{"https proxy without certificates", func() error {
			_, err := e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{Name: "x", UrlMap: "global/urlMaps/e-map"}).Do()
			return err
		}, 400, "invalid", ""},
		{"https proxy with missing url map", func() error {
			_, err := e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{Name: "x", UrlMap: "global/urlMaps/ghost",
				SslCertificates: []string{"global/sslCertificates/e-cert"}}).Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/global/urlMaps/ghost' was not found"},
		{"https proxy with missing certificate", func() error {
			_, err := e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{Name: "x", UrlMap: "global/urlMaps/e-map",
				SslCertificates: []string{"global/sslCertificates/ghost"}}).Do()
			return err
		}, 404, "notFound", ""},
		{"https proxy with url map in certificate slot", func() error {
			_, err := e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{Name: "x", UrlMap: "global/urlMaps/e-map",
				SslCertificates: []string{"global/urlMaps/e-map"}}).Do()
			return err
		}, 400, "invalid", ""},
		{"forwarding rule with missing target", func() error {
			_, err := e.svc.GlobalForwardingRules.Insert(projID, &compute.ForwardingRule{Name: "x", Target: "global/targetHttpsProxies/ghost"}).Do()
			return err
		}, 404, "notFound", ""},
		{"forwarding rule without target", func() error {
			_, err := e.svc.GlobalForwardingRules.Insert(projID, &compute.ForwardingRule{Name: "x"}).Do()
			return err
		}, 400, "required", "Required field 'resource.target' not specified"},
		{"self-managed certificate with bad PEM", func() error {
			_, err := e.svc.SslCertificates.Insert(projID, &compute.SslCertificate{Name: "x", Certificate: "junk", PrivateKey: "junk"}).Do()
			return err
		}, 400, "invalid", ""},
		{"managed certificate without domains", func() error {
			_, err := e.svc.SslCertificates.Insert(projID, &compute.SslCertificate{Name: "x", Type: "MANAGED"}).Do()
			return err
		}, 400, "required", ""},
		{"delete missing", func() error {
			_, err := e.svc.UrlMaps.Delete(projID, "ghost").Do()
			return err
		}, 404, "notFound", ""},
		{"rename through patch", func() error {
			_, err := e.svc.BackendServices.Patch(projID, "e-bs", &compute.BackendService{Name: "other"}).Do()
			return err
		}, 400, "invalid", ""},
		{"patch missing", func() error {
			_, err := e.svc.BackendServices.Patch(projID, "ghost", &compute.BackendService{Description: "x"}).Do()
			return err
		}, 404, "notFound", ""},
		{"get missing operation", func() error {
			_, err := e.svc.GlobalOperations.Get(projID, "operation-123").Do()
			return err
		}, 404, "notFound", "The resource 'projects/demo-proj/global/operations/operation-123' was not found"},
		{"bad request id", func() error {
			_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "x"}).RequestId("not-a-uuid").Do()
			return err
		}, 400, "invalid", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ge := apiErr(t, tc.call(), tc.code, tc.reason)
			if tc.msg != "" && ge.Message != tc.msg {
				t.Errorf("message %q, want %q", ge.Message, tc.msg)
			}
		})
	}
	// Nothing named x was created by any rejected call.
	list, err := e.svc.BackendServices.List(projID).Do()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("backend services after rejected writes: %d, want 1", len(list.Items))
	}
}

func TestNEGValidation(t *testing.T) {
	tests := []struct {
		name   string
		neg    *compute.NetworkEndpointGroup
		code   int
		reason string
	}{
		{"cloud run service", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello"}}, 0, ""},
		{"cloud run service and tag", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello", Tag: "blue"}}, 0, ""},
		{"cloud run url mask", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{UrlMask: "<tag>.example.com/<service>"}}, 0, ""},
		{"app engine", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			AppEngine: &compute.NetworkEndpointGroupAppEngine{Service: "default"}}, 0, ""},
		{"no endpoint type", &compute.NetworkEndpointGroup{Name: "n",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello"}}, 400, "invalid"},
		{"unknown endpoint type", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "LAMBDA",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello"}}, 400, "invalid"},
		{"no serverless target", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS"}, 400, "invalid"},
		{"two serverless targets", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			CloudRun:  &compute.NetworkEndpointGroupCloudRun{Service: "hello"},
			AppEngine: &compute.NetworkEndpointGroupAppEngine{Service: "default"}}, 400, "invalid"},
		{"empty cloud run", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{}}, 400, "invalid"},
		{"bad cloud run service name", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "Hello_World"}}, 400, "invalid"},
		{"network set", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS", Network: "global/networks/default",
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello"}}, 400, "invalid"},
		{"default port set", &compute.NetworkEndpointGroup{Name: "n", NetworkEndpointType: "SERVERLESS", DefaultPort: 8080,
			CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello"}}, 400, "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			op, err := e.svc.RegionNetworkEndpointGroups.Insert(projID, region, tc.neg).Do()
			if tc.code != 0 {
				apiErr(t, err, tc.code, tc.reason)
				return
			}
			got := e.ok(t)(op, err)
			if got.OperationType != "compute.regionNetworkEndpointGroups.insert" {
				t.Errorf("operationType %q", got.OperationType)
			}
			neg, err := e.svc.RegionNetworkEndpointGroups.Get(projID, region, "n").Do()
			if err != nil {
				t.Fatal(err)
			}
			if neg.Kind != "compute#networkEndpointGroup" || neg.Id == 0 || neg.CreationTimestamp == "" {
				t.Errorf("NEG output fields: %+v", neg)
			}
		})
	}
}

func TestDeleteInUse(t *testing.T) {
	e := newEnv(t)
	e.lb(t)
	inUse := []struct {
		name string
		call func() (*compute.Operation, error)
		user string
	}{
		{"NEG used by backend service", func() (*compute.Operation, error) {
			return e.svc.RegionNetworkEndpointGroups.Delete(projID, region, "hello-neg").Do()
		}, "projects/demo-proj/global/backendServices/hello-bs"},
		{"backend service used by URL map", func() (*compute.Operation, error) {
			return e.svc.BackendServices.Delete(projID, "hello-bs").Do()
		}, "projects/demo-proj/global/urlMaps/hello-map"},
		{"URL map used by proxy", func() (*compute.Operation, error) { return e.svc.UrlMaps.Delete(projID, "hello-map").Do() },
			"projects/demo-proj/global/targetHttpsProxies/hello-proxy"},
		{"certificate used by proxy", func() (*compute.Operation, error) {
			return e.svc.SslCertificates.Delete(projID, "hello-cert").Do()
		}, "projects/demo-proj/global/targetHttpsProxies/hello-proxy"},
		{"proxy used by forwarding rule", func() (*compute.Operation, error) {
			return e.svc.TargetHttpsProxies.Delete(projID, "hello-proxy").Do()
		}, "projects/demo-proj/global/forwardingRules/hello-fr"},
	}
	for _, tc := range inUse {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.call()
			ge := apiErr(t, err, 400, "resourceInUseByAnotherResource")
			if !strings.HasSuffix(ge.Message, "is already being used by '"+tc.user+"'") {
				t.Errorf("message %q, want it to name %s", ge.Message, tc.user)
			}
		})
	}
	// Tear down in dependency order.
	e.ok(t)(e.svc.GlobalForwardingRules.Delete(projID, "hello-fr").Do())
	e.ok(t)(e.svc.TargetHttpsProxies.Delete(projID, "hello-proxy").Do())
	e.ok(t)(e.svc.SslCertificates.Delete(projID, "hello-cert").Do())
	e.ok(t)(e.svc.UrlMaps.Delete(projID, "hello-map").Do())
	bs, err := e.svc.BackendServices.Get(projID, "hello-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if len(bs.UsedBy) != 0 {
		t.Errorf("usedBy after URL map delete = %v, want empty", bs.UsedBy)
	}
	op := e.ok(t)(e.svc.BackendServices.Delete(projID, "hello-bs").Do())
	if op.OperationType != "delete" || op.TargetId != bs.Id {
		t.Errorf("delete op type %q targetId %d, want delete %d", op.OperationType, op.TargetId, bs.Id)
	}
	e.ok(t)(e.svc.RegionNetworkEndpointGroups.Delete(projID, region, "hello-neg").Do())
	_, err = e.svc.BackendServices.Get(projID, "hello-bs").Do()
	apiErr(t, err, 404, "notFound")
}

func TestURLMapPatchAndUsedBy(t *testing.T) {
	e := newEnv(t)
	neg := e.neg(t, region, "u-neg", "hello")
	a := e.backend(t, "a-bs", neg)
	b := e.backend(t, "b-bs")
	e.ok(t)(e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "m", DefaultService: a.SelfLink,
		HostRules:    []*compute.HostRule{{Hosts: []string{"*"}, PathMatcher: "pm"}},
		PathMatchers: []*compute.PathMatcher{{Name: "pm", DefaultService: "global/backendServices/a-bs"}},
	}).Do())
	um, err := e.svc.UrlMaps.Get(projID, "m").Do()
	if err != nil {
		t.Fatal(err)
	}
	// Repoint the default service to b; a stays used by the path matcher.
	e.ok(t)(e.svc.UrlMaps.Patch(projID, "m", &compute.UrlMap{Fingerprint: um.Fingerprint, DefaultService: "projects/123456789012/global/backendServices/b-bs"}).Do())
	for _, c := range []struct{ name, bs string }{{"a still used by path matcher", "a-bs"}, {"b now used as default", "b-bs"}} {
		got, err := e.svc.BackendServices.Get(projID, c.bs).Do()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.UsedBy) != 1 || got.UsedBy[0].Reference != um.SelfLink {
			t.Errorf("%s: usedBy %v, want [%s]", c.name, got.UsedBy, um.SelfLink)
		}
	}
	um2, err := e.svc.UrlMaps.Get(projID, "m").Do()
	if err != nil {
		t.Fatal(err)
	}
	if um2.DefaultService != b.SelfLink || um2.Fingerprint == um.Fingerprint {
		t.Errorf("url map after patch: default %q fingerprint %q", um2.DefaultService, um2.Fingerprint)
	}
	_, err = e.svc.UrlMaps.Update(projID, "m", &compute.UrlMap{Name: "m", DefaultService: b.SelfLink}).Do()
	apiErr(t, err, 400, "required")
}

func TestAggregatedList(t *testing.T) {
	e := newEnv(t)
	e.backend(t, "g-bs")
	e.ok(t)(e.svc.RegionBackendServices.Insert(projID, region, &compute.BackendService{Name: "r-bs"}).Do())
	e.ok(t)(e.svc.RegionBackendServices.Insert(projID, "europe-west1", &compute.BackendService{Name: "eu-bs"}).Do())

	tests := []struct {
		name   string
		filter string
		want   map[string][]string // scope -> names; other scopes must carry the warning
	}{
		{"everything", "", map[string][]string{"global": {"g-bs"}, "regions/us-central1": {"r-bs"}, "regions/europe-west1": {"eu-bs"}}},
		{"filtered", `name = "r-bs"`, map[string][]string{"regions/us-central1": {"r-bs"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agg, err := e.svc.BackendServices.AggregatedList(projID).Filter(tc.filter).Do()
			if err != nil {
				t.Fatal(err)
			}
			if agg.Kind != "compute#backendServiceAggregatedList" || len(agg.Items) != 1+len(DefaultRegions) {
				t.Fatalf("kind %q, %d scopes; want %d", agg.Kind, len(agg.Items), 1+len(DefaultRegions))
			}
			got := map[string][]string{}
			for scope, sl := range agg.Items {
				if len(sl.BackendServices) == 0 {
					w := sl.Warning
					if w == nil || w.Code != "NO_RESULTS_ON_PAGE" || len(w.Data) != 1 || w.Data[0].Value != scope {
						t.Errorf("scope %s: warning %+v, want NO_RESULTS_ON_PAGE", scope, w)
					}
					continue
				}
				for _, bs := range sl.BackendServices {
					got[scope] = append(got[scope], bs.Name)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("aggregated items (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListFilter(t *testing.T) {
	e := newEnv(t)
	neg := e.neg(t, region, "f-neg", "hello")
	e.ok(t)(e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "alpha", Description: "team a",
		Backends: []*compute.Backend{{Group: neg}}}).Do())
	e.ok(t)(e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "beta", EnableCDN: true, TimeoutSec: 60}).Do())
	e.ok(t)(e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "gamma", Iap: &compute.BackendServiceIAP{Enabled: true},
		LoadBalancingScheme: "EXTERNAL_MANAGED"}).Do())

	tests := []struct {
		filter      string
		want        []string
		bad         bool
		unsupported bool
	}{
		{filter: "", want: []string{"alpha", "beta", "gamma"}},
		{filter: `name = "beta"`, want: []string{"beta"}},
		{filter: `name="beta"`, want: []string{"beta"}},
		{filter: `name = beta`, want: []string{"beta"}},
		{filter: `name != beta`, want: []string{"alpha", "gamma"}},
		{filter: `enableCDN = true`, want: []string{"beta"}},
		{filter: `enableCDN = false`, want: []string{"alpha", "gamma"}},
		{filter: `iap.enabled = true`, want: []string{"gamma"}},
		{filter: `description = "team a"`, want: []string{"alpha"}},
		{filter: `backends.group = "` + neg + `"`, want: []string{"alpha"}},
		{filter: `loadBalancingScheme = EXTERNAL enableCDN = false`, want: []string{"alpha"}},
		{filter: `loadBalancingScheme = EXTERNAL AND enableCDN != true`, want: []string{"alpha"}},
		{filter: `nosuchfield = 1`, bad: true},
		{filter: `iap.nosuch = true`, bad: true},
		{filter: `alpha`, bad: true},
		{filter: `name = "alpha`, bad: true},
		{filter: `name ~ alpha`, unsupported: true},
		{filter: `name eq a.*`, unsupported: true},
		{filter: `iap:*`, unsupported: true},
		{filter: `timeoutSec > 30`, unsupported: true},
		{filter: `(name = alpha) OR (name = beta)`, unsupported: true},
		{filter: `name = alpha OR name = gamma`, unsupported: true},
		{filter: `NOT enableCDN = true`, unsupported: true},
		{filter: `-name = alpha`, unsupported: true},
		{filter: `labels.env.exists()`, unsupported: true},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			list, err := e.svc.BackendServices.List(projID).Filter(tc.filter).Do()
			if tc.bad || tc.unsupported {
				ge := apiErr(t, err, 400, "invalid")
				if !strings.HasPrefix(ge.Message, "Invalid value for field 'filter'") {
					t.Errorf("message %q", ge.Message)
				}
				if got := strings.Contains(ge.Message, "not supported by the emulator"); got != tc.unsupported {
					t.Errorf("message %q; want \"not supported by the emulator\" %v", ge.Message, tc.unsupported)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, bs := range list.Items {
				got = append(got, bs.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("filter %q (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

func TestPaging(t *testing.T) {
	e := newEnv(t)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.c.SetNow(func() time.Time { return clock })
	names := []string{"b1", "a2", "c3", "e4", "d5"}
	for _, n := range names {
		e.ok(t)(e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: n}).Do())
		clock = clock.Add(time.Second)
	}
	tests := []struct {
		name    string
		orderBy string
		max     int64
		want    []string
		pages   int
	}{
		{"by name in pages of two", "", 2, []string{"a2", "b1", "c3", "d5", "e4"}, 3},
		{"newest first in pages of three", "creationTimestamp desc", 3, []string{"d5", "e4", "c3", "a2", "b1"}, 2},
		{"one page", "name", 0, []string{"a2", "b1", "c3", "d5", "e4"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			call := e.svc.UrlMaps.List(projID).OrderBy(tc.orderBy)
			if tc.max > 0 {
				call = call.MaxResults(tc.max)
			}
			var got []string
			pages := 0
			err := call.Pages(context.Background(), func(l *compute.UrlMapList) error {
				pages++
				for _, um := range l.Items {
					got = append(got, um.Name)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" || pages != tc.pages {
				t.Errorf("pages %d (want %d), items (-want +got):\n%s", pages, tc.pages, diff)
			}
		})
	}
	bad := []struct {
		name string
		call func() error
	}{
		{"maxResults over 500", func() error { _, err := e.svc.UrlMaps.List(projID).MaxResults(501).Do(); return err }},
		{"garbage page token", func() error { _, err := e.svc.UrlMaps.List(projID).PageToken("%%%").Do(); return err }},
		{"unsupported orderBy", func() error { _, err := e.svc.UrlMaps.List(projID).OrderBy("name desc").Do(); return err }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) { apiErr(t, tc.call(), 400, "invalid") })
	}
}

func TestOperations(t *testing.T) {
	e := newEnv(t)
	e.s.SetOperationDelay(-1) // only get/wait complete operations
	op, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "o-bs"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != "RUNNING" || op.OperationType != "insert" || op.Kind != "compute#operation" || op.Id == 0 ||
		op.TargetLink != linkBase+"projects/"+projID+"/global/backendServices/o-bs" || op.User != core.DefaultPrincipal ||
		op.SelfLink != linkBase+"projects/"+projID+"/global/operations/"+op.Name || op.InsertTime == "" || op.EndTime != "" {
		t.Errorf("insert operation: %+v", op)
	}
	// The mutation applied at once.
	if _, err := e.svc.BackendServices.Get(projID, "o-bs").Do(); err != nil {
		t.Errorf("resource not visible while its operation runs: %v", err)
	}
	lasts := func() int {
		n := 0
		for _, en := range e.c.Audit.Entries() {
			if en.Operation != nil && en.Operation.ID == op.Name && en.Operation.Last {
				n++
			}
		}
		return n
	}
	if n := lasts(); n != 0 {
		t.Fatalf("last audit entries before completion: %d", n)
	}
	byID, err := e.svc.GlobalOperations.Get(projID, formatID(op.Id)).Do()
	if err != nil {
		t.Fatal(err)
	}
	if byID.Name != op.Name || byID.Status != "DONE" || byID.Progress != 100 || byID.EndTime == "" {
		t.Errorf("get by id: %+v", byID)
	}
	if n := lasts(); n != 1 {
		t.Errorf("last audit entries after completion: %d, want 1", n)
	}
	again, err := e.svc.GlobalOperations.Wait(projID, op.Name).Do()
	if err != nil || again.Status != "DONE" {
		t.Fatalf("wait: %v %+v", err, again)
	}
	if n := lasts(); n != 1 {
		t.Errorf("last audit entries after second poll: %d, want 1", n)
	}
	// Regional operations live under their region only.
	rop, err := e.svc.RegionBackendServices.Insert(projID, region, &compute.BackendService{Name: "o-bs"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GlobalOperations.Get(projID, rop.Name).Do(); err == nil {
		t.Error("regional operation visible globally")
	}
	if got, err := e.svc.RegionOperations.Get(projID, region, rop.Name).Do(); err != nil || got.Status != "DONE" {
		t.Errorf("regional get: %v %+v", err, got)
	}
}

func TestOperationsCompleteWithoutPolling(t *testing.T) {
	e := newEnv(t)
	e.s.SetOperationDelay(time.Millisecond)
	op, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "t-bs"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, en := range e.c.Audit.Entries() {
			if en.Operation != nil && en.Operation.ID == op.Name && en.Operation.Last {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no last audit entry written without polling")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t)
	e.c.Faults.SetQuota("compute", core.Write, 1)
	if _, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "q1"}).Do(); err != nil {
		t.Fatalf("first write: %v", err)
	}
	_, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "q2"}).Do()
	apiErr(t, err, 403, "rateLimitExceeded") // as Google documents for Compute
	if got := gcperr.Code(err); got != codes.ResourceExhausted {
		t.Errorf("classified as %v, want ResourceExhausted (throttling)", got)
	}
	if !gcperr.IsTransient(err) {
		t.Errorf("403 rateLimitExceeded is not transient: %v", err)
	}
	if _, err := e.svc.BackendServices.Get(projID, "q1").Do(); err != nil {
		t.Errorf("read under an exhausted write quota: %v", err)
	}
	if _, err := e.svc.BackendServices.Get(projID, "q2").Do(); err == nil {
		t.Error("throttled insert was applied")
	}
	snap := e.c.Stats.Snapshot()
	if snap.Calls["compute.backendServices.insert"] != 2 || snap.Faults["compute.backendServices.insert"] != 1 {
		t.Errorf("stats: calls %v faults %v", snap.Calls, snap.Faults)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	e.backend(t, "m-bs")
	bsPath := "/compute/v1/projects/" + projID + "/global/backendServices"
	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{"invalid JSON", "POST", bsPath, `{"name":`, 400},
		{"array body", "POST", bsPath, `[{"name":"x"}]`, 400},
		{"empty body", "POST", bsPath, ``, 400},
		{"trailing data", "POST", bsPath, `{"name":"x"} {}`, 400},
		{"unknown member", "POST", bsPath, `{"name":"x","colour":"blue"}`, 400},
		{"unknown nested member", "POST", bsPath, `{"name":"x","iap":{"enabled":true,"mode":"strict"}}`, 400},
		{"unknown member in array element", "POST", bsPath, `{"name":"x","backends":[{"grop":"g"}]}`, 400},
		{"wrong type", "POST", bsPath, `{"name":"x","timeoutSec":"soon"}`, 400},
		{"wrong type for id", "POST", bsPath, `{"name":"x","id":12}`, 400},
		{"patch not an object", "PATCH", bsPath + "/m-bs", `"iap"`, 400},
		{"patch unknown member", "PATCH", bsPath + "/m-bs", `{"iap":{"enable":true}}`, 400},
		{"patch wrong fingerprint type", "PATCH", bsPath + "/m-bs", `{"fingerprint":1}`, 400},
		{"unknown collection", "GET", "/compute/v1/projects/" + projID + "/global/instances", ``, 404},
		{"unsupported method", "PATCH", "/compute/v1/projects/" + projID + "/regions/us-central1/networkEndpointGroups/x", `{}`, 404},
		{"too deep", "GET", bsPath + "/m-bs/extra", ``, 404},
		{"empty segment", "GET", "/compute/v1/projects//global/backendServices", ``, 404},
		{"aggregated NEGs not served", "GET", "/compute/v1/projects/" + projID + "/aggregated/networkEndpointGroups", ``, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, m := e.raw(t, tc.method, tc.path, tc.body)
			errObj, _ := m["error"].(map[string]any)
			if code != tc.code || errObj == nil || errObj["code"] != float64(tc.code) {
				t.Errorf("%s %s: %d %v, want %d with an error envelope", tc.method, tc.path, code, m, tc.code)
			}
		})
	}
	// Paths outside /compute/v1/ and /compute/beta/ reach the handler only
	// through a careless mount; they are 404 too.
	rec := httptest.NewRecorder()
	e.s.ServeHTTP(rec, httptest.NewRequest("GET", "/compute/v2/projects/"+projID+"/global/backendServices", nil))
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"notFound"`) {
		t.Errorf("/compute/v2: %d %s", rec.Code, rec.Body)
	}
	got, err := e.svc.BackendServices.Get(projID, "m-bs").Do()
	if err != nil || got.Iap != nil {
		t.Errorf("malformed patches changed the resource: %v %+v", err, got)
	}
}

func TestProjectNumberAndLookup(t *testing.T) {
	e := newEnv(t)
	e.ok(t)(e.svc.BackendServices.Insert("123456789012", &compute.BackendService{Name: "n-bs"}).Do())
	e.ok(t)(e.svc.RegionBackendServices.Insert(projID, region, &compute.BackendService{Name: "n-bs"}).Do())
	bs, err := e.svc.BackendServices.Get(projID, "n-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if bs.SelfLink != linkBase+"projects/"+projID+"/global/backendServices/n-bs" {
		t.Errorf("selfLink %q uses the project number", bs.SelfLink)
	}
	byID, err := e.svc.BackendServices.Get("123456789012", formatID(bs.Id)).Do()
	if err != nil || byID.Name != "n-bs" {
		t.Errorf("get by project number and id: %v %+v", err, byID)
	}
	rbs, err := e.svc.RegionBackendServices.Get(projID, region, "n-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, project, region, idOrName string
		wantName                        string
		wantID                          uint64
		ok                              bool
	}{
		{"global by name", projID, "", "n-bs", "n-bs", bs.Id, true},
		{"global by id and number", "123456789012", "", formatID(bs.Id), "n-bs", bs.Id, true},
		{"regional by id", projID, region, formatID(rbs.Id), "n-bs", rbs.Id, true},
		{"regional id is not global", projID, "", formatID(rbs.Id), "", 0, false},
		{"unknown name", projID, "", "ghost", "", 0, false},
		{"unknown project", "ghost", "", "n-bs", "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, id, ok := e.s.LookupBackendService(tc.project, tc.region, tc.idOrName)
			if name != tc.wantName || id != tc.wantID || ok != tc.ok {
				t.Errorf("LookupBackendService = %q %d %v, want %q %d %v", name, id, ok, tc.wantName, tc.wantID, tc.ok)
			}
		})
	}
}

func TestRequestIDIdempotency(t *testing.T) {
	e := newEnv(t)
	const id = "6f1c1a2e-8c4b-4c1e-9f0e-2b9a1d3c4e5f"
	first, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "i-bs"}).RequestId(id).Do()
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "i-bs"}).RequestId(id).Do()
	if err != nil {
		t.Fatalf("retried insert: %v", err)
	}
	if second.Name != first.Name {
		t.Errorf("retry got operation %s, want the original %s", second.Name, first.Name)
	}
	firsts := 0
	for _, en := range e.c.Audit.Entries() {
		if en.Operation != nil && en.Operation.First {
			firsts++
		}
	}
	if firsts != 1 {
		t.Errorf("audit first entries: %d, want 1", firsts)
	}
}

func TestBetaEndpoint(t *testing.T) {
	e := newEnv(t)
	e.backend(t, "beta-bs")
	code, m := e.raw(t, "PATCH", "/compute/beta/projects/"+projID+"/global/backendServices/beta-bs", `{"iap":{"enabled":true}}`)
	if code != 200 || m["status"] != "RUNNING" {
		t.Fatalf("beta patch: %d %v", code, m)
	}
	var found bool
	for _, en := range e.c.Audit.Entries() {
		if en.ProtoPayload.MethodName == "beta.compute.backendServices.patch" {
			found = true
		}
	}
	if !found {
		t.Error("no audit entry with methodName beta.compute.backendServices.patch")
	}
}

func TestConcurrentPatches(t *testing.T) {
	e := newEnv(t)
	bs := e.backend(t, "c-bs")
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := e.svc.BackendServices.Patch(projID, "c-bs", &compute.BackendService{Fingerprint: bs.Fingerprint, Description: "x"}).Do()
			errs <- err
		}()
	}
	ok, stale := 0, 0
	for range n {
		err := <-errs
		switch ge, _ := err.(*googleapi.Error); {
		case err == nil:
			ok++
		case ge != nil && ge.Code == 412:
			stale++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || stale != n-1 {
		t.Errorf("concurrent patches with one fingerprint: %d accepted, %d stale; want 1 and %d", ok, stale, n-1)
	}
}
