package iapsetup

import (
	"context"
	"time"

	"github.com/googleapis/gax-go/v2"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
)

// SetTestHooks replaces the reconciler's clock and its pause between
// retries (nil: keep the default). For this package's tests only.
func SetTestHooks(o *Options, now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) {
	o.now, o.sleep = now, sleep
}

// FastRetries returns o with retries paced at 1 ms, at most 4 ms.
func FastRetries(o Options) Options {
	o.backoff = gax.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Multiplier: 2}
	return o
}

// CacheStats are the per-project caches' counters.
type CacheStats struct{ Agents, ProjectIAP cache.Stats }

// CachesOf returns r's per-project cache counters.
func CachesOf(r *Reconciler) CacheStats {
	c := CacheStats{Agents: r.agents.Stats()}
	if r.projectIAP != nil {
		c.ProjectIAP = r.projectIAP.Stats()
	}
	return c
}

// IAP resource names and the accessor role, for the package's tests.
const RoleAccessor = roleAccessor

func ProjectIAPResource(number string) string { return projectIAPResource(number) }

func CloudRunIAPResource(number string, ref ServiceRef) string {
	return cloudRunIAPResource(number, ref).Name
}

func BackendIAPResource(number string, b BackendService) string {
	return backendIAPResource(number, b).Name
}

// Label values and ingress settings, for the package's tests.
const (
	LabelEnabled                = labelEnabled
	LabelDisabled               = labelDisabled
	IngressAll                  = ingressAll
	IngressInternalLoadBalancer = ingressInternalLoadBalancer
	IngressInternalOnly         = ingressInternalOnly
	IngressNone                 = ingressNone
)

// The managed marker, for the package's tests.
const ManagedValue = managedValue

func IsManagedMarker(v string) bool { return isManagedMarker(v) }

// The pure planner, for the package's tests.
type Observed = observed

func PlanFor(d Desired, o *Observed) *plan { return planFor(d, o) }

// The annotations iapguard writes, for the package's tests.
const (
	ManagedAnnotation = managedAnnotation
	AccessAnnotation  = accessAnnotation
)
