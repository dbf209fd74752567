package iapsetup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/internal/gcperr"
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
	if e.permission != "" && gcperr.IsPermissionDenied(e.err) {
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

// observe reads everything a plan needs in one concurrent round: the service
// (unless listed is given), its IAM policy, the IAP service agent (cached),
// the serverless NEGs of its region and the project's backend services.
//
// When the service turns out to be unmanaged, errors of the other reads do
// not matter and are dropped. A returned error leaves obs.Service set when
// the service itself was read.
func (r *Reconciler) observe(ctx context.Context, ref ServiceRef, listed *Service) (*Observed, error) {
	obs := &Observed{Service: listed.clone()}
	var svcErr, polErr, agentErr, negErr, bsErr error
	g, gctx := errgroup.WithContext(ctx)
	if listed == nil {
		g.Go(func() error {
			obs.Service, svcErr = r.d.Services.GetService(gctx, ref)
			if svcErr != nil {
				svcErr = &readError{"run.services.get", "", svcErr}
			}
			return svcErr // nothing else matters without the service
		})
	}
	g.Go(func() error {
		obs.Policy, polErr = r.d.Policies.GetIAMPolicy(gctx, ref)
		if polErr != nil {
			polErr = &readError{"run.services.getIamPolicy", "", polErr}
		}
		return nil
	})
	g.Go(func() error {
		obs.Agent, agentErr = r.agents.get(gctx, ref.Project)
		if agentErr != nil {
			agentErr = &readError{"serviceusage.services.use", gcloudAgent(ref.Project), agentErr}
		}
		return nil
	})
	g.Go(func() error {
		obs.NEGs, negErr = r.d.NEGs.ListServerlessNEGs(gctx, ref.Project, ref.Region)
		if negErr != nil {
			negErr = &readError{"compute.networkEndpointGroups.list", "", negErr}
		}
		return nil
	})
	g.Go(func() error {
		obs.Backends, bsErr = r.d.Backends.ListBackendServices(gctx, ref.Project)
		if bsErr != nil {
			bsErr = &readError{"compute.backendServices.list", "", bsErr}
		}
		return nil
	})
	_ = g.Wait()
	if svcErr != nil {
		return obs, svcErr
	}
	if d := DesiredFor(obs.Service); d.Intent != Enforce {
		return obs, nil
	}
	if polErr != nil && gcperr.IsNotFound(polErr) {
		return obs, errGone
	}
	if err := joinPreferTransient(polErr, agentErr, negErr, bsErr); err != nil {
		return obs, err
	}
	if obs.Agent == "" {
		return obs, fmt.Errorf("the IAP service agent of project %s has no email", ref.Project)
	}
	return obs, nil
}

// agentCache caches IAP service agent emails per project (at most size
// projects, least recently used evicted first, each for ttl), and collapses
// concurrent lookups of one project into a single call.
type agentCache = loadingCache[string]

func newAgentCache(id AgentIdentity, ttl time.Duration, size int, now func() time.Time) *agentCache {
	return newLoadingCache(size, now, func(ctx context.Context, project string) (string, time.Duration, error) {
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
