// Package demo builds the sandbox's demo project through the official Google
// clients only — exactly as a user's own tooling would against real Google
// Cloud — so it doubles as proof that the emulator serves them unchanged.
package demo

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/compute/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/internal/gcp"
)

// Clients are official clients pointed at one endpoint.
type Clients struct {
	Run     *run.ServicesClient
	Compute *compute.Service
}

// Dial connects official clients to an emulator at addr (host:port), with
// no credentials, as IAPGUARD_EMULATOR_HOST users do.
func Dial(ctx context.Context, addr string) (*Clients, error) {
	rc, err := run.NewServicesClient(ctx, gcp.EmulatorGRPCOptions(addr, "")...)
	if err != nil {
		return nil, fmt.Errorf("connecting Cloud Run client to %s: %w", addr, err)
	}
	cs, err := compute.NewService(ctx, gcp.EmulatorRESTOptions(addr, "compute/v1/", nil)...)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("connecting Compute client to %s: %w", addr, err)
	}
	return &Clients{Run: rc, Compute: cs}, nil
}

// Close releases the clients.
func (c *Clients) Close() error { return c.Run.Close() }

// ServiceSpec describes a demo Cloud Run service.
type ServiceSpec struct {
	Name    string
	Labels  map[string]string
	Ingress runpb.IngressTraffic // 0: server default (all)
	// Public grants roles/run.invoker to allUsers, as
	// `gcloud run deploy --allow-unauthenticated` does.
	Public bool
	// ExtraInvokers are other members bound to roles/run.invoker.
	ExtraInvokers []string
	// Bindings are further role → members bindings (someone else's grants).
	Bindings map[string][]string
}

