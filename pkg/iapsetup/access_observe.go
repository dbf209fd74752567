package iapsetup

import (
	"context"
	"maps"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
)

// observeAccess reads, concurrently, the IAM policies of the IAP resources
// the plan names and the project-wide projects/N/iap_web policy (cached per
// project for Options.AccessProjectTTL), into obs.IAP and obs.IAPErrs. It
// runs only for services labelled iap=enabled, in the same round as the
// HTTPS-frontend check. Without an IAP client (Deps.IAP nil) it reads
// nothing.
//
// A failed resource read fails the access step (and the reconcile, which
// is redelivered if the error is transient); a failed project-wide read
// only makes the who-can-pass message say so.
func (r *Reconciler) observeAccess(ctx context.Context, resources []string, project string, obs *observed) {
	if r.d.IAP == nil || (len(resources) == 0 && project == "") {
		return
	}
	type result struct {
		name string
		pol  *Policy
		err  error
	}
	out := make([]result, len(resources)+1)
	var g errgroup.Group
	for i, name := range resources {
		g.Go(func() error {
			pol, err := r.d.IAP.GetIAPPolicy(ctx, name)
			out[i] = result{name, pol, readFailed(err, "iap.webServices.getIamPolicy", "")}
			return nil
		})
	}
	if project != "" {
		g.Go(func() error {
			pol, err := r.projectIAP.get(ctx, project)
			out[len(resources)] = result{project, pol, readFailed(err, "iap.web.getIamPolicy", "")}
			return nil
		})
	}
	_ = g.Wait()
	obs.IAP, obs.IAPErrs = maps.Clone(obs.IAP), maps.Clone(obs.IAPErrs)
	if obs.IAP == nil {
		obs.IAP = map[string]*Policy{}
	}
	if obs.IAPErrs == nil {
		obs.IAPErrs = map[string]error{}
	}
	for _, res := range out {
		switch {
		case res.name == "":
		case res.err != nil:
			obs.IAPErrs[res.name] = res.err
		default:
			obs.IAP[res.name] = res.pol
		}
	}
}

// policyCache caches IAP policies read for the who-can-pass check (the
// project-wide one, shared by every service of a project) and collapses
// concurrent reads of one resource into a single call. Errors are not
// cached; ttl <= 0 caches nothing. Every caller gets its own copy. At most
// size resources are kept, least recently used evicted first.
type policyCache struct{ *cache.Loading[*Policy] }

func newPolicyCache(get func(context.Context, string) (*Policy, error), ttl time.Duration, size int, now func() time.Time) *policyCache {
	return &policyCache{cache.NewLoading(size, now, func(ctx context.Context, resource string) (*Policy, time.Duration, error) {
		p, err := get(ctx, resource)
		return p, ttl, err
	})}
}

func (c *policyCache) get(ctx context.Context, resource string) (*Policy, error) {
	p, err := c.Loading.Get(ctx, resource)
	return p.clone(), err
}
