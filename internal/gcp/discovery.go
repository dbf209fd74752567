package gcp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	cloudasset "google.golang.org/api/cloudasset/v1"
	runv1 "google.golang.org/api/run/v1"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// Discovery paths, as outcomes and logs name them.
const (
	// PathAsset: one paged Cloud Asset Inventory SearchAllResources over
	// the scope.
	PathAsset = "cloud-asset"
	// PathRegions: Cloud Run v1 projects.locations.list per project, then
	// Cloud Run v2 ListServices per region.
	PathRegions = "per-region"
)

// Discovery modes (DiscoveryOptions.Mode).
const (
	// ModeAuto searches Cloud Asset Inventory and falls back to the
	// per-region listing when the API is off or not permitted.
	ModeAuto = "auto"
	// ModeAsset searches Cloud Asset Inventory only.
	ModeAsset = "asset"
	// ModeRegions lists per region only.
	ModeRegions = "regions"
)

// AssetPageSize is the page size asked of SearchAllResources: the most
// Cloud Asset returns ("Page size is capped at 500 even if a larger value
// is given", SearchAllResourcesRequest.page_size).
const AssetPageSize = 500

// ServiceAssetType is the Cloud Asset type of a Cloud Run service.
const ServiceAssetType = "run.googleapis.com/Service"

// LabelledQuery is the Cloud Asset query for services that carry the iap
// label with any value (Cloud Asset query syntax: "labels.env:* to find Google
// Cloud resources that have a label env"). Services whose label was
// removed are not found: their label-removal event reports them
// (opted-out).
const LabelledQuery = "labels." + iapsetup.LabelKey + ":*"

// Found is one Cloud Run service a discovery found.
type Found struct {
	Ref iapsetup.ServiceRef
	// Labels as the source saw them: Cloud Asset's index lags behind
	// changes by minutes, so decide nothing on them that a fresh read
	// would not confirm.
	Labels map[string]string
	// Listed is the service as Cloud Run listed it (per-region path only):
	// a fresh copy a reconcile may start from.
	Listed *iapsetup.Service
}

// Discovered is what a discovery found and how.
type Discovered struct {
	Services []Found
	// Path is PathAsset or PathRegions.
	Path string
	// Calls counts the API calls made (pages), throttled retries included.
	Calls int64
	// Fallback says why Cloud Asset was not used (PathRegions in ModeAuto).
	Fallback string
}

// ProjectsUnder returns the project ids (or numbers) under a folder or
// organisation scope, for the per-region path (NewProjectsUnder builds one
// over Resource Manager).
type ProjectsUnder func(ctx context.Context, scope string) ([]string, error)

// DiscoveryOptions configure a Discovery.
type DiscoveryOptions struct {
	// Mode is ModeAuto (default), ModeAsset or ModeRegions.
	Mode string
	// Projects enumerates folder and organisation scopes for the
	// per-region path; nil: such scopes need Cloud Asset.
	Projects ProjectsUnder
	// Parallelism bounds the per-region path's concurrent listings
	// (default 8).
	Parallelism int
}

// Discovery finds the Cloud Run services of a project, folder or
// organisation without the "-" location wildcard, which Cloud Run Admin
// API v2 refuses ("Location must be a valid Google Cloud region, and
// cannot be the "-" wildcard", runpb.ListServicesRequest.parent).
//
// Path 1, Cloud Asset Inventory (organisation scale): SearchAllResources
// (v1 REST, google.golang.org/api/cloudasset/v1) over the scope, asset type run.googleapis.com/Service, 500 results a page
// (ceil(N/500) calls for N services found). Needs
// cloudasset.assets.searchAllResources on the scope and the API
// (cloudasset.googleapis.com) enabled in the consumer project. Quotas
// (cloud.google.com/asset-inventory/docs/quota): 400 SearchAllResources
// per minute per consumer project, 1,500 per minute per organisation; the
// calls are paced to the first. The index lags behind changes (minutes):
// right for sweeps, never for one event's service.
//
// Path 2, per region (when Cloud Asset is off or not permitted, or in
// ModeRegions): for each project, Cloud Run Admin API v1
// projects.locations.list (GET v1/projects/P/locations, the regions where
// Cloud Run is available to the project:
// cloud.google.com/run/docs/reference/rest/v1/projects.locations/list;
// needs run.locations.list), then v2 ListServices in each region (needs
// run.services.list): projects × (1 + regions) calls.
type Discovery struct {
	asset *cloudasset.Service
	v1    *runv1.APIService
	run   *RunAdapter
	pace  *pacer // Cloud Asset
	runP  *pacer // Cloud Run v1 locations: the Run adapter's read pacer
	opts  DiscoveryOptions
}

