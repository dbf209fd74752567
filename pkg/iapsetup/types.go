package iapsetup

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ServiceRef names a Cloud Run service. Project may be a project id or number
// (Cloud Run accepts both and echoes the form the caller used).
type ServiceRef struct {
	Project string
	Region  string
	Name    string
}

// String returns the resource name, projects/P/locations/R/services/S.
func (r ServiceRef) String() string {
	return "projects/" + r.Project + "/locations/" + r.Region + "/services/" + r.Name
}

// validate checks that every part is present and free of '/'.
func (r ServiceRef) validate() error {
	for _, p := range []struct{ what, v string }{{"project", r.Project}, {"region", r.Region}, {"service", r.Name}} {
		if p.v == "" {
			return fmt.Errorf("service reference %q: %s is empty", r.String(), p.what)
		}
		if strings.ContainsAny(p.v, "/ ") {
			return fmt.Errorf("service reference %q: %s %q contains '/' or a space", r.String(), p.what, p.v)
		}
	}
	return nil
}

// Cloud Run v2 ingress settings, named as in the API enum (Service.Ingress,
// ServiceUpdate.Ingress).
const (
	ingressUnspecified          = "INGRESS_TRAFFIC_UNSPECIFIED"
	ingressAll                  = "INGRESS_TRAFFIC_ALL"
	ingressInternalLoadBalancer = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
	ingressInternalOnly         = "INGRESS_TRAFFIC_INTERNAL_ONLY"
	ingressNone                 = "INGRESS_TRAFFIC_NONE"
)

// ingressStrictness orders ingress settings from open (0) to closed;
// unknown and unspecified values are -1.
func ingressStrictness(i string) int {
	switch i {
	case ingressAll:
		return 0
	case ingressInternalLoadBalancer:
		return 1
	case ingressInternalOnly:
		return 2
	case ingressNone:
		return 3
	}
	return -1
}

// ingressFlag is the gcloud --ingress value of i.
func ingressFlag(i string) string {
	switch i {
	case ingressAll:
		return "all"
	case ingressInternalLoadBalancer:
		return "internal-and-cloud-load-balancing"
	case ingressInternalOnly:
		return "internal"
	case ingressNone:
		return "none"
	}
	return i
}

// Service is the part of a Cloud Run service iapguard observes and owns.
type Service struct {
	// readErr is set on a placeholder for a service whose read failed
	// (readNeighbours); such a Service carries nothing else.
	readErr     error
	Ref         ServiceRef
	Labels      map[string]string
	Annotations map[string]string
	// Ingress is the ingress setting as the Cloud Run v2 API enum names it
	// (INGRESS_TRAFFIC_ALL, ...).
	Ingress string
	// InvokerIAMDisabled true means anyone can invoke the service without
	// the run.routes.invoke check.
	InvokerIAMDisabled bool
	// IAPEnabled is Cloud Run's built-in IAP.
	IAPEnabled bool
	Etag       string
	// Source is the adapter's API object this was read from, so the adapter
	// can send the whole object back with an update mask (the safest Cloud
	// Run update pattern). iapsetup never reads it; adapters must not
	// modify it.
	Source any
}

func (s *Service) clone() *Service {
	if s == nil {
		return nil
	}
	c := *s
	c.Labels = maps.Clone(s.Labels)
	c.Annotations = maps.Clone(s.Annotations)
	return &c
}

// Policy is an IAM policy on a Cloud Run service.
type Policy struct {
	Version  int32
	Bindings []Binding
	// Etag is the opaque concurrency token from the last read; SetIAMPolicy
	// sends it back so a concurrent change makes the write fail with ABORTED.
	Etag []byte
}

// Binding grants Role to Members, optionally under Condition.
type Binding struct {
	Role      string
	Members   []string
	Condition *Condition
}

// Condition is an IAM condition (google.type.Expr).
type Condition struct {
	Title       string
	Description string
	Expression  string
	Location    string
}

