package gcp

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// ComputeAdapter implements iapsetup.Compute over the Compute Engine v1
// REST API.
type ComputeAdapter struct {
	c         *compute.Service
	opTimeout time.Duration
	pace      *pacer
}

var _ iapsetup.Compute = (*ComputeAdapter)(nil)

// serverlessFilter selects serverless NEGs server-side. Cloud Run NEGs that
// select by URL mask are kept (iapsetup reports them), so the filter does not
// test cloudRun.service.
const serverlessFilter = `networkEndpointType = "SERVERLESS"`

// ListServerlessNEGs lists the serverless NEGs of project in region. Needs
// compute.networkEndpointGroups.list.
func (a *ComputeAdapter) ListServerlessNEGs(ctx context.Context, project, region string) (_ []iapsetup.NEG, err error) {
	defer classify(&err)
	var out []iapsetup.NEG
	err = a.pages(ctx, func(token string) (string, error) {
		l, err := a.c.RegionNetworkEndpointGroups.List(project, region).Filter(serverlessFilter).PageToken(token).Context(ctx).Do()
		if err != nil {
			return "", err
		}
		for _, n := range l.Items {
			out = append(out, fromNEG(n))
		}
		return l.NextPageToken, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing serverless network endpoint groups of project %s in %s: %w", project, region, err)
	}
	return out, nil
}

// GetNEG reads one regional NEG. Needs compute.networkEndpointGroups.get.
func (a *ComputeAdapter) GetNEG(ctx context.Context, ref iapsetup.NEGRef) (_ *iapsetup.NEG, err error) {
	defer classify(&err)
	n, err := paced(ctx, a.pace, readCall, func() (*compute.NetworkEndpointGroup, error) {
		return a.c.RegionNetworkEndpointGroups.Get(ref.Project, ref.Region, ref.Name).Context(ctx).Do()
	})
	if err != nil {
		return nil, fmt.Errorf("getting network endpoint group %s: %w", ref, err)
	}
	out := fromNEG(n)
	return &out, nil
}

// ListBackendServices lists every backend service of project, global and
// regional, with one aggregatedList call per page. Needs
// compute.backendServices.list (and compute.regionBackendServices.list).
func (a *ComputeAdapter) ListBackendServices(ctx context.Context, project string) (_ []iapsetup.BackendService, err error) {
	defer classify(&err)
	var out []iapsetup.BackendService
	err = a.pages(ctx, func(token string) (string, error) {
		l, err := a.c.BackendServices.AggregatedList(project).PageToken(token).Context(ctx).Do()
		if err != nil {
			return "", err
		}
		for _, scoped := range l.Items {
			for _, b := range scoped.BackendServices {
				bs, err := fromBackendService(b)
				if err != nil {
					return "", err
				}
				out = append(out, bs)
			}
		}
		return l.NextPageToken, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing backend services of project %s: %w", project, err)
	}
	return out, nil
}

// GetBackendService reads one backend service. Needs
// compute.backendServices.get (global) or compute.regionBackendServices.get.
func (a *ComputeAdapter) GetBackendService(ctx context.Context, ref iapsetup.BackendRef) (_ *iapsetup.BackendService, err error) {
	defer classify(&err)
	b, err := paced(ctx, a.pace, readCall, func() (*compute.BackendService, error) {
		if ref.Region == "" {
			return a.c.BackendServices.Get(ref.Project, ref.Name).Context(ctx).Do()
		}
		return a.c.RegionBackendServices.Get(ref.Project, ref.Region, ref.Name).Context(ctx).Do()
	})
	if err != nil {
		return nil, fmt.Errorf("getting backend service %s: %w", ref, err)
	}
	out, err := fromBackendService(b)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// EnableIAP patches iap.enabled=true (and nothing else: the body is a JSON
// merge patch holding only the fingerprint and iap.enabled) with fingerprint
// as precondition (stale → 412 conditionNotMet), then waits for the
// operation under the adapter's operation timeout. Needs
// compute.backendServices.update (or compute.regionBackendServices.update);
// Google's IAP docs also list clientauthconfig.clients.create and
// clientauthconfig.clients.getWithSecret for enabling IAP.
func (a *ComputeAdapter) EnableIAP(ctx context.Context, ref iapsetup.BackendRef, fingerprint string) (err error) {
	defer classify(&err)
	if fingerprint == "" {
		return fmt.Errorf("enabling IAP on backend service %s: no fingerprint", ref)
	}
	patch := &compute.BackendService{Fingerprint: fingerprint, Iap: &compute.BackendServiceIAP{Enabled: true}}
	op, err := paced(ctx, a.pace, writeCall, func() (*compute.Operation, error) {
		if ref.Region == "" {
			return a.c.BackendServices.Patch(ref.Project, ref.Name, patch).Context(ctx).Do()
		}
		return a.c.RegionBackendServices.Patch(ref.Project, ref.Region, ref.Name, patch).Context(ctx).Do()
	})
	if err != nil {
		return fmt.Errorf("patching backend service %s: %w", ref, err)
	}
	if err := a.waitOp(ctx, ref.Project, ref.Region, op); err != nil {
		return fmt.Errorf("patching backend service %s: %w", ref, err)
	}
	return nil
}

// waitOp waits for a Compute operation with operations.wait (which returns
// after at most about two minutes, done or not) until it is DONE or the
// operation timeout passes, and turns an operation error into a
// *googleapi.Error carrying its HTTP status and reason. Needs
// compute.globalOperations.get or compute.regionOperations.get.
func (a *ComputeAdapter) waitOp(ctx context.Context, project, region string, op *compute.Operation) error {
	wctx, cancel := context.WithTimeout(ctx, a.opTimeout)
	defer cancel()
	for op.Status != "DONE" {
		name := op.Name
		var err error
		op, err = paced(wctx, a.pace, readCall, func() (*compute.Operation, error) {
			if region == "" {
				return a.c.GlobalOperations.Wait(project, name).Context(wctx).Do()
			}
			return a.c.RegionOperations.Wait(project, region, name).Context(wctx).Do()
		})
		if err != nil {
			return fmt.Errorf("waiting for operation: %w", err)
		}
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		return opError(op)
	}
	return nil
}

// opError converts a failed operation into the error the same failure would
// have produced synchronously.
func opError(op *compute.Operation) error {
	e := &googleapi.Error{Code: int(op.HttpErrorStatusCode), Message: op.HttpErrorMessage}
	var msgs []string
	for _, it := range op.Error.Errors {
		e.Errors = append(e.Errors, googleapi.ErrorItem{Reason: lowerCamel(it.Code), Message: it.Message})
		msgs = append(msgs, it.Message)
	}
	e.Code = cmp.Or(e.Code, 400)
	if m := strings.Join(msgs, "; "); m != "" {
		e.Message = m
	}
	return fmt.Errorf("operation %s failed: %w", op.Name, e)
}

// lowerCamel turns an operation error code (CONDITION_NOT_MET) into the
// reason the synchronous API uses (conditionNotMet).
func lowerCamel(code string) string {
	parts := strings.Split(strings.ToLower(code), "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// HTTPSFrontend follows the backend service's usedBy URL maps to target
// HTTPS proxies whose urlMap is one of them, and to forwarding rules whose
// target is one of those proxies. One list call per collection and scope,
// both collections of a scope listed concurrently (one round trip):
// global maps need compute.targetHttpsProxies.list and
// compute.globalForwardingRules.list; regional maps need
// compute.regionTargetHttpsProxies.list and compute.forwardingRules.list.
func (a *ComputeAdapter) HTTPSFrontend(ctx context.Context, b *iapsetup.BackendService) (_ iapsetup.Frontend, err error) {
	defer classify(&err)
	var fe iapsetup.Frontend
	type scope struct{ project, region string }
	maps := map[scope][]string{}
	for _, u := range b.UsedBy {
		p := iapsetup.ResourcePath(u)
		parts := strings.Split(p, "/")
		switch {
		case len(parts) == 5 && parts[0] == "projects" && parts[2] == "global" && parts[3] == "urlMaps":
			maps[scope{parts[1], ""}] = append(maps[scope{parts[1], ""}], p)
		case len(parts) == 6 && parts[0] == "projects" && parts[2] == "regions" && parts[4] == "urlMaps":
			maps[scope{parts[1], parts[3]}] = append(maps[scope{parts[1], parts[3]}], p)
		default:
			continue
		}
		fe.URLMaps = append(fe.URLMaps, p)
	}
	for sc, urlMaps := range maps {
		// The two lists do not depend on each other: listing them together
		// costs one round trip instead of two (and a forwarding-rule list
		// that turns out unneeded when no HTTPS proxy uses the map).
		var (
			proxies []string
			rules   []forwardingRule
		)
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() (err error) { proxies, err = a.httpsProxies(gctx, sc.project, sc.region, urlMaps); return err })
		g.Go(func() (err error) { rules, err = a.forwardingRules(gctx, sc.project, sc.region); return err })
		if err := g.Wait(); err != nil {
			return fe, err
		}
		for _, r := range rules {
			if matchesAny(r.target, proxies) {
				fe.ForwardingRules = append(fe.ForwardingRules, r.path)
			}
		}
	}
	fe.HTTPS = len(fe.ForwardingRules) > 0
	return fe, nil
}

func matchesAny(ref string, paths []string) bool {
	for _, p := range paths {
		if ref != "" && iapsetup.ResourcePath(ref) == iapsetup.ResourcePath(p) {
			return true
		}
	}
	return false
}

func (a *ComputeAdapter) httpsProxies(ctx context.Context, project, region string, urlMaps []string) ([]string, error) {
	var out []string
	err := a.pages(ctx, func(token string) (string, error) {
		var (
			l   *compute.TargetHttpsProxyList
			err error
		)
		if region == "" {
			l, err = a.c.TargetHttpsProxies.List(project).PageToken(token).Context(ctx).Do()
		} else {
			l, err = a.c.RegionTargetHttpsProxies.List(project, region).PageToken(token).Context(ctx).Do()
		}
		if err != nil {
			return "", err
		}
		for _, p := range l.Items {
			if matchesAny(p.UrlMap, urlMaps) {
				out = append(out, iapsetup.ResourcePath(p.SelfLink))
			}
		}
		return l.NextPageToken, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing target HTTPS proxies of project %s: %w", project, err)
	}
	return out, nil
}

type forwardingRule struct{ path, target string }

func (a *ComputeAdapter) forwardingRules(ctx context.Context, project, region string) ([]forwardingRule, error) {
	var out []forwardingRule
	err := a.pages(ctx, func(token string) (string, error) {
		var (
			l   *compute.ForwardingRuleList
			err error
		)
		if region == "" {
			l, err = a.c.GlobalForwardingRules.List(project).PageToken(token).Context(ctx).Do()
		} else {
			l, err = a.c.ForwardingRules.List(project, region).PageToken(token).Context(ctx).Do()
		}
		if err != nil {
			return "", err
		}
		for _, r := range l.Items {
			out = append(out, forwardingRule{iapsetup.ResourcePath(r.SelfLink), r.Target})
		}
		return l.NextPageToken, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing forwarding rules of project %s: %w", project, err)
	}
	return out, nil
}

// pages calls page with "" and then each next page token until there is
// none, pacing (and, when throttled, retrying) each call as a read.
func (a *ComputeAdapter) pages(ctx context.Context, page func(token string) (string, error)) error {
	token := ""
	for {
		next, err := paced(ctx, a.pace, readCall, func() (string, error) { return page(token) })
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

func fromNEG(n *compute.NetworkEndpointGroup) iapsetup.NEG {
	out := iapsetup.NEG{SelfLink: n.SelfLink, Name: n.Name, Type: n.NetworkEndpointType, Region: lastSegment(n.Region),
		Project: pathSegment(n.SelfLink, "projects")}
	out.Region = cmp.Or(out.Region, pathSegment(n.SelfLink, "regions"))
	if cr := n.CloudRun; cr != nil {
		out.CloudRun = &iapsetup.CloudRunTarget{Service: cr.Service, Tag: cr.Tag, URLMask: cr.UrlMask}
	}
	return out
}

func fromBackendService(b *compute.BackendService) (iapsetup.BackendService, error) {
	ref, err := ParseBackendRef(b.SelfLink)
	if err != nil {
		return iapsetup.BackendService{}, fmt.Errorf("reading backend service %q: %w", b.Name, err)
	}
	out := iapsetup.BackendService{
		SelfLink:            b.SelfLink,
		Ref:                 ref,
		ID:                  strconv.FormatUint(b.Id, 10),
		IAPEnabled:          b.Iap != nil && b.Iap.Enabled,
		EnableCDN:           b.EnableCDN,
		Fingerprint:         b.Fingerprint,
		LoadBalancingScheme: b.LoadBalancingScheme,
		Protocol:            b.Protocol,
	}
	for _, be := range b.Backends {
		if be != nil && be.Group != "" {
			out.Groups = append(out.Groups, be.Group)
		}
	}
	for _, u := range b.UsedBy {
		if u != nil && u.Reference != "" {
			out.UsedBy = append(out.UsedBy, u.Reference)
		}
	}
	return out, nil
}

func lastSegment(u string) string {
	if i := strings.LastIndex(u, "/"); i >= 0 {
		return u[i+1:]
	}
	return u
}