// SetOptions replaces the discovery options (mode, project enumeration).
func (d *Discovery) SetOptions(o DiscoveryOptions) { d.opts = o }

// Mode returns the discovery mode (ModeAuto when unset).
func (d *Discovery) Mode() string { return cmp.Or(d.opts.Mode, ModeAuto) }

// Discover finds the services of scope (projects/P, folders/N or
// organizations/N; a bare project id means projects/ID). labelled limits
// it to services carrying the iap label (LabelledQuery) on the Cloud Asset
// path; the per-region path always lists every service and then filters.
func (d *Discovery) Discover(ctx context.Context, scope string, labelled bool) (*Discovered, error) {
	if !strings.Contains(scope, "/") {
		scope = "projects/" + scope
	}
	mode := d.Mode()
	var fallback string
	var spent int64
	if mode != ModeRegions {
		out, err := d.searchAsset(ctx, scope, labelled)
		if err == nil || mode == ModeAsset || !AssetUnavailable(err) {
			return out, err
		}
		fallback = "Cloud Asset Inventory unavailable (" + gcperr.Code(err).String() + "): " + err.Error()
		spent = out.Calls
	}
	out, err := d.listRegions(ctx, scope, labelled)
	out.Fallback = fallback
	out.Calls += spent
	return out, err
}

// AssetUnavailable reports whether err means Cloud Asset cannot be used
// here at all — the API is disabled in the consumer project or the caller
// lacks cloudasset.assets.searchAllResources (PERMISSION_DENIED), or the
// endpoint does not serve it (UNIMPLEMENTED) — so the per-region path is
// the way, as opposed to a transient failure that a retry fixes.
func AssetUnavailable(err error) bool {
	switch gcperr.Code(err) {
	case codes.PermissionDenied, codes.Unimplemented:
		return true
	}
	return false
}

func (d *Discovery) searchAsset(ctx context.Context, scope string, labelled bool) (*Discovered, error) {
	out := &Discovered{Path: PathAsset}
	if err := checkRESTName(scope); err != nil {
		return out, err
	}
	tok := ""
	for {
		resp, err := paced(ctx, d.pace, readCall, func() (*cloudasset.SearchAllResourcesResponse, error) {
			out.Calls++
			// One call per page: a retry after throttling starts from the
			// same token.
			c := d.asset.V1.SearchAllResources(scope).AssetTypes(ServiceAssetType).PageSize(AssetPageSize).Context(ctx)
			if labelled {
				c = c.Query(LabelledQuery)
			}
			if tok != "" {
				c = c.PageToken(tok)
			}
			return c.Do()
		})
		if err != nil {
			return out, fmt.Errorf("searching Cloud Asset Inventory for Cloud Run services in %s (cloudasset.assets.searchAllResources): %w", scope, err)
		}
		for _, r := range resp.Results {
			ref, err := parseServiceName(r.Name)
			if err != nil {
				continue // not a service name we can act on
			}
			out.Services = append(out.Services, Found{Ref: ref, Labels: r.Labels})
		}
		if resp.NextPageToken == "" {
			return out, nil
		}
		tok = resp.NextPageToken
	}
}

// Regions lists the Cloud Run regions of project (Cloud Run Admin API v1
// projects.locations.list, every page). Needs run.locations.list.
func (d *Discovery) Regions(ctx context.Context, project string, calls *int64) ([]string, error) {
	var regions []string
	tok := ""
	for {
		resp, err := paced(ctx, d.runP, readCall, func() (*runv1.ListLocationsResponse, error) {
			*calls++
			c := d.v1.Projects.Locations.List("projects/" + project).Context(ctx)
			if tok != "" {
				c = c.PageToken(tok)
			}
			return c.Do()
		})
		if err != nil {
			return nil, fmt.Errorf("listing the Cloud Run regions of project %s (run.locations.list): %w", project, err)
		}
		for _, l := range resp.Locations {
			if l.LocationId != "" {
				regions = append(regions, l.LocationId)
			}
		}
		if resp.NextPageToken == "" {
			return regions, nil
		}
		tok = resp.NextPageToken
	}
}

