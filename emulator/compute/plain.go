package compute

import (
	"fmt"
	"net"
	"reflect"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// Collections modelled only as far as the load balancer's resources need
// them: networks and subnetworks (a regional managed forwarding rule names
// its network, and the region needs a proxy-only subnet), health checks
// (backend services name them) and target TCP / regional target HTTP
// proxies (forwarding rules name them). Each is stored as sent, under
// Compute's name rule, with its required members, the references it holds
// (checked to exist, canonicalised, and keeping what they name from being
// deleted), and the few server defaults recorded traffic shows. Anything
// else about them (IP ranges, probing, routing) is not modelled.

// plainRef is a member holding references (a string or a list of strings)
// and the collections it may name.
type plainRef struct {
	member string
	specs  func() []*spec
}

type plainRules struct {
	required []string // top-level JSON members that must be set
	refs     []plainRef
	// check validates further and sets defaults (after refs resolve).
	check func(m *mutation, obj any) error
	// decorate sets the ForceSendFields of what GET prints when zero.
	decorate func(obj any)
}

func plain(coll, segment string, regional bool, snake string, newObj func() any, r plainRules, ms ...string) *spec {
	kind := "compute#" + strings.TrimSuffix(strings.TrimSuffix(segment, "es"), "s")
	switch segment {
	case "targetTcpProxies", "targetHttpProxies":
		kind = "compute#" + strings.TrimSuffix(segment, "ies") + "y"
	}
	sp := &spec{
		collection: coll, segment: segment, regional: regional,
		kind: kind, listKind: kind + "List", snake: snake,
		auditType: "gce_" + snake, idLabel: snake + "_id", perm: "compute." + coll,
		methods: methods(append([]string{"get", "list", "insert", "delete"}, ms...)...),
		newObj:  newObj,
	}
	sp.fingerprint = hasField(newObj(), "Fingerprint")
	sp.decorate = r.decorate
	plainSpecs[sp] = r
	return sp
}

// plainSpecs holds the rules of every plain collection; init wires their
// prepare and refs functions (which refer back to the specs).
var plainSpecs = map[*spec]plainRules{}

func init() {
	for sp, r := range plainSpecs {
		sp.prepare, sp.refs = r.prepare, r.refsOf
	}
}

func (r plainRules) prepare(m *mutation, obj, _ any) error {
	v := reflect.ValueOf(obj).Elem()
	for _, name := range r.required {
		if f := jsonMember(v, name); !f.IsValid() || f.IsZero() {
			return requiredField(name)
		}
	}
	for _, ref := range r.refs {
		f := jsonMember(v, ref.member)
		set := func(field string, s reflect.Value) error {
			if s.String() == "" {
				return nil
			}
			link, _, err := m.resolve(field, s.String(), false, ref.specs()...)
			if err == nil {
				s.SetString(link)
			}
			return err
		}
		switch f.Kind() {
		case reflect.String:
			if err := set(ref.member, f); err != nil {
				return err
			}
		case reflect.Slice:
			for i := range f.Len() {
				if err := set(fmt.Sprintf("%s[%d]", ref.member, i), f.Index(i)); err != nil {
					return err
				}
			}
		}
	}
	if r.check != nil {
		return r.check(m, obj)
	}
	return nil
}

func (r plainRules) refsOf(obj any) []string {
	v := reflect.ValueOf(obj).Elem()
	var out []string
	for _, ref := range r.refs {
		switch f := jsonMember(v, ref.member); f.Kind() {
		case reflect.String:
			out = append(out, f.String())
		case reflect.Slice:
			for i := range f.Len() {
				out = append(out, f.Index(i).String())
			}
		}
	}
	return out
}

// jsonMember is the field of struct v whose JSON name is name.
func jsonMember(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag == name {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

func specs(sp ...*spec) func() []*spec { return func() []*spec { return sp } }

// zonalPlain makes sp a zonal collection (its audit resource type is
// gce_instance_group and its permissions compute.instanceGroups.*).
func zonalPlain(sp *spec) *spec {
	sp.zonal = true
	return sp
}

var (
	specNetworks = plain("networks", "networks", false, "network",
		func() any { return &compute.Network{} }, plainRules{check: checkNetwork, decorate: func(obj any) {
			n := obj.(*compute.Network)
			n.ForceSendFields = append(n.ForceSendFields, "AutoCreateSubnetworks")
		}}, "patch")
	specSubnetworks = plain("subnetworks", "subnetworks", true, "subnetwork",
		func() any { return &compute.Subnetwork{} }, plainRules{
			required: []string{"network", "ipCidrRange"},
			refs:     []plainRef{{"network", specs(specNetworks)}},
			check:    checkSubnetwork,
			decorate: func(obj any) {
				sn := obj.(*compute.Subnetwork)
				sn.ForceSendFields = append(sn.ForceSendFields, "PrivateIpGoogleAccess")
				if sn.LogConfig != nil {
					sn.LogConfig.ForceSendFields = append(sn.LogConfig.ForceSendFields, "Enable")
				}
			},
		})
	specHealthChecks = plain("healthChecks", "healthChecks", false, "health_check",
		func() any { return &compute.HealthCheck{} }, plainRules{required: []string{"type"}, check: checkHealthCheck}, "patch", "update")
	specRegionHealthChecks = plain("regionHealthChecks", "healthChecks", true, "health_check",
		func() any { return &compute.HealthCheck{} }, plainRules{required: []string{"type"}, check: checkHealthCheck}, "patch", "update")
	specHTTPHealthChecks = plain("httpHealthChecks", "httpHealthChecks", false, "http_health_check",
		func() any { return &compute.HttpHealthCheck{} }, plainRules{}, "patch", "update")
	specHTTPSHealthChecks = plain("httpsHealthChecks", "httpsHealthChecks", false, "https_health_check",
		func() any { return &compute.HttpsHealthCheck{} }, plainRules{}, "patch", "update")
	specTargetTCPProxies = plain("targetTcpProxies", "targetTcpProxies", false, "target_tcp_proxy",
		func() any { return &compute.TargetTcpProxy{} }, plainRules{
			required: []string{"service"},
			refs:     []plainRef{{"service", specs(specBackendServices)}},
			check:    checkTCPProxy,
		})
	specRegionTargetTCPProxies = plain("regionTargetTcpProxies", "targetTcpProxies", true, "target_tcp_proxy",
		func() any { return &compute.TargetTcpProxy{} }, plainRules{
			required: []string{"service"},
			refs:     []plainRef{{"service", specs(specRegionBackendServices)}},
			check:    checkTCPProxy,
		})
	specRegionTargetHTTPProxies = plain("regionTargetHttpProxies", "targetHttpProxies", true, "target_http_proxy",
		func() any { return &compute.TargetHttpProxy{} }, plainRules{
			required: []string{"urlMap"},
			refs:     []plainRef{{"urlMap", specs(specRegionURLMaps)}},
		})
	// Unmanaged zonal instance groups, as backends of backend services
	// (recorded: k8s-config-connector's global and regional backend
	// service fixtures). Membership (addInstances, listInstances) is not
	// modelled: instances are not served, so size stays 0.
	specInstanceGroups = zonalPlain(plain("instanceGroups", "instanceGroups", false, "instance_group",
		func() any { return &compute.InstanceGroup{} }, plainRules{
			refs: []plainRef{{"network", specs(specNetworks)}, {"subnetwork", specs(specSubnetworks)}},
			decorate: func(obj any) {
				ig := obj.(*compute.InstanceGroup)
				ig.ForceSendFields = append(ig.ForceSendFields, "Size")
			},
		}))
	// healthCheckSpecs are what a backend service's healthChecks may name.
	healthCheckSpecs = []*spec{specHealthChecks, specRegionHealthChecks, specHTTPHealthChecks, specHTTPSHealthChecks}
)

// Defaults below are those recorded traffic shows.

func checkNetwork(_ *mutation, obj any) error {
	n := obj.(*compute.Network)
	if n.NetworkFirewallPolicyEnforcementOrder == "" {
		n.NetworkFirewallPolicyEnforcementOrder = "AFTER_CLASSIC_FIREWALL"
	}
	if rc := n.RoutingConfig; rc != nil && rc.BgpBestPathSelectionMode == "" {
		rc.BgpBestPathSelectionMode = "LEGACY" // recorded traffic
	}
	return nil
}

func checkSubnetwork(m *mutation, obj any) error {
	sn := obj.(*compute.Subnetwork)
	if err := checkEnum("purpose", sn.Purpose, "GLOBAL_MANAGED_PROXY", "INTERNAL_HTTPS_LOAD_BALANCER", "PEER_MIGRATION",
		"PRIVATE", "PRIVATE_NAT", "PRIVATE_RFC_1918", "PRIVATE_SERVICE_CONNECT", "REGIONAL_MANAGED_PROXY"); err != nil {
		return err
	}
	if err := checkEnum("role", sn.Role, "ACTIVE", "BACKUP"); err != nil {
		return err
	}
	if sn.Purpose == "" {
		sn.Purpose = "PRIVATE"
	}
	if sn.Role == "" && (sn.Purpose == "REGIONAL_MANAGED_PROXY" || sn.Purpose == "GLOBAL_MANAGED_PROXY") {
		// Google's message (terraform-provider-google issue 13438).
		return invalidField("role", "UNSPECIFIED_ROLE", "Subnetwork role must be specified when purpose set to "+sn.Purpose+".")
	}
	// Defaults as recorded traffic shows them.
	if sn.StackType == "" && sn.Purpose != "PRIVATE_NAT" {
		sn.StackType = "IPV4_ONLY"
	}
	if sn.PrivateIpv6GoogleAccess == "" {
		sn.PrivateIpv6GoogleAccess = "DISABLE_GOOGLE_ACCESS"
	}
	sn.State = "READY"
	_, cidr, err := net.ParseCIDR(sn.IpCidrRange)
	if err != nil || cidr.IP.To4() == nil {
		return invalidField("ipCidrRange", sn.IpCidrRange, "Must be an IPv4 CIDR range.")
	}
	gw := cidr.IP.To4()
	gw[3]++
	sn.GatewayAddress = gw.String() // the range's first address
	return nil
}

func checkHealthCheck(_ *mutation, obj any) error {
	hc := obj.(*compute.HealthCheck)
	for _, ph := range []*string{protoHeader(hc.HttpHealthCheck), protoHeader(hc.HttpsHealthCheck), protoHeader(hc.Http2HealthCheck)} {
		if ph != nil && *ph == "" {
			*ph = "NONE"
		}
	}
	return checkEnum("type", hc.Type, "GRPC", "GRPC_WITH_TLS", "HTTP", "HTTP2", "HTTPS", "SSL", "TCP")
}

// protoHeader is the proxyHeader of an HTTP-family health check block.
func protoHeader(block any) *string {
	switch b := block.(type) {
	case *compute.HTTPHealthCheck:
		if b != nil {
			return &b.ProxyHeader
		}
	case *compute.HTTPSHealthCheck:
		if b != nil {
			return &b.ProxyHeader
		}
	case *compute.HTTP2HealthCheck:
		if b != nil {
			return &b.ProxyHeader
		}
	}
	return nil
}

func checkTCPProxy(m *mutation, obj any) error {
	tp := obj.(*compute.TargetTcpProxy)
	if err := sameRegion(m, "service", tp.Service); err != nil {
		return err
	}
	return checkEnum("proxyHeader", tp.ProxyHeader, "NONE", "PROXY_V1")
}
