package compute

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// spec describes one collection the emulator serves.
type spec struct {
	collection  string // discovery collection, for method keys ("regionBackendServices")
	segment     string // URL path segment ("backendServices")
	regional    bool
	zonal       bool   // scope "zones/Z" (instance groups)
	kind        string // "compute#backendService"
	listKind    string // "compute#backendServiceList"
	snake       string // "backend_service", for in-use messages
	auditType   string // monitored resource type of audit entries
	idLabel     string // its id label
	perm        string // IAM permission prefix ("compute.backendServices")
	fingerprint bool   // the type carries a fingerprint checked on patch/update
	methods     map[string]bool
	newObj      func() any
	// prepare validates obj (the complete new state, decoded from JSON) and
	// canonicalises references and server defaults in place; prev is the
	// stored object on patch/update, nil on insert.
	prepare func(m *mutation, obj, prev any) error
	// refs lists the canonical references obj holds (for usedBy and
	// resourceInUseByAnotherResource).
	refs func(obj any) []string
	// decorate sets ForceSendFields so GET prints the zero values Google
	// prints.
	decorate func(obj any)
}

func methods(ms ...string) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		out[m] = true
	}
	return out
}

var (
	specBackendServices = &spec{
		collection: "backendServices", segment: "backendServices",
		kind: "compute#backendService", listKind: "compute#backendServiceList", snake: "backend_service",
		auditType: "gce_backend_service", idLabel: "backend_service_id", perm: "compute.backendServices",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "update", "delete", "addSignedUrlKey", "deleteSignedUrlKey"),
		newObj: func() any { return &compute.BackendService{} },
		refs:   backendServiceRefs, decorate: decorateBackendService,
	}
	specRegionBackendServices = &spec{
		collection: "regionBackendServices", segment: "backendServices", regional: true,
		kind: "compute#backendService", listKind: "compute#backendServiceList", snake: "backend_service",
		auditType: "gce_backend_service", idLabel: "backend_service_id", perm: "compute.regionBackendServices",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "update", "delete"),
		newObj: func() any { return &compute.BackendService{} },
		refs:   backendServiceRefs, decorate: decorateBackendService,
	}
	specRegionNEGs = &spec{
		collection: "regionNetworkEndpointGroups", segment: "networkEndpointGroups", regional: true,
		kind: "compute#networkEndpointGroup", listKind: "compute#networkEndpointGroupList", snake: "network_endpoint_group",
		auditType: "gce_network_endpoint_group", idLabel: "network_endpoint_group_id", perm: "compute.networkEndpointGroups",
		methods: methods("get", "list", "insert", "delete"),
		newObj:  func() any { return &compute.NetworkEndpointGroup{} },
		decorate: func(obj any) {
			obj.(*compute.NetworkEndpointGroup).ForceSendFields = []string{"Size"}
		},
	}
	specURLMaps = &spec{
		collection: "urlMaps", segment: "urlMaps",
		kind: "compute#urlMap", listKind: "compute#urlMapList", snake: "url_map",
		auditType: "gce_url_map", idLabel: "url_map_id", perm: "compute.urlMaps",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "update", "delete"),
		newObj: func() any { return &compute.UrlMap{} },
		refs:   urlMapRefs, decorate: decorateURLMap,
	}
	specTargetHTTPSProxies = &spec{
		collection: "targetHttpsProxies", segment: "targetHttpsProxies",
		kind: "compute#targetHttpsProxy", listKind: "compute#targetHttpsProxyList", snake: "target_https_proxy",
		auditType: "gce_target_https_proxy", idLabel: "target_https_proxy_id", perm: "compute.targetHttpsProxies",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "delete"),
		newObj: func() any { return &compute.TargetHttpsProxy{} },
		refs:   targetHTTPSProxyRefs,
	}
	specTargetHTTPProxies = &spec{
		collection: "targetHttpProxies", segment: "targetHttpProxies",
		kind: "compute#targetHttpProxy", listKind: "compute#targetHttpProxyList", snake: "target_http_proxy",
		auditType: "gce_target_http_proxy", idLabel: "target_http_proxy_id", perm: "compute.targetHttpProxies",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "delete"),
		newObj: func() any { return &compute.TargetHttpProxy{} },
		refs:   targetHTTPProxyRefs,
	}
	specSSLCertificates = &spec{
		collection: "sslCertificates", segment: "sslCertificates",
		kind: "compute#sslCertificate", listKind: "compute#sslCertificateList", snake: "ssl_certificate",
		auditType: "gce_ssl_certificate", idLabel: "ssl_certificate_id", perm: "compute.sslCertificates",
		methods: methods("get", "list", "insert", "delete"),
		newObj:  func() any { return &compute.SslCertificate{} },
	}
	specGlobalForwardingRules = &spec{
		collection: "globalForwardingRules", segment: "forwardingRules",
		kind: "compute#forwardingRule", listKind: "compute#forwardingRuleList", snake: "forwarding_rule",
		auditType: "gce_forwarding_rule", idLabel: "forwarding_rule_id", perm: "compute.globalForwardingRules",
		methods: methods("get", "list", "insert", "patch", "delete", "setLabels", "setTarget"),
		newObj:  func() any { return &compute.ForwardingRule{} },
		refs:    forwardingRuleRefs, decorate: decorateForwardingRule,
	}
	// The regional external Application Load Balancer's front end: a
	// regional URL map, target HTTPS proxy, SSL certificate and forwarding
	// rule (cloud.google.com/load-balancing/docs/https/setting-up-reg-ext-https-serverless).
	specRegionURLMaps = &spec{
		collection: "regionUrlMaps", segment: "urlMaps", regional: true,
		kind: "compute#urlMap", listKind: "compute#urlMapList", snake: "url_map",
		auditType: "gce_url_map", idLabel: "url_map_id", perm: "compute.regionUrlMaps",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "update", "delete"),
		newObj: func() any { return &compute.UrlMap{} },
		refs:   urlMapRefs, decorate: decorateURLMap,
	}
	specRegionTargetHTTPSProxies = &spec{
		collection: "regionTargetHttpsProxies", segment: "targetHttpsProxies", regional: true,
		kind: "compute#targetHttpsProxy", listKind: "compute#targetHttpsProxyList", snake: "target_https_proxy",
		auditType: "gce_target_https_proxy", idLabel: "target_https_proxy_id", perm: "compute.regionTargetHttpsProxies",
		fingerprint: true, methods: methods("get", "list", "insert", "patch", "delete"),
		newObj: func() any { return &compute.TargetHttpsProxy{} },
		refs:   targetHTTPSProxyRefs,
	}
	specRegionSSLCertificates = &spec{
		collection: "regionSslCertificates", segment: "sslCertificates", regional: true,
		kind: "compute#sslCertificate", listKind: "compute#sslCertificateList", snake: "ssl_certificate",
		auditType: "gce_ssl_certificate", idLabel: "ssl_certificate_id", perm: "compute.regionSslCertificates",
		methods: methods("get", "list", "insert", "delete"),
		newObj:  func() any { return &compute.SslCertificate{} },
	}
	specForwardingRules = &spec{
		collection: "forwardingRules", segment: "forwardingRules", regional: true,
		kind: "compute#forwardingRule", listKind: "compute#forwardingRuleList", snake: "forwarding_rule",
		auditType: "gce_forwarding_rule", idLabel: "forwarding_rule_id", perm: "compute.forwardingRules",
		methods: methods("get", "list", "insert", "patch", "delete", "setLabels", "setTarget"),
		newObj:  func() any { return &compute.ForwardingRule{} },
		refs:    forwardingRuleRefs, decorate: decorateForwardingRule,
	}
	allSpecs = []*spec{specBackendServices, specRegionBackendServices, specRegionNEGs, specURLMaps,
		specTargetHTTPSProxies, specTargetHTTPProxies, specSSLCertificates, specGlobalForwardingRules,
		specRegionURLMaps, specRegionTargetHTTPSProxies, specRegionSSLCertificates, specForwardingRules,
		specNetworks, specSubnetworks, specHealthChecks, specRegionHealthChecks, specHTTPHealthChecks,
		specHTTPSHealthChecks, specTargetTCPProxies, specRegionTargetTCPProxies, specRegionTargetHTTPProxies,
		specInstanceGroups}
)