func (d *Discovery) listRegions(ctx context.Context, scope string, labelled bool) (*Discovered, error) {
	out := &Discovered{Path: PathRegions}
	var projects []string
	if id, ok := strings.CutPrefix(scope, "projects/"); ok {
		projects = []string{id}
	} else {
		if d.opts.Projects == nil {
			return out, fmt.Errorf("listing the projects of %s for the per-region discovery: no Resource Manager directory configured (%w)", scope, iapsetup.ErrPermanent)
		}
		ps, err := d.opts.Projects(ctx, scope)
		if err != nil {
			return out, fmt.Errorf("listing the projects of %s for the per-region discovery: %w", scope, err)
		}
		projects = ps
	}
	var mu sync.Mutex
	var calls int64
	add := func(n int64, fs []Found) {
		mu.Lock()
		calls += n
		out.Services = append(out.Services, fs...)
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	par := d.opts.Parallelism
	if par <= 0 {
		par = 8
	}
	g.SetLimit(par)
	for _, p := range projects {
		g.Go(func() error {
			var n int64
			regions, err := d.Regions(gctx, p, &n)
			add(n, nil)
			if err != nil {
				return err
			}
			for _, r := range regions {
				var c int64
				svcs, err := d.listRegion(gctx, p, r, &c)
				var fs []Found
				for _, s := range svcs {
					if labelled {
						if _, ok := s.Labels[iapsetup.LabelKey]; !ok {
							continue
						}
					}
					fs = append(fs, Found{Ref: s.Ref, Labels: s.Labels, Listed: s})
				}
				add(c, fs)
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	out.Calls = calls
	return out, err
}

// listRegion lists one region, again after a pause when a page was
// throttled (the Run adapter's listing does not retry pages), up to the
// pacer's retry budget.
func (d *Discovery) listRegion(ctx context.Context, project, region string, calls *int64) ([]*iapsetup.Service, error) {
	bo := d.runP.backoff
	for attempt := 0; ; attempt++ {
		svcs, err := d.run.listServices(ctx, project, region, calls)
		if !Throttled(err) || attempt >= d.runP.retries {
			return svcs, err
		}
		if serr := d.runP.sleep(ctx, bo.Pause()); serr != nil {
			return nil, errors.Join(err, serr)
		}
	}
}

// maxFolderWalk bounds the folders NewProjectsUnder walks below one scope.
const maxFolderWalk = 100_000

// NewProjectsUnder enumerates folder and organisation scopes through
// Resource Manager: the folders below the scope (ListFolders, level by
// level) and the projects directly in each (SearchProjects "parent:…").
// Needs resourcemanager.folders.list and resourcemanager.projects.get. A
// scope with more than maxFolderWalk folders below it is a permanent error
// naming the way out (Cloud Asset), not a silently partial list.
func NewProjectsUnder(dir scope.FolderDirectory) ProjectsUnder {
	return projectsUnder(dir, maxFolderWalk)
}

func projectsUnder(dir scope.FolderDirectory, maxFolders int) ProjectsUnder {
	return func(ctx context.Context, scope string) ([]string, error) {
		queue := []string{scope}
		seen := map[string]bool{scope: true}
		var out []string
		for len(queue) > 0 {
			parent := queue[0]
			queue = queue[1:]
			ps, err := dir.ListProjectsIn(ctx, parent)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				out = append(out, p.Name())
			}
			fs, err := dir.ListFolders(ctx, parent)
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				if seen[f] {
					continue
				}
				if len(seen) > maxFolders { // seen holds the scope too
					return nil, fmt.Errorf("%s holds more than %d folders, more than the per-region discovery walks: let the function search Cloud Asset Inventory instead (IAPGUARD_DISCOVERY=auto or asset, cloudasset.assets.searchAllResources on the scope) (%w)",
						scope, maxFolders, iapsetup.ErrPermanent)
				}
				seen[f] = true
				queue = append(queue, f)
			}
		}
		return out, nil
	}
}

// errNoWildcard is returned for a region "-": Cloud Run v2 refuses it.
var errNoWildcard = errors.New(`the Cloud Run Admin API v2 does not accept the "-" location wildcard: name a region, or discover services with gcp.Discovery`)
