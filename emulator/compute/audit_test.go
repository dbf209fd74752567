package compute

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	compute "google.golang.org/api/compute/v1"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/auditsamples"
)

// auditlogDir is the real samples directory (internal/auditsamples).
func auditlogDir(t *testing.T) string { return auditsamples.Dir(t) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keySet flattens an entry's JSON keys. Request members other than @type
// depend on the body sent, so they are left out.
func keySet(t *testing.T, raw []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	flatten("", m, set)
	var out []string
	for k := range set {
		if strings.HasPrefix(k, "protoPayload.request.") && k != "protoPayload.request.@type" {
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func entriesFor(c *core.Core, method string) []*core.LogEntry {
	var out []*core.LogEntry
	for _, e := range c.Audit.Entries() {
		if e.ProtoPayload.MethodName == method {
			out = append(out, e)
		}
	}
	return out
}

// TestAuditMatchesRealSample inserts a target HTTPS proxy, the operation of
// the real first/last sample pair, and compares field sets and values.
func TestAuditMatchesRealSample(t *testing.T) {
	e := newEnv(t)
	neg := e.neg(t, region, "a-neg", "hello")
	e.backend(t, "a-bs", neg)
	e.ok(t)(e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "web-map-https", DefaultService: "global/backendServices/a-bs"}).Do())
	cert, key := selfSigned(t, "a.example.com")
	e.ok(t)(e.svc.SslCertificates.Insert(projID, &compute.SslCertificate{Name: "a-cert", Certificate: cert, PrivateKey: key}).Do())
	op, err := e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{Name: "https-lb-proxy", QuicOverride: "NONE",
		UrlMap: "projects/" + projID + "/global/urlMaps/web-map-https", SslCertificates: []string{"global/sslCertificates/a-cert"}}).Do()
	e.ok(t)(op, err)
	tp, err := e.svc.TargetHttpsProxies.Get(projID, "https-lb-proxy").Do()
	if err != nil {
		t.Fatal(err)
	}

	entries := entriesFor(e.c, "v1.compute.targetHttpsProxies.insert")
	if len(entries) != 2 || !entries[0].Operation.First || !entries[1].Operation.Last {
		t.Fatalf("want a first then a last entry, got %s", mustJSON(t, entries))
	}
	for i, name := range []string{"compute-lb-target-https-proxy-insert-first.json", "compute-lb-target-https-proxy-insert-last.json"} {
		t.Run(name, func(t *testing.T) {
			sample, err := os.ReadFile(filepath.Join(auditlogDir(t), name))
			if err != nil {
				t.Fatal(err)
			}
			ours, err := json.Marshal(entries[i])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(keySet(t, sample), keySet(t, ours)); diff != "" {
				t.Errorf("field set differs from the real sample (-real +emulator):\n%s", diff)
			}
		})
	}

	first, last := entries[0], entries[1]
	checks := []struct{ name, got, want string }{
		{"first request @type", first.ProtoPayload.Request["@type"].(string), "type.googleapis.com/compute.targetHttpsProxies.insert"},
		{"last request @type", last.ProtoPayload.Request["@type"].(string), "type.googleapis.com/compute.targetHttpsProxies.insert"},
		{"first request urlMap as sent", first.ProtoPayload.Request["urlMap"].(string), "projects/" + projID + "/global/urlMaps/web-map-https"},
		{"response @type", first.ProtoPayload.Response["@type"].(string), "type.googleapis.com/operation"},
		{"response status", first.ProtoPayload.Response["status"].(string), "RUNNING"},
		{"response name", first.ProtoPayload.Response["name"].(string), op.Name},
		{"response progress", first.ProtoPayload.Response["progress"].(string), "0"},
		{"response targetId", first.ProtoPayload.Response["targetId"].(string), formatID(tp.Id)},
		{"service", first.ProtoPayload.ServiceName, "compute.googleapis.com"},
		{"resourceName", first.ProtoPayload.ResourceName, "projects/" + projID + "/global/targetHttpsProxies/https-lb-proxy"},
		{"last resourceName", last.ProtoPayload.ResourceName, first.ProtoPayload.ResourceName},
		{"permission", first.ProtoPayload.AuthorizationInfo[0].Permission, "compute.targetHttpsProxies.create"},
		{"permission type", first.ProtoPayload.AuthorizationInfo[0].ResourceAttributes["type"], "compute.targetHttpsProxies"},
		{"resource type", first.Resource.Type, "gce_target_https_proxy"},
		{"resource id label", first.Resource.Labels["target_https_proxy_id"], formatID(tp.Id)},
		{"last resource id label", last.Resource.Labels["target_https_proxy_id"], formatID(tp.Id)},
		{"project label", first.Resource.Labels["project_id"], projID},
		{"operation id", first.Operation.ID, op.Name},
		{"last operation id", last.Operation.ID, op.Name},
		{"producer", last.Operation.Producer, "compute.googleapis.com"},
		{"root trigger shared", last.Labels["compute.googleapis.com/root_trigger_id"], first.Labels["compute.googleapis.com/root_trigger_id"]},
		{"location", first.ProtoPayload.ResourceLocation.CurrentLocations[0], "global"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if len(first.Labels["compute.googleapis.com/root_trigger_id"]) != 36 {
		t.Errorf("root_trigger_id %q is not a UUID", first.Labels["compute.googleapis.com/root_trigger_id"])
	}
	if !last.Timestamp.After(first.Timestamp) && !last.Timestamp.Equal(first.Timestamp) {
		t.Errorf("last entry (%v) before first (%v)", last.Timestamp, first.Timestamp)
	}
}

// TestAuditIdentity checks what each kind of mutation records.
func TestAuditIdentity(t *testing.T) {
	e := newEnv(t)
	e.s.SetOperationDelay(-1)
	tests := []struct {
		name         string
		call         func() (*compute.Operation, error)
		method       string
		resourceName string
		permission   string
		resourceType string
		idLabel      string
		location     string
	}{
		{"regional NEG insert", func() (*compute.Operation, error) {
			return e.svc.RegionNetworkEndpointGroups.Insert(projID, region, &compute.NetworkEndpointGroup{Name: "i-neg",
				NetworkEndpointType: "SERVERLESS", CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "hello"}}).Do()
		}, "v1.compute.regionNetworkEndpointGroups.insert", "projects/demo-proj/regions/us-central1/networkEndpointGroups/i-neg",
			"compute.networkEndpointGroups.create", "gce_network_endpoint_group", "network_endpoint_group_id", region},
		{"global backend service insert", func() (*compute.Operation, error) {
			return e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "i-bs"}).Do()
		}, "v1.compute.backendServices.insert", "projects/demo-proj/global/backendServices/i-bs",
			"compute.backendServices.create", "gce_backend_service", "backend_service_id", "global"},
		{"global backend service patch", func() (*compute.Operation, error) {
			return e.svc.BackendServices.Patch(projID, "i-bs", &compute.BackendService{Iap: &compute.BackendServiceIAP{Enabled: true}}).Do()
		}, "v1.compute.backendServices.patch", "projects/demo-proj/global/backendServices/i-bs",
			"compute.backendServices.update", "gce_backend_service", "backend_service_id", "global"},
		{"regional backend service insert by project number", func() (*compute.Operation, error) {
			return e.svc.RegionBackendServices.Insert("123456789012", region, &compute.BackendService{Name: "i-bs"}).Do()
		}, "v1.compute.regionBackendServices.insert", "projects/123456789012/regions/us-central1/backendServices/i-bs",
			"compute.regionBackendServices.create", "gce_backend_service", "backend_service_id", region},
		{"regional backend service update", func() (*compute.Operation, error) {
			cur, err := e.svc.RegionBackendServices.Get(projID, region, "i-bs").Do()
			if err != nil {
				return nil, err
			}
			cur.Iap = &compute.BackendServiceIAP{Enabled: true}
			return e.svc.RegionBackendServices.Update(projID, region, "i-bs", cur).Do()
		}, "v1.compute.regionBackendServices.update", "projects/demo-proj/regions/us-central1/backendServices/i-bs",
			"compute.regionBackendServices.update", "gce_backend_service", "backend_service_id", region},
		{"url map insert", func() (*compute.Operation, error) {
			return e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "i-map", DefaultService: "global/backendServices/i-bs"}).Do()
		}, "v1.compute.urlMaps.insert", "projects/demo-proj/global/urlMaps/i-map",
			"compute.urlMaps.create", "gce_url_map", "url_map_id", "global"},
		{"target http proxy insert", func() (*compute.Operation, error) {
			return e.svc.TargetHttpProxies.Insert(projID, &compute.TargetHttpProxy{Name: "i-http", UrlMap: "global/urlMaps/i-map"}).Do()
		}, "v1.compute.targetHttpProxies.insert", "projects/demo-proj/global/targetHttpProxies/i-http",
			"compute.targetHttpProxies.create", "gce_target_http_proxy", "target_http_proxy_id", "global"},
		{"forwarding rule insert", func() (*compute.Operation, error) {
			return e.svc.GlobalForwardingRules.Insert(projID, &compute.ForwardingRule{Name: "i-fr", Target: "global/targetHttpProxies/i-http"}).Do()
		}, "v1.compute.globalForwardingRules.insert", "projects/demo-proj/global/forwardingRules/i-fr",
			"compute.globalForwardingRules.create", "gce_forwarding_rule", "forwarding_rule_id", "global"},
		{"managed certificate insert", func() (*compute.Operation, error) {
			return e.svc.SslCertificates.Insert(projID, &compute.SslCertificate{Name: "i-cert", Managed: &compute.SslCertificateManagedSslCertificate{Domains: []string{"i.example.com"}}}).Do()
		}, "v1.compute.sslCertificates.insert", "projects/demo-proj/global/sslCertificates/i-cert",
			"compute.sslCertificates.create", "gce_ssl_certificate", "ssl_certificate_id", "global"},
		{"forwarding rule delete", func() (*compute.Operation, error) {
			return e.svc.GlobalForwardingRules.Delete(projID, "i-fr").Do()
		}, "v1.compute.globalForwardingRules.delete", "projects/demo-proj/global/forwardingRules/i-fr",
			"compute.globalForwardingRules.delete", "gce_forwarding_rule", "forwarding_rule_id", "global"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.c.Audit.Entries())
			op, err := tc.call()
			if err != nil {
				t.Fatal(err)
			}
			e.ok(t)(op, nil)
			entries := e.c.Audit.Entries()[before:]
			if len(entries) != 2 {
				t.Fatalf("%d audit entries, want first and last: %s", len(entries), mustJSON(t, entries))
			}
			first, last := entries[0], entries[1]
			got := []string{first.ProtoPayload.MethodName, first.ProtoPayload.ResourceName, first.ProtoPayload.AuthorizationInfo[0].Permission,
				first.Resource.Type, first.ProtoPayload.ResourceLocation.CurrentLocations[0], last.ProtoPayload.MethodName,
				last.ProtoPayload.ResourceName, first.Operation.ID, last.Operation.ID}
			want := []string{tc.method, tc.resourceName, tc.permission, tc.resourceType, tc.location, tc.method,
				tc.resourceName, op.Name, op.Name}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("audit identity (-want +got):\n%s", diff)
			}
			if first.Resource.Labels[tc.idLabel] != formatID(op.TargetId) || first.Resource.Labels["project_id"] != projID {
				t.Errorf("resource labels %v, want %s=%d and project_id", first.Resource.Labels, tc.idLabel, op.TargetId)
			}
			if !first.Operation.First || !last.Operation.Last || last.ProtoPayload.Response != nil || last.ProtoPayload.AuthorizationInfo != nil {
				t.Errorf("first/last shape wrong: %s", mustJSON(t, entries))
			}
		})
	}
}