func (p *Policy) clone() *Policy {
	if p == nil {
		return nil
	}
	c := &Policy{Version: p.Version, Etag: slices.Clone(p.Etag)}
	for _, b := range p.Bindings {
		nb := Binding{Role: b.Role, Members: slices.Clone(b.Members)}
		if b.Condition != nil {
			cond := *b.Condition
			nb.Condition = &cond
		}
		c.Bindings = append(c.Bindings, nb)
	}
	return c
}

// NEG is a regional network endpoint group; iapguard cares about serverless
// ones.
type NEG struct {
	SelfLink string
	Name     string
	Project  string
	Region   string
	// Type is networkEndpointType (SERVERLESS for Cloud Run NEGs).
	Type string
	// CloudRun is nil unless the NEG targets Cloud Run.
	CloudRun *CloudRunTarget
}

// CloudRunTarget is a serverless NEG's cloudRun block: a service (optionally
// a tag of it), or a URL mask that selects services by request URL.
type CloudRunTarget struct {
	Service string
	Tag     string
	URLMask string
}

// BackendRef names a backend service; Region is empty for a global one.
type BackendRef struct {
	Project string
	Region  string
	Name    string
}

// String returns projects/P/global/backendServices/B or
// projects/P/regions/R/backendServices/B.
func (r BackendRef) String() string {
	if r.Region == "" {
		return "projects/" + r.Project + "/global/backendServices/" + r.Name
	}
	return "projects/" + r.Project + "/regions/" + r.Region + "/backendServices/" + r.Name
}

// gcloudScope is the gcloud scope flag for the backend service.
func (r BackendRef) gcloudScope() string {
	if r.Region == "" {
		return "--global"
	}
	return "--region=" + r.Region
}

// NEGRef names a regional network endpoint group.
type NEGRef struct {
	Project string
	Region  string
	Name    string
}

// String returns projects/P/regions/R/networkEndpointGroups/N.
func (r NEGRef) String() string {
	return "projects/" + r.Project + "/regions/" + r.Region + "/networkEndpointGroups/" + r.Name
}

// BackendService is the part of a Compute backend service iapguard observes.
type BackendService struct {
	SelfLink string
	Ref      BackendRef
	ID       string
	// Groups are backends[].group: instance group or NEG URLs.
	Groups     []string
	IAPEnabled bool
	EnableCDN  bool
	// UsedBy are the resources (URL maps) that reference this backend service.
	UsedBy              []string
	Fingerprint         string
	LoadBalancingScheme string
	Protocol            string
}

// Frontend is what the HTTPS-frontend check found for a backend service.
type Frontend struct {
	// HTTPS reports whether a forwarding rule reaches the backend service
	// through a target HTTPS proxy and a URL map.
	HTTPS bool
	// URLMaps lists the URL maps that reference the backend service.
	URLMaps []string
	// ForwardingRules lists the forwarding rules of the HTTPS frontends.
	ForwardingRules []string
}

// ResourcePath returns the "projects/..." suffix of a Compute or Cloud
// Run URL or path, so references compare version-agnostically:
// https://www.googleapis.com/compute/beta/projects/p/x and
// https://compute.googleapis.com/compute/v1/projects/p/x both become
// projects/p/x. It returns s unchanged when it has no projects/ segment.
func ResourcePath(s string) string {
	if strings.HasPrefix(s, "projects/") {
		return s
	}
	if i := strings.Index(s, "/projects/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// sameResource compares two Compute references version-agnostically.
func sameResource(a, b string) bool {
	return a != "" && ResourcePath(a) == ResourcePath(b)
}

// parseNEGRef parses a regional NEG URL or path
// (.../projects/P/regions/R/networkEndpointGroups/N).
func parseNEGRef(s string) (NEGRef, error) {
	parts := strings.Split(ResourcePath(s), "/")
	if len(parts) == 6 && parts[0] == "projects" && parts[2] == "regions" && parts[4] == "networkEndpointGroups" && parts[1] != "" && parts[3] != "" && parts[5] != "" {
		return NEGRef{Project: parts[1], Region: parts[3], Name: parts[5]}, nil
	}
	return NEGRef{}, fmt.Errorf("network endpoint group %q: want projects/P/regions/R/networkEndpointGroups/N", s)
}
