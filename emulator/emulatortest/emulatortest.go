// Package emulatortest is test support beside the emulator: it starts the
// emulated Google APIs iapguard's adapters talk to (Cloud Run Admin v2 with
// long-running operations, Compute v1, Service Usage v1beta1, ...) on one
// 127.0.0.1 address, gRPC and REST multiplexed as the full emulator does,
// and seeds fixtures (services, IAM policies, serverless NEGs, backend
// services, HTTPS frontends) for tests.
//
// It runs the assembled emulator (package emulator), so the tests also
// check that the surfaces work together on one address. Like the rest of
// the emulator it imports no iapguard product package: tests build their
// own clients against Env.Addr (internal/gcp.NewClients with
// Options.EmulatorHost), the way the product is pointed at the emulator.
// Fixtures are written through the official Compute client, with
// Principal as the caller.
package emulatortest

import (
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"context"
	"crypto/rand"
	"net/http"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	computeapi "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/cloudrun"
	"github.com/iapguard/iapguard/emulator/compute"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/secretmanager"
	"github.com/iapguard/iapguard/emulator/serviceusage"
)

// The emulated project and the region fixtures live in.
const (
	Project       = "demo-project"
	ProjectNumber = 123456789012
	Region        = "us-central1"
	// Principal is the identity the clients send; the emulator's audit
	// entries name it as the writer.
	Principal = "iapguard@demo-project.iam.gserviceaccount.com"
	// Agent is the IAP service agent of Project.
	Agent = "service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"
	// RecordKey is the Secret Manager secret version, seeded with a random
	// key, that signs iapguard's access records (gcp.Options.RecordKey).
	RecordKey = "projects/123456789012/secrets/iapguard-record-key/versions/latest"
)

// Env is a running emulator.
type Env struct {
	Core         *core.Core
	Run          *cloudrun.Server
	Compute      *compute.Server
	ServiceUsage *serviceusage.Server
	// SecretManager holds RecordKey.
	SecretManager *secretmanager.Server
	// Addr is the emulator's host:port (IAPGUARD_EMULATOR_HOST).
	Addr string

	// fixtures is the Compute client that writes fixtures.
	fixtures *computeapi.Service
}

// Options adjust Start.
type Options struct {
	// Run configures the Cloud Run surface (LRO mode).
	Run cloudrun.Options
}

// Start serves the surfaces until the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	em, err := emulator.New(emulator.Options{
		Projects:  []core.Project{{ID: Project, Number: ProjectNumber}, {ID: "other-project", Number: 42}},
		Principal: core.DefaultPrincipal,
		Run:       opts.Run,
	})
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	em.Compute.SetRegions(Region, "europe-west1")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if _, err := em.SecretManager.Put(Project, "iapguard-record-key", key); err != nil {
		t.Fatalf("seeding the access-record key: %v", err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("starting the emulator: %v", err)
	}
	t.Cleanup(func() { _ = em.Close() })
	e := &Env{Core: em.Core, Run: em.Run, Compute: em.Compute, ServiceUsage: em.ServiceUsage, SecretManager: em.SecretManager, Addr: em.Addr()}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: principalTransport{tr}}
	cs, err := computeapi.NewService(context.Background(), option.WithEndpoint("http://"+e.Addr+"/compute/v1/"), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatalf("creating the fixtures' Compute client: %v", err)
	}
	e.fixtures = cs
	return e
}

// StartPubSub starts a bare emulator (no projects seeded) with topics
// created, serving until the test ends: for tests of publishing alone.
func StartPubSub(t testing.TB, topics ...string) *emulator.Emulator {
	t.Helper()
	em, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("starting the emulator: %v", err)
	}
	t.Cleanup(func() { _ = em.Close() })
	for _, topic := range topics {
		if _, err := em.PubSub.GServer.CreateTopic(context.Background(), &pubsubpb.Topic{Name: topic}); err != nil {
			t.Fatalf("creating topic %s: %v", topic, err)
		}
	}
	return em
}

// principalTransport names Principal as the caller of fixture writes
// (header X-Emulator-Principal).
type principalTransport struct{ base http.RoundTripper }

func (p principalTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Emulator-Principal", Principal)
	return p.base.RoundTrip(r)
}