// The prepare functions refer back to the specs (references name the
// collection they must point at), so they are wired here, after
// initialisation.
func init() {
	specBackendServices.prepare = prepareBackendService
	specRegionBackendServices.prepare = prepareBackendService
	specRegionNEGs.prepare = prepareNEG
	specURLMaps.prepare = prepareURLMap
	specTargetHTTPSProxies.prepare = prepareTargetHTTPSProxy
	specTargetHTTPProxies.prepare = prepareTargetHTTPProxy
	specSSLCertificates.prepare = prepareSSLCertificate
	specGlobalForwardingRules.prepare = prepareForwardingRule
	specRegionURLMaps.prepare = prepareURLMap
	specRegionTargetHTTPSProxies.prepare = prepareTargetHTTPSProxy
	specRegionSSLCertificates.prepare = prepareRegionSSLCertificate
	specForwardingRules.prepare = prepareForwardingRule
}

// sameRegion checks that a regional resource references resources of its
// own region, as Compute requires of a regional load balancer's parts.
func sameRegion(m *mutation, field, link string) error {
	if m.region == "" {
		return nil
	}
	if !strings.Contains(link, "/regions/"+m.region+"/") && !strings.Contains(link, "/zones/"+m.region+"-") {
		return invalidField(field, link, "The resource must be in region '"+m.region+"'.")
	}
	return nil
}

// prepareRegionSSLCertificate is prepareSSLCertificate for a regional
// certificate, which can only be self-managed: Google-managed certificates
// are global (cloud.google.com/load-balancing/docs/ssl-certificates).
func prepareRegionSSLCertificate(m *mutation, obj, prev any) error {
	c := obj.(*compute.SslCertificate)
	if c.Type == "MANAGED" || c.Managed != nil {
		return invalidField("type", "MANAGED", "Google-managed SSL certificates are global only; a regional certificate must be self-managed.")
	}
	return prepareSSLCertificate(m, obj, prev)
}

// specFor is the collection of segment in scope ("" global, a region, or
// "zones/Z").
func specFor(segment, scope string) *spec {
	for _, sp := range allSpecs {
		if sp.segment == segment && sp.inScope(scope) {
			return sp
		}
	}
	return nil
}

// inScope reports whether sp's resources live in scope.
func (sp *spec) inScope(scope string) bool {
	switch {
	case isZone(scope):
		return sp.zonal
	case scope != "":
		return sp.regional
	}
	return !sp.regional && !sp.zonal
}

// isZone reports whether a scope is a zone ("zones/us-central1-a").
func isZone(scope string) bool { return strings.HasPrefix(scope, "zones/") }

// nameRE is Compute's resource name rule (RFC 1035 label).
var nameRE = regexp.MustCompile(`^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$`)

func checkName(name string) error {
	if name == "" {
		return requiredField("name")
	}
	if !nameRE.MatchString(name) {
		return invalidField("name", name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
	}
	return nil
}

func checkEnum(field, v string, allowed ...string) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return invalidField(field, v, "Must be one of ["+strings.Join(allowed, ", ")+"].")
}

