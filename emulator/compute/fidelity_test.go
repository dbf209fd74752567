package compute

import (
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// TestDeleteTakesEffectWhenDone: as at Google, a deleted resource stays
// (readable, holding its references) until its delete operation is done;
// meanwhile other mutations of it are 400 resourceNotReady and deleting
// what it references is 400 resourceInUseByAnotherResource (recorded: a
// go-vcr cassette's teardown in k8s-config-connector).
func TestDeleteTakesEffectWhenDone(t *testing.T) {
	e := newEnv(t)
	e.s.SetOperationDelay(-1) // only get/wait complete operations
	e.lb(t)
	op, err := e.svc.GlobalForwardingRules.Delete(projID, "hello-fr").Do()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GlobalForwardingRules.Get(projID, "hello-fr").Do(); err != nil {
		t.Errorf("read while its delete runs: %v, want the rule", err)
	}
	_, err = e.svc.TargetHttpsProxies.Delete(projID, "hello-proxy").Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	_, err = e.svc.GlobalForwardingRules.SetTarget(projID, "hello-fr", &compute.TargetReference{Target: "global/targetHttpsProxies/hello-proxy"}).Do()
	apiErr(t, err, 400, "resourceNotReady")
	_, err = e.svc.GlobalForwardingRules.Delete(projID, "hello-fr").Do()
	apiErr(t, err, 400, "resourceNotReady")
	if _, err := e.svc.GlobalOperations.Wait(projID, op.Name).Do(); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.GlobalForwardingRules.Get(projID, "hello-fr").Do()
	apiErr(t, err, 404, "notFound")
	e.ok(t)(e.svc.TargetHttpsProxies.Delete(projID, "hello-proxy").Do())
}

// TestInstanceGroupBackends: zonal unmanaged instance groups (operations in
// zones/Z, printed with zone and size) as backend-service backends, given as
// beta or v1 URLs (recorded: k8s-config-connector's global and regional
// backend service fixtures); serverless NEGs cannot be mixed with them, and
// a regional backend service takes only groups of its region.
func TestInstanceGroupBackends(t *testing.T) {
	e := newEnv(t)
	op, err := e.svc.InstanceGroups.Insert(projID, "us-central1-a", &compute.InstanceGroup{Name: "ig",
		Network: "global/networks/default", NamedPorts: []*compute.NamedPort{{Name: "http", Port: 8080}}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	base := "https://www.googleapis.com/compute/v1/projects/" + projID
	if op.Zone != base+"/zones/us-central1-a" || !strings.HasPrefix(op.SelfLink, base+"/zones/us-central1-a/operations/") {
		t.Errorf("operation zone %q selfLink %q", op.Zone, op.SelfLink)
	}
	if _, err := e.svc.ZoneOperations.Get(projID, "us-central1-a", op.Name).Do(); err != nil {
		t.Fatal(err)
	}
	ig, err := e.svc.InstanceGroups.Get(projID, "us-central1-a", "ig").Do()
	if err != nil {
		t.Fatal(err)
	}
	if ig.Zone != base+"/zones/us-central1-a" || ig.Network != base+"/global/networks/default" || ig.Kind != "compute#instanceGroup" {
		t.Errorf("instance group %+v", ig)
	}
	_, err = e.svc.InstanceGroups.Get(projID, "us-central1-z", "ig").Do()
	apiErr(t, err, 404, "notFound")

	beta := "https://www.googleapis.com/compute/beta/projects/" + projID + "/zones/us-central1-a/instanceGroups/ig"
	e.ok(t)(e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "vm-bs",
		Backends: []*compute.Backend{{Group: beta}}}).Do())
	bs, err := e.svc.BackendServices.Get(projID, "vm-bs").Do()
	if err != nil {
		t.Fatal(err)
	}
	if bs.Backends[0].Group != beta || bs.Backends[0].BalancingMode != "UTILIZATION" {
		t.Errorf("backend %+v", bs.Backends[0])
	}
	_, err = e.svc.InstanceGroups.Delete(projID, "us-central1-a", "ig").Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")

	neg := e.neg(t, region, "hello-neg", "hello")
	for _, c := range []struct {
		name   string
		region string
		groups []string
		code   int
	}{
		{"serverless and instance group", "", []string{neg, beta}, 400},
		{"missing group", "", []string{"https://www.googleapis.com/compute/v1/projects/" + projID + "/zones/us-central1-a/instanceGroups/nope"}, 404},
		{"partial url", "", []string{"projects/" + projID + "/zones/us-central1-a/instanceGroups/ig"}, 400},
		{"group in another region", "europe-west1", []string{beta}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			var backends []*compute.Backend
			for _, g := range c.groups {
				backends = append(backends, &compute.Backend{Group: g})
			}
			bs := &compute.BackendService{Name: "x", Backends: backends}
			if c.region == "" {
				_, err = e.svc.BackendServices.Insert(projID, bs).Do()
			} else {
				bs.LoadBalancingScheme = "INTERNAL"
				_, err = e.svc.RegionBackendServices.Insert(projID, c.region, bs).Do()
			}
			apiErr(t, err, c.code, map[int]string{400: "invalid", 404: "notFound"}[c.code])
		})
	}
}