// CreateService creates the service, waits for the operation and sets its
// IAM policy.
func (c *Clients) CreateService(ctx context.Context, project, region string, s ServiceSpec) (*runpb.Service, error) {
	op, err := c.Run.CreateService(ctx, &runpb.CreateServiceRequest{
		Parent:    fmt.Sprintf("projects/%s/locations/%s", project, region),
		ServiceId: s.Name,
		Service: &runpb.Service{
			Labels:  s.Labels,
			Ingress: s.Ingress,
			Template: &runpb.RevisionTemplate{
				Containers: []*runpb.Container{{Image: "demo/" + s.Name + ":1"}},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating service %s: %w", s.Name, err)
	}
	svc, err := op.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("waiting for service %s: %w", s.Name, err)
	}
	var members []string
	if s.Public {
		members = append(members, "allUsers")
	}
	members = append(members, s.ExtraInvokers...)
	var bindings []*iampb.Binding
	if len(members) > 0 {
		bindings = append(bindings, &iampb.Binding{Role: "roles/run.invoker", Members: members})
	}
	for role, ms := range s.Bindings {
		bindings = append(bindings, &iampb.Binding{Role: role, Members: ms})
	}
	if len(bindings) > 0 {
		_, err := c.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{
			Resource: svc.GetName(),
			Policy:   &iampb.Policy{Bindings: bindings},
		})
		if err != nil {
			return nil, fmt.Errorf("setting IAM policy of %s: %w", s.Name, err)
		}
	}
	return svc, nil
}

// LBSpec describes an external HTTPS load balancer in front of one service.
type LBSpec struct {
	Service string // Cloud Run service name
	Prefix  string // resource name prefix (default: service name)
	CDN     bool   // enableCDN on the backend service
	IAP     bool   // iap.enabled on the backend service
	// HTTPOnly builds an HTTP frontend (target HTTP proxy) instead of HTTPS.
	HTTPOnly bool
	// Regional builds a regional external Application Load Balancer:
	// regional backend service, URL map, self-managed certificate, target
	// HTTPS proxy, and a forwarding rule in a VPC network of its own with
	// the region's proxy-only subnet, as Google requires (HTTPOnly and CDN
	// do not apply).
	Regional bool
}

// LB names the resources of a built load balancer.
type LB struct {
	NEG, BackendService, URLMap, Certificate, Proxy, ForwardingRule string
	// Network and ProxySubnet are set for a regional load balancer only.
	Network, ProxySubnet string
}

// BuildLoadBalancer builds serverless NEG → backend service → URL map →
// (certificate →) target proxy → global forwarding rule, waiting for each
// operation, the way the Cloud Run + IAP guide's prerequisites describe.
func (c *Clients) BuildLoadBalancer(ctx context.Context, project, region string, s LBSpec) (LB, error) {
	p := cmp.Or(s.Prefix, s.Service)
	lb := LB{NEG: p + "-neg", BackendService: p + "-backend", URLMap: p + "-urlmap",
		Certificate: p + "-cert", Proxy: p + "-proxy", ForwardingRule: p + "-fr"}
	cs := c.Compute
	if s.Regional {
		lb.Network, lb.ProxySubnet = p+"-net", p+"-proxy-only"
		return lb, c.buildRegional(ctx, project, region, s, lb)
	}

	if err := c.insertNEG(ctx, project, region, lb.NEG, s.Service); err != nil {
		return lb, err
	}
	neg, err := cs.RegionNetworkEndpointGroups.Get(project, region, lb.NEG).Context(ctx).Do()
	if err != nil {
		return lb, fmt.Errorf("getting NEG %s: %w", lb.NEG, err)
	}
	be := &compute.BackendService{
		Name: lb.BackendService, LoadBalancingScheme: "EXTERNAL_MANAGED", Protocol: "HTTPS",
		Backends:  []*compute.Backend{{Group: neg.SelfLink}},
		EnableCDN: s.CDN,
	}
	if s.IAP {
		be.Iap = &compute.BackendServiceIAP{Enabled: true}
	}
	op, err := cs.BackendServices.Insert(project, be).Context(ctx).Do()
	if err := c.waitGlobal(ctx, project, op, err, "inserting backend service "+lb.BackendService); err != nil {
		return lb, err
	}
	bs, err := cs.BackendServices.Get(project, lb.BackendService).Context(ctx).Do()
	if err != nil {
		return lb, fmt.Errorf("getting backend service %s: %w", lb.BackendService, err)
	}
	op, err = cs.UrlMaps.Insert(project, &compute.UrlMap{Name: lb.URLMap, DefaultService: bs.SelfLink}).Context(ctx).Do()
	if err := c.waitGlobal(ctx, project, op, err, "inserting URL map "+lb.URLMap); err != nil {
		return lb, err
	}
	um, err := cs.UrlMaps.Get(project, lb.URLMap).Context(ctx).Do()
	if err != nil {
		return lb, fmt.Errorf("getting URL map %s: %w", lb.URLMap, err)
	}
	var target string
	if s.HTTPOnly {
		lb.Certificate = ""
		op, err = cs.TargetHttpProxies.Insert(project, &compute.TargetHttpProxy{Name: lb.Proxy, UrlMap: um.SelfLink}).Context(ctx).Do()
		if err := c.waitGlobal(ctx, project, op, err, "inserting target HTTP proxy "+lb.Proxy); err != nil {
			return lb, err
		}
		px, err := cs.TargetHttpProxies.Get(project, lb.Proxy).Context(ctx).Do()
		if err != nil {
			return lb, fmt.Errorf("getting target HTTP proxy %s: %w", lb.Proxy, err)
		}
		target = px.SelfLink
	} else {
		op, err = cs.SslCertificates.Insert(project, &compute.SslCertificate{
			Name: lb.Certificate, Type: "MANAGED",
			Managed: &compute.SslCertificateManagedSslCertificate{Domains: []string{s.Service + ".example.com"}},
		}).Context(ctx).Do()
		if err := c.waitGlobal(ctx, project, op, err, "inserting certificate "+lb.Certificate); err != nil {
			return lb, err
		}
		cert, err := cs.SslCertificates.Get(project, lb.Certificate).Context(ctx).Do()
		if err != nil {
			return lb, fmt.Errorf("getting certificate %s: %w", lb.Certificate, err)
		}
		op, err = cs.TargetHttpsProxies.Insert(project, &compute.TargetHttpsProxy{
			Name: lb.Proxy, UrlMap: um.SelfLink, SslCertificates: []string{cert.SelfLink},
		}).Context(ctx).Do()
		if err := c.waitGlobal(ctx, project, op, err, "inserting target HTTPS proxy "+lb.Proxy); err != nil {
			return lb, err
		}
		px, err := cs.TargetHttpsProxies.Get(project, lb.Proxy).Context(ctx).Do()
		if err != nil {
			return lb, fmt.Errorf("getting target HTTPS proxy %s: %w", lb.Proxy, err)
		}
		target = px.SelfLink
	}
	port := "443"
	if s.HTTPOnly {
		port = "80"
	}
	op, err = cs.GlobalForwardingRules.Insert(project, &compute.ForwardingRule{
		Name: lb.ForwardingRule, Target: target, PortRange: port,
		IPProtocol: "TCP", LoadBalancingScheme: "EXTERNAL_MANAGED",
	}).Context(ctx).Do()
	if err := c.waitGlobal(ctx, project, op, err, "inserting forwarding rule "+lb.ForwardingRule); err != nil {
		return lb, err
	}
	return lb, nil
}

// buildRegional builds the regional external Application Load Balancer in
// front of s.Service (cloud.google.com/load-balancing/docs/https/setting-up-reg-ext-https-serverless).
func (c *Clients) buildRegional(ctx context.Context, project, region string, s LBSpec, lb LB) error {
	cs := c.Compute
	wait := func(op *compute.Operation, err error, what string) error {
		return c.waitRegion(ctx, project, region, op, err, what)
	}
	link := func(collection, name string) string {
		return "https://www.googleapis.com/compute/v1/projects/" + project + "/regions/" + region + "/" + collection + "/" + name
	}
	if err := c.insertNEG(ctx, project, region, lb.NEG, s.Service); err != nil {
		return err
	}
	be := &compute.BackendService{
		Name: lb.BackendService, LoadBalancingScheme: "EXTERNAL_MANAGED", Protocol: "HTTPS",
		Backends: []*compute.Backend{{Group: link("networkEndpointGroups", lb.NEG)}},
	}
	if s.IAP {
		be.Iap = &compute.BackendServiceIAP{Enabled: true}
	}
	op, err := cs.RegionBackendServices.Insert(project, region, be).Context(ctx).Do()
	if err := wait(op, err, "inserting regional backend service "+lb.BackendService); err != nil {
		return err
	}
	op, err = cs.RegionUrlMaps.Insert(project, region, &compute.UrlMap{Name: lb.URLMap,
		DefaultService: link("backendServices", lb.BackendService)}).Context(ctx).Do()
	if err := wait(op, err, "inserting regional URL map "+lb.URLMap); err != nil {
		return err
	}
	certPEM, keyPEM, err := selfSigned(s.Service + ".example.com")
	if err != nil {
		return err
	}
	op, err = cs.RegionSslCertificates.Insert(project, region, &compute.SslCertificate{
		Name: lb.Certificate, Certificate: certPEM, PrivateKey: keyPEM,
	}).Context(ctx).Do()
	if err := wait(op, err, "inserting regional certificate "+lb.Certificate); err != nil {
		return err
	}
	op, err = cs.RegionTargetHttpsProxies.Insert(project, region, &compute.TargetHttpsProxy{
		Name: lb.Proxy, UrlMap: link("urlMaps", lb.URLMap), SslCertificates: []string{link("sslCertificates", lb.Certificate)},
	}).Context(ctx).Do()
	if err := wait(op, err, "inserting regional target HTTPS proxy "+lb.Proxy); err != nil {
		return err
	}
	// The regional external Application Load Balancer's proxies run in a
	// VPC network: the forwarding rule names it, and the region needs an
	// active proxy-only subnet in it.
	op, err = cs.Networks.Insert(project, &compute.Network{Name: lb.Network, AutoCreateSubnetworks: false,
		ForceSendFields: []string{"AutoCreateSubnetworks"}}).Context(ctx).Do()
	if err := c.waitGlobal(ctx, project, op, err, "inserting network "+lb.Network); err != nil {
		return err
	}
	netLink := "projects/" + project + "/global/networks/" + lb.Network
	op, err = cs.Subnetworks.Insert(project, region, &compute.Subnetwork{Name: lb.ProxySubnet, Network: netLink,
		IpCidrRange: "10.129.0.0/23", Purpose: "REGIONAL_MANAGED_PROXY", Role: "ACTIVE"}).Context(ctx).Do()
	if err := wait(op, err, "inserting proxy-only subnet "+lb.ProxySubnet); err != nil {
		return err
	}
	op, err = cs.ForwardingRules.Insert(project, region, &compute.ForwardingRule{
		Name: lb.ForwardingRule, Target: link("targetHttpsProxies", lb.Proxy), PortRange: "443",
		IPProtocol: "TCP", LoadBalancingScheme: "EXTERNAL_MANAGED", Network: netLink,
	}).Context(ctx).Do()
	return wait(op, err, "inserting regional forwarding rule "+lb.ForwardingRule)
}

// selfSigned returns a throwaway self-signed certificate and key for host,
// PEM-encoded (regional certificates are self-managed).
func selfSigned(host string) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})), nil
}