// --- backend services ---

func prepareBackendService(m *mutation, obj, prevObj any) error {
	bs := obj.(*compute.BackendService)
	var prev *compute.BackendService
	if prevObj != nil {
		prev = prevObj.(*compute.BackendService)
	}
	bs.UsedBy = nil
	if err := checkEnum("protocol", bs.Protocol, "GRPC", "H2C", "HTTP", "HTTP2", "HTTPS", "SSL", "TCP", "UDP", "UNSPECIFIED"); err != nil {
		return err
	}
	if err := checkEnum("loadBalancingScheme", bs.LoadBalancingScheme, "EXTERNAL", "EXTERNAL_MANAGED", "EXTERNAL_PASSTHROUGH",
		"INTERNAL", "INTERNAL_MANAGED", "INTERNAL_SELF_MANAGED"); err != nil {
		return err
	}
	if err := checkEnum("sessionAffinity", bs.SessionAffinity, "CLIENT_IP", "CLIENT_IP_NO_DESTINATION", "CLIENT_IP_PORT_PROTO",
		"CLIENT_IP_PROTO", "GENERATED_COOKIE", "HEADER_FIELD", "HTTP_COOKIE", "NONE", "STRONG_COOKIE_AFFINITY"); err != nil {
		return err
	}
	if bs.TimeoutSec < 0 {
		return invalidField("timeoutSec", fmt.Sprint(bs.TimeoutSec), "Must be greater than or equal to 1.")
	}
	// Server defaults seen on GET (reference §2.2). The regional default
	// scheme INTERNAL is inferred (the legacy internal load balancer).
	if bs.LoadBalancingScheme == "" {
		bs.LoadBalancingScheme = "EXTERNAL"
		if m.region != "" {
			bs.LoadBalancingScheme = "INTERNAL"
		}
	}
	if bs.SessionAffinity == "" {
		bs.SessionAffinity = "NONE"
	}
	if bs.Protocol == "" && bs.LoadBalancingScheme == "INTERNAL_SELF_MANAGED" {
		bs.Protocol = "HTTP" // recorded traffic (a go-vcr cassette)
	}
	if (bs.Protocol == "HTTP" || bs.Protocol == "HTTPS") && bs.Port == 0 && bs.PortName == "" {
		// Recorded traffic: regional HTTP and HTTPS backend services of
		// every scheme, and a global INTERNAL_SELF_MANAGED HTTP one.
		bs.Port, bs.PortName = 80, "http"
	}
	if bs.TimeoutSec == 0 {
		bs.TimeoutSec = 30
	}
	if bs.ConnectionDraining == nil {
		bs.ConnectionDraining = &compute.ConnectionDraining{}
	}
	if bs.Iap != nil {
		// oauth2ClientSecret is input only: keep its SHA-256 (hex), never
		// the secret. Without a new secret the stored digest survives as long
		// as the client id is unchanged.
		switch {
		case bs.Iap.Oauth2ClientSecret != "" || m.sent("iap", "oauth2ClientSecret"):
			// An empty secret that is sent is hashed too (recorded traffic:
			// e3b0c442…, the SHA-256 of nothing).
			sum := sha256.Sum256([]byte(bs.Iap.Oauth2ClientSecret))
			bs.Iap.Oauth2ClientSecretSha256 = hex.EncodeToString(sum[:])
			bs.Iap.Oauth2ClientSecret = ""
		case prev != nil && prev.Iap != nil && prev.Iap.Oauth2ClientId == bs.Iap.Oauth2ClientId:
			bs.Iap.Oauth2ClientSecretSha256 = prev.Iap.Oauth2ClientSecretSha256
		default:
			bs.Iap.Oauth2ClientSecretSha256 = ""
		}
		// IAP with a Google-managed OAuth client needs no client id/secret.
		if bs.Iap.Enabled && bs.EnableCDN {
			// Documented incompatibility; the exact error Compute returns is
			// not recorded.
			return invalidField("iap.enabled", "true", "IAP is incompatible with Cloud CDN (enableCDN is true).")
		}
	}
	seen := map[string]bool{}
	hasServerless := false
	for i, b := range bs.Backends {
		field := fmt.Sprintf("backends[%d].group", i)
		if b == nil || b.Group == "" {
			return requiredField(field)
		}
		link, g, err := m.resolve(field, b.Group, true, specRegionNEGs, specInstanceGroups)
		if err != nil {
			return err
		}
		if seen[g.selfLink()] {
			return invalidField(field, b.Group, "Duplicate backend group.")
		}
		seen[g.selfLink()] = true
		if n, ok := g.obj.(*compute.NetworkEndpointGroup); ok {
			if m.region != "" && g.region != m.region {
				return invalidField(field, b.Group, fmt.Sprintf("The network endpoint group must be in region '%s'.", m.region))
			}
			hasServerless = hasServerless || n.NetworkEndpointType == "SERVERLESS"
		} else {
			if err := sameRegion(m, field, link); err != nil {
				return err
			}
			if b.BalancingMode == "" {
				b.BalancingMode = "UTILIZATION" // documented default for instance groups
			}
		}
		b.Group = link
	}
	if hasServerless && countInstanceGroups(bs) > 0 {
		return invalidField("backends", bs.Backends[0].Group,
			"A backend service with serverless network endpoint group backends cannot have other types of backends.")
	}
	if hasServerless && len(bs.HealthChecks) > 0 {
		return invalidField("healthChecks", bs.HealthChecks[0],
			"A backend service cannot have a health check with serverless network endpoint group backends.")
	}
	for i, hc := range bs.HealthChecks {
		link, _, err := m.resolve(fmt.Sprintf("healthChecks[%d]", i), hc, false, healthCheckSpecs...)
		if err != nil {
			return err
		}
		bs.HealthChecks[i] = link
	}
	return nil
}

