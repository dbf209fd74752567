package iapsetup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
)

// errGone reports that the service disappeared between reads.
var errGone = errors.New("service disappeared during the reconcile")

// readError adds to a failed read the permission it needs and, when there
// is one, a command that fixes it.
type readError struct {
	permission string
	fix        string
	err        error
}

func (e *readError) Error() string {
	msg := e.err.Error()
	if e.permission != "" && errors.Is(e.err, ErrPermission) {
		// Google answers a project that does not exist with the same 403
		// as one the caller may not read (it does not reveal which).
		msg += "; iapguard's service account needs " + e.permission + " (or the project does not exist)"
	}
	if e.fix != "" {
		msg += "; fix: " + e.fix
	}
	return msg
}

func (e *readError) Unwrap() error { return e.err }

// readFailed wraps err, when there is one, in a readError.
func readFailed(err error, permission, fix string) error {
	if err == nil {
		return nil
	}
	return &readError{permission, fix, err}
}

// observe reads everything a plan needs in one concurrent round: the service
// (unless listed is given), its IAM policy, the IAP service agent (cached),
// the serverless NEGs of its region and the project's backend services.
//
// When the service turns out to be unmanaged, errors of the other reads do
// not matter and are dropped. A returned error leaves obs.Service set when
// the service itself was read.
func (r *Reconciler) observe(ctx context.Context, ref ServiceRef, listed *Service) (*observed, error) {
	obs, e := r.read(ctx, ref, listed)
	if e.svc != nil {
		return obs, e.svc
	}
	if d := DesiredFor(obs.Service); d.Intent != Enforce {
		return obs, nil
	}
	if e.pol != nil && errors.Is(e.pol, ErrNotFound) {
		return obs, errGone
	}
	if err := joinPreferTransient(e.pol, e.agent, e.neg, e.bs); err != nil {
		return obs, err
	}
	if obs.Agent == "" {
		return obs, fmt.Errorf("the IAP service agent of project %s has no email", ref.Project)
	}
	return obs, nil
}

// readErrs are the errors of the first read round, one per read.
type readErrs struct{ svc, pol, agent, neg, bs error }

// read is observe's read round; it keeps every read's error apart.
func (r *Reconciler) read(ctx context.Context, ref ServiceRef, listed *Service) (*observed, readErrs) {
	obs := &observed{Service: listed.clone()}
	var e readErrs
	if listed != nil && DesiredFor(listed).Intent != Enforce {
		return obs, e // skipped, opted-out or rejected from the listed copy alone
	}
	g, gctx := errgroup.WithContext(ctx)
	if listed == nil {
		g.Go(func() error {
			obs.Service, e.svc = r.d.CloudRun.GetService(gctx, ref)
			e.svc = readFailed(e.svc, "run.services.get", "")
			return e.svc // nothing else matters without the service
		})
	}
	g.Go(func() error {
		obs.Policy, e.pol = r.d.CloudRun.GetIAMPolicy(gctx, ref)
		e.pol = readFailed(e.pol, "run.services.getIamPolicy", "")
		return nil
	})
	g.Go(func() error {
		obs.Agent, e.agent = r.agents.Get(gctx, ref.Project)
		e.agent = readFailed(e.agent, "serviceusage.services.use", gcloudAgent(ref.Project))
		return nil
	})
	g.Go(func() error {
		obs.NEGs, e.neg = r.d.Compute.ListServerlessNEGs(gctx, ref.Project, ref.Region)
		e.neg = readFailed(e.neg, "compute.networkEndpointGroups.list", "")
		return nil
	})
	g.Go(func() error {
		obs.Backends, e.bs = r.d.Compute.ListBackendServices(gctx, ref.Project)
		e.bs = readFailed(e.bs, "compute.backendServices.list", "")
		return nil
	})
	_ = g.Wait()
	return obs, e
}

// agentCache caches IAP service agent emails per project (at most size
// projects, least recently used evicted first, each for ttl), and collapses
// concurrent lookups of one project into a single call.
type agentCache = cache.Loading[string]

func newAgentCache(id AgentIdentity, ttl time.Duration, size int, now func() time.Time) *agentCache {
	return cache.NewLoading(size, now, func(ctx context.Context, project string) (string, time.Duration, error) {
		email, err := id.IAPServiceAgent(ctx, project)
		if err != nil {
			return "", 0, err
		}
		if email == "" {
			return "", 0, fmt.Errorf("generateServiceIdentity for project %s returned no email", project)
		}
		return email, ttl, nil
	})
}