// SetBackendIAP patches iap.enabled on a global backend service with its
// current fingerprint, as `gcloud compute backend-services update --iap` does.
func (c *Clients) SetBackendIAP(ctx context.Context, project, name string, enabled bool) error {
	bs, err := c.Compute.BackendServices.Get(project, name).Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("getting backend service %s: %w", name, err)
	}
	op, err := c.Compute.BackendServices.Patch(project, name, &compute.BackendService{
		Fingerprint: bs.Fingerprint,
		Iap:         &compute.BackendServiceIAP{Enabled: enabled, ForceSendFields: []string{"Enabled"}},
	}).Context(ctx).Do()
	return c.waitGlobal(ctx, project, op, err, "patching backend service "+name)
}

// AddServiceToBackend makes a global backend service front one more Cloud
// Run service: a serverless NEG named neg for service, added to the
// backend's backends with its current fingerprint (a shared backend, as
// `gcloud compute backend-services add-backend` builds one).
func (c *Clients) AddServiceToBackend(ctx context.Context, project, region, backend, service, neg string) error {
	cs := c.Compute
	if err := c.insertNEG(ctx, project, region, neg, service); err != nil {
		return err
	}
	n, err := cs.RegionNetworkEndpointGroups.Get(project, region, neg).Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("getting NEG %s: %w", neg, err)
	}
	bs, err := cs.BackendServices.Get(project, backend).Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("getting backend service %s: %w", backend, err)
	}
	op, err := cs.BackendServices.Patch(project, backend, &compute.BackendService{
		Fingerprint: bs.Fingerprint,
		Backends:    append(bs.Backends, &compute.Backend{Group: n.SelfLink}),
	}).Context(ctx).Do()
	return c.waitGlobal(ctx, project, op, err, "adding NEG "+neg+" to backend service "+backend)
}