func countInstanceGroups(bs *compute.BackendService) int {
	n := 0
	for _, b := range bs.Backends {
		if strings.Contains(b.Group, "/instanceGroups/") {
			n++
		}
	}
	return n
}

func backendServiceRefs(obj any) []string {
	bs := obj.(*compute.BackendService)
	var out []string
	for _, b := range bs.Backends {
		if b != nil {
			out = append(out, b.Group)
		}
	}
	return append(out, bs.HealthChecks...)
}

func decorateBackendService(obj any) {
	bs := obj.(*compute.BackendService)
	bs.ForceSendFields = append(bs.ForceSendFields, "AffinityCookieTtlSec", "Description")
	if bs.ConnectionDraining != nil {
		bs.ConnectionDraining.ForceSendFields = []string{"DrainingTimeoutSec"}
	}
	if bs.Iap != nil {
		// Google prints the client id even when empty (recorded traffic:
		// k8s-config-connector's backend service fixtures).
		bs.Iap.ForceSendFields = []string{"Enabled", "Oauth2ClientId"}
	}
}

// --- serverless network endpoint groups ---

// runServiceRE is Cloud Run's service name rule (fewer than 50 characters).
var runServiceRE = regexp.MustCompile(`^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$`)

func prepareNEG(m *mutation, obj, _ any) error {
	neg := obj.(*compute.NetworkEndpointGroup)
	switch neg.NetworkEndpointType {
	case "SERVERLESS":
	case "":
		return invalidField("networkEndpointType", "GCE_VM_IP_PORT",
			"The emulator serves only SERVERLESS regional network endpoint groups.")
	default:
		if err := checkEnum("networkEndpointType", neg.NetworkEndpointType, "GCE_VM_IP", "GCE_VM_IP_DEDICATED_BACKEND",
			"GCE_VM_IP_PORT", "GCE_VM_IP_PORTMAP", "INTERNET_FQDN_PORT", "INTERNET_IP_PORT", "NON_GCP_PRIVATE_IP_PORT",
			"PRIVATE_SERVICE_CONNECT", "SERVERLESS"); err != nil {
			return err
		}
		return invalidField("networkEndpointType", neg.NetworkEndpointType,
			"The emulator serves only SERVERLESS regional network endpoint groups.")
	}
	n := 0
	for _, set := range []bool{neg.CloudRun != nil, neg.AppEngine != nil, neg.CloudFunction != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return invalid("Invalid value for field 'resource': exactly one of cloudRun, appEngine or cloudFunction must be set for a SERVERLESS network endpoint group.")
	}
	if neg.Network != "" {
		return invalidField("network", neg.Network, "Network cannot be set for SERVERLESS network endpoint groups.")
	}
	if neg.Subnetwork != "" {
		return invalidField("subnetwork", neg.Subnetwork, "Subnetwork cannot be set for SERVERLESS network endpoint groups.")
	}
	if neg.DefaultPort != 0 {
		return invalidField("defaultPort", fmt.Sprint(neg.DefaultPort), "Default port must not be specified for SERVERLESS network endpoint groups.")
	}
	if cr := neg.CloudRun; cr != nil {
		if cr.Service == "" && cr.UrlMask == "" {
			return invalid("Invalid value for field 'resource.cloudRun': one of cloudRun.service or cloudRun.urlMask must be set.")
		}
		if cr.Service != "" && !runServiceRE.MatchString(cr.Service) {
			return invalidField("cloudRun.service", cr.Service, "Must be a valid Cloud Run service name.")
		}
		if cr.Tag != "" && cr.Service == "" {
			return invalidField("cloudRun.tag", cr.Tag, "A tag requires cloudRun.service.")
		}
	}
	neg.Size = 0
	return nil
}

// --- URL maps ---

// urlMapServices calls f with every backend service reference of um and
// the request field that holds it.
func urlMapServices(um *compute.UrlMap, f func(field string, ref *string)) {
	action := func(at string, a *compute.HttpRouteAction) {
		if a == nil {
			return
		}
		for i, w := range a.WeightedBackendServices {
			if w != nil && w.BackendService != "" {
				f(fmt.Sprintf("%s.weightedBackendServices[%d].backendService", at, i), &w.BackendService)
			}
		}
		if mp := a.RequestMirrorPolicy; mp != nil && mp.BackendService != "" {
			f(at+".requestMirrorPolicy.backendService", &mp.BackendService)
		}
	}
	if um.DefaultService != "" {
		f("defaultService", &um.DefaultService)
	}
	action("defaultRouteAction", um.DefaultRouteAction)
	for i, pm := range um.PathMatchers {
		if pm == nil {
			continue
		}
		at := fmt.Sprintf("pathMatchers[%d]", i)
		if pm.DefaultService != "" {
			f(at+".defaultService", &pm.DefaultService)
		}
		action(at+".defaultRouteAction", pm.DefaultRouteAction)
		for j, pr := range pm.PathRules {
			if pr == nil {
				continue
			}
			if pr.Service != "" {
				f(fmt.Sprintf("%s.pathRules[%d].service", at, j), &pr.Service)
			}
			action(fmt.Sprintf("%s.pathRules[%d].routeAction", at, j), pr.RouteAction)
		}
		for j, rr := range pm.RouteRules {
			if rr == nil {
				continue
			}
			if rr.Service != "" {
				f(fmt.Sprintf("%s.routeRules[%d].service", at, j), &rr.Service)
			}
			action(fmt.Sprintf("%s.routeRules[%d].routeAction", at, j), rr.RouteAction)
		}
	}
}