// Link returns the canonical URL of a Compute resource path.
func Link(path string) string { return "https://www.googleapis.com/compute/v1/" + path }

// Svc describes a Cloud Run service fixture.
type Svc struct {
	Name         string
	Labels       map[string]string
	Annotations  map[string]string
	Ingress      runpb.IngressTraffic
	IAP          bool
	NoInvokerIAM bool
}

// SeedService stores a service directly (no call accounting, no audit).
func (e *Env) SeedService(t testing.TB, s Svc) *runpb.Service {
	t.Helper()
	in := &runpb.Service{
		Labels:             s.Labels,
		Annotations:        s.Annotations,
		Ingress:            s.Ingress,
		IapEnabled:         s.IAP,
		InvokerIamDisabled: s.NoInvokerIAM,
		Template:           &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}},
	}
	out, err := e.Run.Seed(Project, Region, s.Name, in)
	if err != nil {
		t.Fatalf("seeding service %s: %v", s.Name, err)
	}
	return out
}

// SeedPolicy replaces a service's IAM policy directly.
func (e *Env) SeedPolicy(t testing.TB, service string, p *iampb.Policy) *iampb.Policy {
	t.Helper()
	out, err := e.Run.SeedIAMPolicy(Project, Region, service, p)
	if err != nil {
		t.Fatalf("seeding IAM policy of %s: %v", service, err)
	}
	return out
}

// Service returns the stored service.
func (e *Env) Service(t testing.TB, name string) *runpb.Service {
	t.Helper()
	s, ok := e.Run.Service(Project, Region, name)
	if !ok {
		t.Fatalf("service %s not found", name)
	}
	return s
}

// Policy returns the stored IAM policy of a service.
func (e *Env) Policy(t testing.TB, name string) *iampb.Policy {
	t.Helper()
	p, ok := e.Run.IAMPolicy(Project, Region, name)
	if !ok {
		t.Fatalf("IAM policy of %s not found", name)
	}
	return p
}

// compute returns the Compute client used for fixtures.
func (e *Env) compute() *computeapi.Service { return e.fixtures }

func insertDone(t testing.TB, what string, op *computeapi.Operation, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("inserting %s: %v", what, err)
	}
	if op.Error != nil {
		t.Fatalf("inserting %s: operation error %+v", what, op.Error.Errors[0])
	}
}

// AddNEG creates a serverless NEG in Region pointing at service (or, with
// service empty, selecting by urlMask) and returns its self link.
func (e *Env) AddNEG(t testing.TB, name, service, urlMask string) string {
	t.Helper()
	neg := &computeapi.NetworkEndpointGroup{Name: name, NetworkEndpointType: "SERVERLESS",
		CloudRun: &computeapi.NetworkEndpointGroupCloudRun{Service: service, UrlMask: urlMask}}
	op, err := e.compute().RegionNetworkEndpointGroups.Insert(Project, Region, neg).Do()
	insertDone(t, "NEG "+name, op, err)
	return Link("projects/" + Project + "/regions/" + Region + "/networkEndpointGroups/" + name)
}

// AddInstanceGroup creates an unmanaged instance group in zone Region-a
// (a virtual-machine backend, which fronts no Cloud Run service) and
// returns its self link.
func (e *Env) AddInstanceGroup(t testing.TB, name string) string {
	t.Helper()
	zone := Region + "-a"
	op, err := e.compute().InstanceGroups.Insert(Project, zone, &computeapi.InstanceGroup{Name: name}).Do()
	insertDone(t, "instance group "+name, op, err)
	return Link("projects/" + Project + "/zones/" + zone + "/instanceGroups/" + name)
}

// Backend describes a backend service fixture; Region "" is global.
type Backend struct {
	Name   string
	Region string
	Groups []string // NEG or instance group self links
	CDN    bool
	IAP    bool
}

// Path returns the backend service's resource path.
func (b Backend) Path() string {
	if b.Region == "" {
		return "projects/" + Project + "/global/backendServices/" + b.Name
	}
	return "projects/" + Project + "/regions/" + b.Region + "/backendServices/" + b.Name
}

