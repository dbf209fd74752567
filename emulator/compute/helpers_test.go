package compute

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/iapguard/iapguard/emulator/core"
)

const (
	projID  = "demo-proj"
	projNum = 123456789012
	region  = "us-central1"
)

type env struct {
	c   *core.Core
	s   *Server
	svc *compute.Service
	url string // http://127.0.0.1:N
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := core.New("", core.Project{ID: projID, Number: projNum}, core.Project{ID: "other-proj", Number: 42})
	s := New(c)
	mux := http.NewServeMux()
	mux.Handle("/compute/v1/", s)
	mux.Handle("/compute/beta/", s)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	svc, err := compute.NewService(context.Background(),
		option.WithEndpoint(ts.URL+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("compute.NewService: %v", err)
	}
	return &env{c: c, s: s, svc: svc, url: ts.URL}
}

// ok returns a function that asserts a mutation was accepted (RUNNING) and
// waits for its operation through the matching operations collection:
// e.ok(t)(call.Do()).
func (e *env) ok(t *testing.T) func(*compute.Operation, error) *compute.Operation {
	return func(op *compute.Operation, err error) *compute.Operation {
		t.Helper()
		return e.done(t, op, err)
	}
}

func (e *env) done(t *testing.T, op *compute.Operation, err error) *compute.Operation {
	t.Helper()
	if err != nil {
		t.Fatalf("mutation: %v", err)
	}
	if op.Status != "RUNNING" {
		t.Fatalf("mutation returned status %q, want RUNNING", op.Status)
	}
	var got *compute.Operation
	if op.Region != "" {
		got, err = e.svc.RegionOperations.Wait(projID, lastSeg(op.Region), op.Name).Do()
	} else {
		got, err = e.svc.GlobalOperations.Wait(projID, op.Name).Do()
	}
	if err != nil {
		t.Fatalf("wait %s: %v", op.Name, err)
	}
	if got.Status != "DONE" || got.Progress != 100 || got.EndTime == "" {
		t.Fatalf("wait %s: status %q progress %d endTime %q, want DONE 100 set", op.Name, got.Status, got.Progress, got.EndTime)
	}
	return got
}

func lastSeg(s string) string { return s[strings.LastIndex(s, "/")+1:] }

func (e *env) neg(t *testing.T, reg, name, service string) string {
	t.Helper()
	op, err := e.svc.RegionNetworkEndpointGroups.Insert(projID, reg, &compute.NetworkEndpointGroup{
		Name: name, NetworkEndpointType: "SERVERLESS", CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: service},
	}).Do()
	e.ok(t)(op, err)
	return linkBase + "projects/" + projID + "/regions/" + reg + "/networkEndpointGroups/" + name
}

func (e *env) backend(t *testing.T, name string, negLinks ...string) *compute.BackendService {
	t.Helper()
	bs := &compute.BackendService{Name: name, Protocol: "HTTPS", LoadBalancingScheme: "EXTERNAL_MANAGED"}
	for _, l := range negLinks {
		bs.Backends = append(bs.Backends, &compute.Backend{Group: l})
	}
	e.ok(t)(e.svc.BackendServices.Insert(projID, bs).Do())
	got, err := e.svc.BackendServices.Get(projID, name).Do()
	if err != nil {
		t.Fatalf("get backend %s: %v", name, err)
	}
	return got
}

// lb builds a whole external HTTPS load balancer in front of Cloud Run
// service "hello" and returns the backend service name.
func (e *env) lb(t *testing.T) {
	t.Helper()
	neg := e.neg(t, region, "hello-neg", "hello")
	e.backend(t, "hello-bs", neg)
	e.ok(t)(e.svc.UrlMaps.Insert(projID, &compute.UrlMap{Name: "hello-map", DefaultService: "global/backendServices/hello-bs"}).Do())
	cert, key := selfSigned(t, "hello.example.com")
	e.ok(t)(e.svc.SslCertificates.Insert(projID, &compute.SslCertificate{Name: "hello-cert", Certificate: cert, PrivateKey: key}).Do())
	e.ok(t)(e.svc.TargetHttpsProxies.Insert(projID, &compute.TargetHttpsProxy{
		Name: "hello-proxy", UrlMap: "projects/" + projID + "/global/urlMaps/hello-map",
		SslCertificates: []string{"global/sslCertificates/hello-cert"},
	}).Do())
	e.ok(t)(e.svc.GlobalForwardingRules.Insert(projID, &compute.ForwardingRule{
		Name: "hello-fr", PortRange: "443", LoadBalancingScheme: "EXTERNAL_MANAGED",
		// A beta URL naming the project by number: canonicalised on write.
		Target: "https://www.googleapis.com/compute/beta/projects/123456789012/global/targetHttpsProxies/hello-proxy",
	}).Do())
}

func selfSigned(t *testing.T, dns string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dns}, DNSNames: []string{dns},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

// apiErr asserts err is a *googleapi.Error with code and reason.
func apiErr(t *testing.T, err error, code int, reason string) *googleapi.Error {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %v (%T), want *googleapi.Error %d %s", err, err, code, reason)
	}
	if ge.Code != code || len(ge.Errors) == 0 || ge.Errors[0].Reason != reason {
		t.Fatalf("error %v, want code %d reason %s", ge, code, reason)
	}
	return ge
}

// raw performs an HTTP request against the emulator and decodes the JSON
// answer.
func (e *env) raw(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
	}
	return resp.StatusCode, m
}

// flatten collects the dotted key paths of decoded JSON; array elements
// share the path "key[]"; empty objects and arrays are leaves.
func flatten(prefix string, v any, out map[string]bool) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			out[prefix] = true
		}
		for k, sub := range t {
			flatten(join(k), sub, out)
		}
	case []any:
		if len(t) == 0 {
			out[prefix] = true
		}
		for _, sub := range t {
			flatten(prefix+"[]", sub, out)
		}
	default:
		out[prefix] = true
	}
}