func prepareURLMap(m *mutation, obj, _ any) error {
	um := obj.(*compute.UrlMap)
	if um.DefaultService != "" && um.DefaultUrlRedirect != nil {
		return invalidField("defaultUrlRedirect", "", "defaultService and defaultUrlRedirect cannot both be set.")
	}
	var err error
	urlMapServices(um, func(field string, ref *string) {
		if err != nil {
			return
		}
		link, _, e := m.resolve(field, *ref, false, specBackendServices, specRegionBackendServices)
		if e == nil && (m.region == "") != strings.Contains(link, "/global/") {
			// A global map names global backend services; a regional one,
			// backend services of its region.
			e = invalidField(field, *ref, "Unexpected resource collection 'backendServices' for this URL map's scope.")
		}
		if e == nil {
			e = sameRegion(m, field, link)
		}
		if e != nil {
			err = e
			return
		}
		*ref = link
	})
	if err != nil {
		return err
	}
	matchers := map[string]bool{}
	for i, pm := range um.PathMatchers {
		if pm == nil || pm.Name == "" {
			return requiredField(fmt.Sprintf("pathMatchers[%d].name", i))
		}
		if matchers[pm.Name] {
			return invalidField(fmt.Sprintf("pathMatchers[%d].name", i), pm.Name, "Duplicate path matcher name.")
		}
		matchers[pm.Name] = true
	}
	for i, hr := range um.HostRules {
		if hr == nil || !matchers[hr.PathMatcher] {
			v := ""
			if hr != nil {
				v = hr.PathMatcher
			}
			return invalidField(fmt.Sprintf("hostRules[%d].pathMatcher", i), v, "The path matcher does not exist in this URL map.")
		}
	}
	return nil
}

// decorateURLMap prints the zero values Google prints in URL maps
// (recorded traffic): a test's description and a retry policy's
// perTryTimeout.nanos.
func decorateURLMap(obj any) {
	um := obj.(*compute.UrlMap)
	for _, t := range um.Tests {
		if t != nil {
			t.ForceSendFields = append(t.ForceSendFields, "Description")
		}
	}
	action := func(a *compute.HttpRouteAction) {
		if a != nil && a.RetryPolicy != nil && a.RetryPolicy.PerTryTimeout != nil {
			a.RetryPolicy.PerTryTimeout.ForceSendFields = append(a.RetryPolicy.PerTryTimeout.ForceSendFields, "Nanos")
		}
	}
	action(um.DefaultRouteAction)
	for _, pm := range um.PathMatchers {
		if pm == nil {
			continue
		}
		action(pm.DefaultRouteAction)
		for _, pr := range pm.PathRules {
			if pr != nil {
				action(pr.RouteAction)
			}
		}
		for _, rr := range pm.RouteRules {
			if rr != nil {
				action(rr.RouteAction)
			}
		}
	}
}

func urlMapRefs(obj any) []string {
	var out []string
	urlMapServices(obj.(*compute.UrlMap), func(_ string, ref *string) { out = append(out, *ref) })
	return out
}

// --- target proxies ---

func prepareTargetHTTPSProxy(m *mutation, obj, _ any) error {
	tp := obj.(*compute.TargetHttpsProxy)
	if tp.UrlMap == "" {
		return requiredField("urlMap")
	}
	urlMaps, certs := specURLMaps, specSSLCertificates
	if m.region != "" {
		urlMaps, certs = specRegionURLMaps, specRegionSSLCertificates
	}
	link, _, err := m.resolve("urlMap", tp.UrlMap, false, urlMaps)
	if err == nil {
		err = sameRegion(m, "urlMap", link)
	}
	if err != nil {
		return err
	}
	tp.UrlMap = link
	if len(tp.SslCertificates) == 0 && tp.CertificateMap == "" {
		return invalidField("sslCertificates", "", "At least one SSL certificate must be specified for target HTTPS proxy.")
	}
	if len(tp.SslCertificates) > 15 {
		return invalidField("sslCertificates", fmt.Sprint(len(tp.SslCertificates)), "At most 15 SSL certificates may be specified.")
	}
	managed := 0
	for i, c := range tp.SslCertificates {
		field := fmt.Sprintf("sslCertificates[%d]", i)
		if m.region != "" && strings.HasPrefix(c, certManagerPrefix) {
			// A Certificate Manager certificate of the proxy's region (the
			// API reference: regional proxies take them in sslCertificates).
			// Certificate Manager is not modelled: its existence is not
			// checked, only the name's shape and location.
			if !certManagerCertRE.MatchString(c) || !strings.Contains(c, "/locations/"+m.region+"/") {
				return invalidField(field, c, "The Certificate Manager certificate must be //certificatemanager.googleapis.com/projects/P/locations/"+m.region+"/certificates/C.")
			}
			managed++
			continue
		}
		link, _, err := m.resolve(field, c, false, certs)
		if err == nil {
			err = sameRegion(m, fmt.Sprintf("sslCertificates[%d]", i), link)
		}
		if err != nil {
			return err
		}
		tp.SslCertificates[i] = link
	}
	if managed > 0 && managed < len(tp.SslCertificates) {
		// The API reference's words.
		return invalidField("sslCertificates", "", "Mixing Classic Certificates and Certificate Manager Certificates is not allowed.")
	}
	if err := checkEnum("quicOverride", tp.QuicOverride, "DISABLE", "ENABLE", "NONE"); err != nil {
		return err
	}
	// quicOverride has no server default: Google prints it only when it
	// was sent (recorded traffic).
	if tp.TlsEarlyData == "" {
		tp.TlsEarlyData = "DISABLED" // Google's default, as recorded traffic shows
	}
	return nil
}