func (c *Clients) waitGlobal(ctx context.Context, project string, op *compute.Operation, err error, what string) error {
	return waitOp(op, err, what, func(name string) (*compute.Operation, error) {
		return c.Compute.GlobalOperations.Wait(project, name).Context(ctx).Do()
	})
}

func (c *Clients) waitRegion(ctx context.Context, project, region string, op *compute.Operation, err error, what string) error {
	return waitOp(op, err, what, func(name string) (*compute.Operation, error) {
		return c.Compute.RegionOperations.Wait(project, region, name).Context(ctx).Do()
	})
}

// waitOp waits (poll) for the operation a call started (op, or its error
// err) and says what failed.
func waitOp(op *compute.Operation, err error, what string, poll func(name string) (*compute.Operation, error)) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for op.Status != "DONE" {
		if op, err = poll(op.Name); err != nil {
			return fmt.Errorf("%s: waiting for operation: %w", what, err)
		}
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		return fmt.Errorf("%s: operation failed: %s", what, op.Error.Errors[0].Message)
	}
	return nil
}

// insertNEG creates a serverless NEG for a Cloud Run service and waits.
func (c *Clients) insertNEG(ctx context.Context, project, region, name, service string) error {
	op, err := c.Compute.RegionNetworkEndpointGroups.Insert(project, region, &compute.NetworkEndpointGroup{
		Name: name, NetworkEndpointType: "SERVERLESS",
		CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: service},
	}).Context(ctx).Do()
	return c.waitRegion(ctx, project, region, op, err, "inserting NEG "+name)
}