// TestSignedURLKeys: addSignedUrlKey / deleteSignedUrlKey list key names in
// cdnPolicy.signedUrlKeyNames, never the values (recorded:
// k8s-config-connector's computebackendservicesignedurlkey fixtures).
func TestSignedURLKeys(t *testing.T) {
	e := newEnv(t)
	e.ok(t)(e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "cdn-bs"}).Do())
	const value = "MTIzNDU2Nzg5MDEyMzQ1Ng==" // 16 bytes, as recorded
	for _, c := range []struct{ name, key, value string }{
		{"short value", "k", "MTIz"},
		{"bad name", "Key_1", value},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.svc.BackendServices.AddSignedUrlKey(projID, "cdn-bs", &compute.SignedUrlKey{KeyName: c.key, KeyValue: c.value}).Do()
			apiErr(t, err, 400, "invalid")
		})
	}
	op := e.ok(t)(e.svc.BackendServices.AddSignedUrlKey(projID, "cdn-bs", &compute.SignedUrlKey{KeyName: "key-1", KeyValue: value}).Do())
	if op.OperationType != "addSignedUrlKey" {
		t.Errorf("operation type %q", op.OperationType)
	}
	_, err := e.svc.BackendServices.AddSignedUrlKey(projID, "cdn-bs", &compute.SignedUrlKey{KeyName: "key-1", KeyValue: value}).Do()
	apiErr(t, err, 400, "invalid")
	bs, err := e.svc.BackendServices.Get(projID, "cdn-bs").Do()
	if err != nil || bs.CdnPolicy == nil || len(bs.CdnPolicy.SignedUrlKeyNames) != 1 || bs.CdnPolicy.SignedUrlKeyNames[0] != "key-1" {
		t.Fatalf("after add: %v %+v", err, bs.CdnPolicy)
	}
	_, err = e.svc.BackendServices.DeleteSignedUrlKey(projID, "cdn-bs", "nope").Do()
	apiErr(t, err, 400, "invalid")
	e.ok(t)(e.svc.BackendServices.DeleteSignedUrlKey(projID, "cdn-bs", "key-1").Do())
	if bs, err = e.svc.BackendServices.Get(projID, "cdn-bs").Do(); err != nil || bs.CdnPolicy == nil || len(bs.CdnPolicy.SignedUrlKeyNames) != 0 {
		t.Errorf("after delete: %v %+v, want an empty cdnPolicy", err, bs.CdnPolicy)
	}
}

// TestRegionalProxyCertificateManager: a regional target HTTPS proxy takes
// Certificate Manager certificates of its region in sslCertificates, not
// mixed with Compute SSL certificates (API reference; recorded:
// regionaltargethttpsproxycertificatemanagercertificates).
func TestRegionalProxyCertificateManager(t *testing.T) {
	e := newEnv(t)
	e.ok(t)(e.svc.RegionBackendServices.Insert(projID, region, &compute.BackendService{Name: "rbs", LoadBalancingScheme: "EXTERNAL_MANAGED", Protocol: "HTTPS"}).Do())
	e.ok(t)(e.svc.RegionUrlMaps.Insert(projID, region, &compute.UrlMap{Name: "rum", DefaultService: "regions/" + region + "/backendServices/rbs"}).Do())
	cert := func(loc string) string {
		return "//certificatemanager.googleapis.com/projects/" + projID + "/locations/" + loc + "/certificates/c"
	}
	certPEM, keyPEM := selfSigned(t, "x.example")
	e.ok(t)(e.svc.RegionSslCertificates.Insert(projID, region, &compute.SslCertificate{Name: "classic", Certificate: certPEM, PrivateKey: keyPEM}).Do())
	for _, c := range []struct {
		name  string
		certs []string
	}{
		{"other location", []string{cert("europe-west1")}},
		{"mixed", []string{cert(region), "regions/" + region + "/sslCertificates/classic"}},
		{"malformed", []string{"//certificatemanager.googleapis.com/projects/" + projID + "/certificates/c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.svc.RegionTargetHttpsProxies.Insert(projID, region, &compute.TargetHttpsProxy{Name: "p", UrlMap: "regions/" + region + "/urlMaps/rum", SslCertificates: c.certs}).Do()
			apiErr(t, err, 400, "invalid")
		})
	}
	e.ok(t)(e.svc.RegionTargetHttpsProxies.Insert(projID, region, &compute.TargetHttpsProxy{Name: "p", UrlMap: "regions/" + region + "/urlMaps/rum", SslCertificates: []string{cert(region)}}).Do())
	tp, err := e.svc.RegionTargetHttpsProxies.Get(projID, region, "p").Do()
	if err != nil || len(tp.SslCertificates) != 1 || tp.SslCertificates[0] != cert(region) || tp.QuicOverride != "" {
		t.Errorf("got %v %+v", err, tp)
	}
}