const certManagerPrefix = "//certificatemanager.googleapis.com/"

var certManagerCertRE = regexp.MustCompile(`^//certificatemanager\.googleapis\.com/projects/[^/]+/locations/[^/]+/certificates/[^/]+$`)

func targetHTTPSProxyRefs(obj any) []string {
	tp := obj.(*compute.TargetHttpsProxy)
	return append([]string{tp.UrlMap}, tp.SslCertificates...)
}

func prepareTargetHTTPProxy(m *mutation, obj, _ any) error {
	tp := obj.(*compute.TargetHttpProxy)
	if tp.UrlMap == "" {
		return requiredField("urlMap")
	}
	link, _, err := m.resolve("urlMap", tp.UrlMap, false, specURLMaps)
	if err != nil {
		return err
	}
	tp.UrlMap = link
	return nil
}

func targetHTTPProxyRefs(obj any) []string { return []string{obj.(*compute.TargetHttpProxy).UrlMap} }

// --- SSL certificates ---

func prepareSSLCertificate(_ *mutation, obj, _ any) error {
	c := obj.(*compute.SslCertificate)
	if err := checkEnum("type", c.Type, "MANAGED", "SELF_MANAGED"); err != nil {
		return err
	}
	if c.Type == "" {
		c.Type = "SELF_MANAGED"
		if c.Managed != nil {
			c.Type = "MANAGED"
		}
	}
	c.ExpireTime, c.SubjectAlternativeNames = "", nil
	if c.Type == "MANAGED" {
		if c.Managed == nil || len(c.Managed.Domains) == 0 {
			return requiredField("managed.domains")
		}
		if len(c.Managed.Domains) > 100 {
			return invalidField("managed.domains", fmt.Sprint(len(c.Managed.Domains)), "At most 100 domains may be specified.")
		}
		if c.Certificate != "" || c.PrivateKey != "" || c.SelfManaged != nil {
			return invalidField("type", "MANAGED", "A managed certificate cannot carry a certificate or private key.")
		}
		// Provisioning never completes in the emulator (there is no DNS).
		c.Managed.Status = "PROVISIONING"
		c.Managed.DomainStatus = map[string]string{}
		for _, d := range c.Managed.Domains {
			c.Managed.DomainStatus[d] = "PROVISIONING"
		}
		return nil
	}
	if c.Managed != nil {
		return invalidField("type", "SELF_MANAGED", "A self-managed certificate cannot carry managed settings.")
	}
	if sm := c.SelfManaged; sm != nil {
		if c.Certificate == "" {
			c.Certificate = sm.Certificate
		}
		if c.PrivateKey == "" {
			c.PrivateKey = sm.PrivateKey
		}
		c.SelfManaged = nil
	}
	if c.Certificate == "" {
		return requiredField("certificate")
	}
	if c.PrivateKey == "" {
		return requiredField("privateKey")
	}
	pair, err := tls.X509KeyPair([]byte(c.Certificate), []byte(c.PrivateKey))
	if err != nil {
		return invalidField("certificate", "", "The SSL certificate and private key could not be parsed or do not match.")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return invalidField("certificate", "", "The SSL certificate could not be parsed.")
	}
	c.ExpireTime = timestamp(leaf.NotAfter)
	c.SubjectAlternativeNames = leaf.DNSNames
	c.PrivateKey = "" // never returned
	// Google also returns the certificate under selfManaged (without the
	// key), as recorded traffic shows.
	c.SelfManaged = &compute.SslCertificateSelfManagedSslCertificate{Certificate: c.Certificate}
	return nil
}

// --- global forwarding rules ---

var portRangeRE = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)

func prepareForwardingRule(m *mutation, obj, prev any) error {
	fr := obj.(*compute.ForwardingRule)
	if prev != nil {
		return patchForwardingRule(m, fr, prev.(*compute.ForwardingRule))
	}
	if fr.Target == "" && fr.BackendService != "" && m.region != "" {
		return passthroughRule(m, fr)
	}
	if fr.Target == "" {
		return requiredField("target")
	}
	if fr.BackendService != "" {
		return invalidField("backendService", fr.BackendService, "A forwarding rule cannot have both a target and a backendService.")
	}
	link, t, err := m.resolveTarget(fr.Target)
	if err != nil {
		return err
	}
	fr.Target = link
	if err := checkEnum("IPProtocol", fr.IPProtocol, "AH", "ESP", "ICMP", "L3_DEFAULT", "SCTP", "TCP", "UDP"); err != nil {
		return err
	}
	if fr.IPProtocol == "" {
		fr.IPProtocol = "TCP"
	}
	if fr.IPProtocol != "TCP" {
		return invalidField("IPProtocol", fr.IPProtocol, "Target proxies require protocol TCP.")
	}
	if err := checkEnum("loadBalancingScheme", fr.LoadBalancingScheme, "EXTERNAL", "EXTERNAL_MANAGED", "INTERNAL_MANAGED", "INTERNAL_SELF_MANAGED"); err != nil {
		return err
	}
	if m.region != "" {
		if err := regionalProxyRule(m, fr); err != nil {
			return err
		}
	} else if fr.LoadBalancingScheme == "INTERNAL_MANAGED" {
		return invalidField("loadBalancingScheme", fr.LoadBalancingScheme, "A global forwarding rule cannot use loadBalancingScheme INTERNAL_MANAGED.")
	} else if fr.Network != "" {
		// An INTERNAL_SELF_MANAGED rule names its network.
		link, _, err := m.resolve("network", fr.Network, false, specNetworks)
		if err != nil {
			return err
		}
		fr.Network = link
	}
	if fr.LoadBalancingScheme == "" {
		fr.LoadBalancingScheme = "EXTERNAL"
	}
	if t.spec.segment == "targetTcpProxies" && fr.PortRange == "" {
		return requiredField("portRange")
	}
	if err := checkEnum("networkTier", fr.NetworkTier, "PREMIUM", "STANDARD"); err != nil {
		return err
	}
	if fr.NetworkTier == "" {
		fr.NetworkTier = "PREMIUM"
	}
	if fr.PortRange == "" {
		// Inferred default: the proxy's conventional port.
		fr.PortRange = "80-80"
		if t.spec == specTargetHTTPSProxies || t.spec == specRegionTargetHTTPSProxies {
			fr.PortRange = "443-443"
		}
	}
	pm := portRangeRE.FindStringSubmatch(fr.PortRange)
	if pm == nil {
		return invalidField("portRange", fr.PortRange, "Must be a port or a port range like 443-443.")
	}
	if pm[2] == "" {
		fr.PortRange = pm[1] + "-" + pm[1]
	}
	if len(fr.Ports) > 0 || fr.AllPorts {
		return invalidField("ports", strings.Join(fr.Ports, ","), "ports and allPorts cannot be used with target proxies; use portRange.")
	}
	if fr.IPAddress == "" {
		fr.IPAddress = fmt.Sprintf("34.%d.%d.%d", 64+rand.IntN(64), rand.IntN(256), 1+rand.IntN(254))
	}
	// Insert ignores labels: only setLabels sets them (recorded traffic;
	// the API reference: "can only be added or modified by the setLabels
	// method").
	fr.Labels = nil
	fr.LabelFingerprint = labelFingerprint(nil)
	return nil
}