// AddBackend creates a backend service and returns its self link.
func (e *Env) AddBackend(t testing.TB, b Backend) string {
	t.Helper()
	bs := &computeapi.BackendService{Name: b.Name, LoadBalancingScheme: "EXTERNAL_MANAGED", Protocol: "HTTPS", EnableCDN: b.CDN}
	if b.IAP {
		bs.Iap = &computeapi.BackendServiceIAP{Enabled: true}
	}
	for _, g := range b.Groups {
		bs.Backends = append(bs.Backends, &computeapi.Backend{Group: g})
	}
	var (
		op  *computeapi.Operation
		err error
	)
	if b.Region == "" {
		op, err = e.compute().BackendServices.Insert(Project, bs).Do()
	} else {
		op, err = e.compute().RegionBackendServices.Insert(Project, b.Region, bs).Do()
	}
	insertDone(t, "backend service "+b.Name, op, err)
	return Link(b.Path())
}

// GetBackend reads a backend service through the Compute client.
func (e *Env) GetBackend(t testing.TB, b Backend) *computeapi.BackendService {
	t.Helper()
	var (
		out *computeapi.BackendService
		err error
	)
	if b.Region == "" {
		out, err = e.compute().BackendServices.Get(Project, b.Name).Do()
	} else {
		out, err = e.compute().RegionBackendServices.Get(Project, b.Region, b.Name).Do()
	}
	if err != nil {
		t.Fatalf("getting backend service %s: %v", b.Name, err)
	}
	return out
}

// AddFrontend creates a global URL map whose default service is the backend
// service at backendLink and, when https, a managed certificate, a target
// HTTPS proxy and a forwarding rule on port 443; otherwise a target HTTP
// proxy and a rule on port 80.
func (e *Env) AddFrontend(t testing.TB, name, backendLink string, https bool) {
	t.Helper()
	c := e.compute()
	op, err := c.UrlMaps.Insert(Project, &computeapi.UrlMap{Name: name, DefaultService: backendLink}).Do()
	insertDone(t, "URL map "+name, op, err)
	mapLink := Link("projects/" + Project + "/global/urlMaps/" + name)
	var target string
	if https {
		op, err = c.SslCertificates.Insert(Project, &computeapi.SslCertificate{Name: name, Type: "MANAGED",
			Managed: &computeapi.SslCertificateManagedSslCertificate{Domains: []string{name + ".example.com"}}}).Do()
		insertDone(t, "certificate "+name, op, err)
		op, err = c.TargetHttpsProxies.Insert(Project, &computeapi.TargetHttpsProxy{Name: name, UrlMap: mapLink,
			SslCertificates: []string{Link("projects/" + Project + "/global/sslCertificates/" + name)}}).Do()
		insertDone(t, "target HTTPS proxy "+name, op, err)
		target = Link("projects/" + Project + "/global/targetHttpsProxies/" + name)
	} else {
		op, err = c.TargetHttpProxies.Insert(Project, &computeapi.TargetHttpProxy{Name: name, UrlMap: mapLink}).Do()
		insertDone(t, "target HTTP proxy "+name, op, err)
		target = Link("projects/" + Project + "/global/targetHttpProxies/" + name)
	}
	port := "80-80"
	if https {
		port = "443-443"
	}
	op, err = c.GlobalForwardingRules.Insert(Project, &computeapi.ForwardingRule{Name: name, Target: target,
		IPProtocol: "TCP", PortRange: port, LoadBalancingScheme: "EXTERNAL_MANAGED"}).Do()
	insertDone(t, "forwarding rule "+name, op, err)
}

// Snapshot returns the emulator's call counters.
func (e *Env) Snapshot() core.Snapshot { return e.Core.Stats.Snapshot() }

// WriteMethods are the method keys of the writes iapguard may make.
var WriteMethods = []string{
	"google.cloud.run.v2.Services.SetIamPolicy",
	"google.cloud.run.v2.Services.UpdateService",
	"compute.backendServices.patch",
	"compute.regionBackendServices.patch",
}

// Writes counts the write calls in a snapshot difference.
func Writes(d core.Snapshot) int64 {
	var n int64
	for _, m := range WriteMethods {
		n += d.Calls[m]
	}
	return n
}