// Expect is what the sandbox expects of a demo service once iapguard has
// converged.
type Expect struct {
	Service string
	// Outcome is the final outcome kind expected for the service.
	Outcome string
}

// Scenario is the sandbox's demo project.
type Scenario struct {
	Services []ServiceSpec
	LBs      []LBSpec
	Expect   []Expect
}

// DefaultScenario returns the five demo services the sandbox creates.
func DefaultScenario() Scenario {
	enabled := map[string]string{"iap": "enabled", "team": "web"}
	return Scenario{
		Services: []ServiceSpec{
			{Name: "storefront", Labels: enabled, Public: true, ExtraInvokers: []string{"group:web-team@example.com"}},
			{Name: "reports", Labels: map[string]string{"iap": "enabled"}, Public: true},
			{Name: "assets", Labels: map[string]string{"iap": "enabled"}},
			{Name: "marketing", Labels: map[string]string{"team": "growth"}, Public: true},
			{Name: "ledger", Labels: map[string]string{"iap": "enabled"}, Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY},
		},
		LBs: []LBSpec{
			{Service: "storefront"},
			{Service: "assets", CDN: true},
		},
		Expect: []Expect{
			{"storefront", "compliant"},
			{"reports", "compliant"},
			{"assets", "conflict"},
			{"marketing", "skipped"},
			{"ledger", "compliant"},
		},
	}
}

// Build creates every load balancer of s, then every service: a serverless
// NEG may name a service that does not exist yet, and building the load
// balancers first means each labelled service is first seen in the mode
// it is meant to end in (Cloud Run's built-in IAP, once on, is kept, and
// then backend IAP is not added on top: Google does not support both).
func (c *Clients) Build(ctx context.Context, project, region string, s Scenario) error {
	for _, lb := range s.LBs {
		if _, err := c.BuildLoadBalancer(ctx, project, region, lb); err != nil {
			return err
		}
	}
	for _, svc := range s.Services {
		if _, err := c.CreateService(ctx, project, region, svc); err != nil {
			return err
		}
	}
	return nil
}

// SetLabels replaces a service's labels (UpdateService with mask "labels"),
// as `gcloud run services update --update-labels` does, and waits.
func (c *Clients) SetLabels(ctx context.Context, project, region, name string, labels map[string]string) error {
	op, err := c.Run.UpdateService(ctx, &runpb.UpdateServiceRequest{
		Service:    &runpb.Service{Name: fmt.Sprintf("projects/%s/locations/%s/services/%s", project, region, name), Labels: labels},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
	})
	if err != nil {
		return fmt.Errorf("updating labels of %s: %w", name, err)
	}
	if _, err := op.Wait(ctx); err != nil {
		return fmt.Errorf("waiting for labels of %s: %w", name, err)
	}
	return nil
}