func labelFingerprint(labels map[string]string) string {
	if len(labels) == 0 {
		return "42WmSpB8rSM=" // Compute's fingerprint of an empty label set
	}
	return newFingerprint()
}

var labelKeyRE, labelValueRE = regexp.MustCompile(`^[a-z][-_a-z0-9]{0,62}$`), regexp.MustCompile(`^[-_a-z0-9]{0,63}$`)

// checkLabels applies Google's label rules (at most 64; keys start with a
// lowercase letter; keys and values of lowercase letters, digits, - and _,
// at most 63 characters); the message is the emulator's.
func checkLabels(labels map[string]string) error {
	if len(labels) > 64 {
		return invalidField("labels", fmt.Sprint(len(labels)), "At most 64 labels may be set.")
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(v) {
			return invalidField("labels."+k, v, "Label keys and values must be lowercase letters, digits, '-' or '_', at most 63 characters, keys starting with a letter.")
		}
	}
	return nil
}

// resolveTarget resolves a forwarding rule's target: a target proxy of the
// rule's scope.
func (m *mutation) resolveTarget(target string) (string, *resource, error) {
	targets := []*spec{specTargetHTTPSProxies, specTargetHTTPProxies, specTargetTCPProxies}
	if m.region != "" {
		targets = []*spec{specRegionTargetHTTPSProxies, specRegionTargetHTTPProxies, specRegionTargetTCPProxies}
	}
	link, t, err := m.resolve("target", target, false, targets...)
	if err == nil {
		err = sameRegion(m, "target", link)
	}
	return link, t, err
}

// regionalProxyRule checks a regional forwarding rule to a target proxy:
// the regional external (EXTERNAL_MANAGED) and internal (INTERNAL_MANAGED)
// Application and proxy Network Load Balancers. Both run on Envoy proxies
// in the rule's VPC network, so the network is required and must hold an
// active proxy-only subnet (purpose REGIONAL_MANAGED_PROXY) in the region
// (cloud.google.com/load-balancing/docs/proxy-only-subnets); the messages
// are the emulator's, in Compute's shapes (no refusal is recorded).
func regionalProxyRule(m *mutation, fr *compute.ForwardingRule) error {
	if fr.LoadBalancingScheme != "EXTERNAL_MANAGED" && fr.LoadBalancingScheme != "INTERNAL_MANAGED" {
		return invalidField("loadBalancingScheme", fr.LoadBalancingScheme,
			"A regional forwarding rule to a target proxy must use loadBalancingScheme EXTERNAL_MANAGED or INTERNAL_MANAGED.")
	}
	if fr.Network == "" {
		return requiredField("network")
	}
	net, err := ruleNetwork(m, fr)
	if err != nil {
		return err
	}
	for _, r := range m.s.all(specSubnetworks, net.project.ID, m.region) {
		sn := r.obj.(*compute.Subnetwork)
		if sn.Purpose == "REGIONAL_MANAGED_PROXY" && sn.Role == "ACTIVE" && relOf(sn.Network) == net.rel() {
			return nil
		}
	}
	return invalidField("network", fr.Network, "An active proxy-only subnetwork is required in the same region and VPC as the forwarding rule.")
}

// forwardingRulePatchable are the members a forwarding rule's patch may
// carry. The API reference says only networkTier can be patched; recorded
// traffic shows allowGlobalAccess patched too (k8s-config-connector's
// regionalcomputeforwardingrulefull-direct), and allowPscGlobalAccess is
// documented as updatable the same way. Anything else is refused with the
// emulator's message.
var forwardingRulePatchable = map[string]bool{"allowGlobalAccess": true, "allowPscGlobalAccess": true, "networkTier": true, "fingerprint": true}

// patchForwardingRule checks a patch (fr is the merged new state): only
// forwardingRulePatchable members may be sent; labels stay as they were
// (setLabels is their only writer).
func patchForwardingRule(m *mutation, fr, prev *compute.ForwardingRule) error {
	for k, v := range m.raw {
		if !forwardingRulePatchable[k] {
			return invalidField(k, fmt.Sprint(v), "Only allowGlobalAccess, allowPscGlobalAccess and networkTier can be patched on a forwarding rule.")
		}
	}
	if err := checkEnum("networkTier", fr.NetworkTier, "PREMIUM", "STANDARD"); err != nil {
		return err
	}
	if fr.AllowGlobalAccess && fr.LoadBalancingScheme != "INTERNAL" && fr.LoadBalancingScheme != "INTERNAL_MANAGED" {
		return invalidField("allowGlobalAccess", "true", "allowGlobalAccess can be set only on internal forwarding rules.")
	}
	fr.Labels, fr.LabelFingerprint = prev.Labels, prev.LabelFingerprint
	return nil
}

// passthroughRule checks a regional forwarding rule to a backend service:
// the internal (INTERNAL) and external (EXTERNAL) passthrough Network Load
// Balancers (cloud.google.com/load-balancing/docs/internal,
// .../docs/network/networklb-backend-service). The backend service must be
// in the rule's region with the same load-balancing scheme; an internal
// rule lives in a network (the project's default when none is named) and
// gets a service name from its serviceLabel, as recorded
// ("label.NAME.il4.REGION.lb.PROJECT.internal"). Messages are the
// emulator's, in Compute's shapes (no refusal is recorded).
func passthroughRule(m *mutation, fr *compute.ForwardingRule) error {
	if err := checkEnum("loadBalancingScheme", fr.LoadBalancingScheme, "EXTERNAL", "INTERNAL"); err != nil {
		return invalidField("loadBalancingScheme", fr.LoadBalancingScheme,
			"A forwarding rule to a backend service must use loadBalancingScheme INTERNAL or EXTERNAL.")
	}
	if fr.LoadBalancingScheme == "" {
		fr.LoadBalancingScheme = "EXTERNAL"
	}
	link, bs, err := m.resolve("backendService", fr.BackendService, false, specRegionBackendServices)
	if err == nil {
		err = sameRegion(m, "backendService", link)
	}
	if err != nil {
		return err
	}
	if scheme := bs.obj.(*compute.BackendService).LoadBalancingScheme; scheme != fr.LoadBalancingScheme {
		return invalidField("backendService", fr.BackendService,
			"The backend service's loadBalancingScheme "+scheme+" does not match the forwarding rule's "+fr.LoadBalancingScheme+".")
	}
	fr.BackendService = link
	if err := checkEnum("IPProtocol", fr.IPProtocol, "AH", "ESP", "ICMP", "L3_DEFAULT", "SCTP", "TCP", "UDP"); err != nil {
		return err
	}
	if fr.IPProtocol == "" {
		fr.IPProtocol = "TCP"
	}
	if err := checkEnum("networkTier", fr.NetworkTier, "PREMIUM", "STANDARD"); err != nil {
		return err
	}
	if fr.NetworkTier == "" {
		fr.NetworkTier = "PREMIUM"
	}
	if fr.AllPorts && (len(fr.Ports) > 0 || fr.PortRange != "") {
		return invalidField("allPorts", "true", "allPorts cannot be used with ports or portRange.")
	}
	if len(fr.Ports) > 5 {
		return invalidField("ports", strings.Join(fr.Ports, ","), "At most 5 ports may be specified.")
	}
	if fr.LoadBalancingScheme == "INTERNAL" {
		if fr.PortRange != "" {
			return invalidField("portRange", fr.PortRange, "portRange cannot be used with loadBalancingScheme INTERNAL; use ports or allPorts.")
		}
		if fr.Network == "" {
			fr.Network = "global/networks/default"
		}
		if _, err := ruleNetwork(m, fr); err != nil {
			return err
		}
		if fr.ServiceLabel != "" {
			fr.ServiceName = fr.ServiceLabel + "." + fr.Name + ".il4." + m.region + ".lb." + m.project.ID + ".internal"
		}
		if fr.IPAddress == "" {
			fr.IPAddress = fmt.Sprintf("10.%d.%d.%d", rand.IntN(256), rand.IntN(256), 2+rand.IntN(253))
		}
	} else if fr.IPAddress == "" {
		fr.IPAddress = fmt.Sprintf("34.%d.%d.%d", 64+rand.IntN(64), rand.IntN(256), 1+rand.IntN(254))
	}
	fr.Labels = nil
	fr.LabelFingerprint = labelFingerprint(nil)
	return nil
}

// decorateForwardingRule prints an empty description, as recorded.
func decorateForwardingRule(obj any) {
	fr := obj.(*compute.ForwardingRule)
	fr.ForceSendFields = append(fr.ForceSendFields, "Description")
}

// ruleNetwork resolves a regional forwarding rule's network and, when
// set, its subnetwork, which must be in the rule's region and network; both
// are canonicalised in place.
func ruleNetwork(m *mutation, fr *compute.ForwardingRule) (*resource, error) {
	link, net, err := m.resolve("network", fr.Network, false, specNetworks)
	if err != nil {
		return nil, err
	}
	fr.Network = link
	if fr.Subnetwork != "" {
		link, sub, err := m.resolve("subnetwork", fr.Subnetwork, false, specSubnetworks)
		if err == nil {
			err = sameRegion(m, "subnetwork", link)
		}
		if err != nil {
			return nil, err
		}
		if relOf(sub.obj.(*compute.Subnetwork).Network) != net.rel() {
			return nil, invalidField("subnetwork", fr.Subnetwork, "The subnetwork must belong to the network '"+net.rel()+"'.")
		}
		fr.Subnetwork = link
	}
	return net, nil
}

func forwardingRuleRefs(obj any) []string {
	fr := obj.(*compute.ForwardingRule)
	return []string{fr.Target, fr.BackendService, fr.Network, fr.Subnetwork}
}
