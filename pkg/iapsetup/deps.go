package iapsetup

import (
	"context"
	"errors"

	"github.com/iapguard/iapguard/pkg/iapsetup/internal/sentinel"
)

// The interfaces below are everything the reconciler needs from Google
// Cloud. internal/gcp implements them over the official clients. The errors
// they return say what happened by wrapping the sentinels below (errors.Is):
// the reconciler looks at nothing else (internal/gcp's Classify maps
// Google's errors onto them).

// Errors. The first four say what an API call ran into; ErrTransient and
// ErrPermanent classify: an implementation wraps ErrTransient in an error
// that retrying later may cure (throttling, unavailability, deadlines,
// conflicts), and every error a Reconciler method returns wraps exactly one
// of ErrTransient (worth redelivering the event) and ErrPermanent (a person
// must act: permission denied, invalid requests, refused unsafe writes).
var (
	// ErrNotFound: the resource does not exist (gRPC NOT_FOUND, HTTP 404).
	ErrNotFound = sentinel.ErrNotFound
	// ErrConflict: the write's precondition (etag, fingerprint) no longer
	// holds, someone else wrote first: re-read and retry (gRPC ABORTED,
	// HTTP 409, 412). Transient.
	ErrConflict = sentinel.ErrConflict
	// ErrPermission: the caller lacks a permission (PERMISSION_DENIED,
	// HTTP 403 other than rate limits).
	ErrPermission = sentinel.ErrPermission
	// ErrInvalid: the request was refused as invalid (INVALID_ARGUMENT,
	// HTTP 400), such as an IAM member that does not exist.
	ErrInvalid   = sentinel.ErrInvalid
	ErrTransient = sentinel.ErrTransient
	ErrPermanent = sentinel.ErrPermanent
)

// CloudRun reads and updates Cloud Run services and their IAM policies
// (the Cloud Run Admin API v2).
type CloudRun interface {
	// GetService returns the service; a missing service is a NOT_FOUND error.
	GetService(ctx context.Context, ref ServiceRef) (*Service, error)
	// ListServices returns every service in project and region. region is
	// a region: Cloud Run v2 refuses the "-" wildcard.
	ListServices(ctx context.Context, project, region string) ([]*Service, error)
	// UpdateService applies u with an update mask naming exactly the fields
	// u sets and u.Etag as precondition, and waits for the operation. With
	// u.ValidateOnly nothing is persisted and the would-be service is
	// returned.
	UpdateService(ctx context.Context, u *ServiceUpdate) (*Service, error)
	// GetIAMPolicy returns the service's IAM policy (requested policy
	// version 3, so conditional bindings are returned intact).
	GetIAMPolicy(ctx context.Context, ref ServiceRef) (*Policy, error)
	// SetIAMPolicy replaces the policy; p.Etag is the precondition. IAM
	// refuses a policy naming a service account it does not know (yet:
	// it is eventually consistent after generateServiceIdentity) with
	// "Service account EMAIL does not exist."; the error wraps ErrInvalid
	// and keeps that text, on which the reconciler waits for a new IAP
	// agent.
	SetIAMPolicy(ctx context.Context, ref ServiceRef, p *Policy) (*Policy, error)
}

// Compute reads serverless network endpoint groups and backend services,
// follows a backend service to its frontends, and turns IAP on (the
// Compute Engine API). There is deliberately no way to turn IAP off.
type Compute interface {
	// ListServerlessNEGs returns the serverless NEGs of project in region.
	ListServerlessNEGs(ctx context.Context, project, region string) ([]NEG, error)
	// GetNEG returns one regional NEG.
	GetNEG(ctx context.Context, ref NEGRef) (*NEG, error)
	// ListBackendServices returns every backend service of project, global
	// and regional, in one aggregated call.
	ListBackendServices(ctx context.Context, project string) ([]BackendService, error)
	// GetBackendService returns one backend service.
	GetBackendService(ctx context.Context, ref BackendRef) (*BackendService, error)
	// EnableIAP sets iap.enabled=true (Google-managed OAuth client) with
	// fingerprint as precondition and waits for the operation.
	EnableIAP(ctx context.Context, ref BackendRef, fingerprint string) error
	// HTTPSFrontend follows URL maps → target HTTPS proxies → forwarding
	// rules for b.
	HTTPSFrontend(ctx context.Context, b *BackendService) (Frontend, error)
}

// AgentIdentity provisions and names a project's IAP service agent.
type AgentIdentity interface {
	// IAPServiceAgent returns the email of the IAP service agent of project
	// (service-NUMBER@gcp-sa-iap.iam.gserviceaccount.com), creating it if
	// needed (Service Usage generateServiceIdentity, idempotent).
	IAPServiceAgent(ctx context.Context, project string) (string, error)
}

// IAPPolicies reads and writes the IAM policies of IAP resources
// (projects/NUMBER/iap_web/...), which decide who may pass IAP.
type IAPPolicies interface {
	// GetIAPPolicy returns the policy of resource (requested policy
	// version 3, so conditional bindings are returned intact).
	GetIAPPolicy(ctx context.Context, resource string) (*Policy, error)
	// SetIAPPolicy replaces the policy of resource; p.Etag is the
	// precondition (a concurrent change fails with ABORTED).
	SetIAPPolicy(ctx context.Context, resource string, p *Policy) (*Policy, error)
}

// ScopeCheck decides whether the reconciler may act on a project (an id or
// a number, as an event names it): in is true, or reason says why not (the
// rejected outcome's reason). err is returned only when the decision could
// not be made (it is classified like any API error). scope.Scope
// (pkg/iapsetup/scope) implements it.
type ScopeCheck interface {
	Check(ctx context.Context, project string) (in bool, reason string, err error)
}

// Deps bundles the collaborators of a Reconciler.
type Deps struct {
	CloudRun CloudRun
	Compute  Compute
	Identity AgentIdentity
	// IAP is optional: without it the access step is skipped ("not
	// read"), nothing is granted and nobody-can-pass is not detected.
	// internal/gcp always provides it.
	IAP IAPPolicies
	// RecordKeys is optional: it reads the key that signs access records
	// (access_record.go). Without it records are written unsigned, never
	// trusted, and iapguard revokes nobody.
	RecordKeys RecordKeys
}

func (d Deps) validate() error {
	var errs []error
	if d.CloudRun == nil {
		errs = append(errs, errors.New("dependency CloudRun is nil"))
	}
	if d.Compute == nil {
		errs = append(errs, errors.New("dependency Compute is nil"))
	}
	if d.Identity == nil {
		errs = append(errs, errors.New("dependency Identity is nil"))
	}
	return errors.Join(errs...)
}

// ServiceUpdate is a write to a Cloud Run service. Its fields can only
// tighten: there is no way to express loosening ingress, turning IAP off or
// disabling the invoker IAM check. The apply path additionally checks every
// update against the service it was computed from (checkServiceUpdate).
type ServiceUpdate struct {
	Ref ServiceRef
	// Etag is the precondition: the etag of the service read this update
	// was computed from.
	Etag string
	// Ingress, when not empty, is the new ingress setting (a Cloud Run v2
	// enum name, as Service.Ingress).
	Ingress string
	// RequireInvokerIAM sets invokerIamDisabled=false.
	RequireInvokerIAM bool
	// EnableIAP sets iapEnabled=true (Cloud Run built-in IAP).
	EnableIAP bool
	// Annotations, when not nil, replaces the service annotations: it is
	// the map that was read plus the managed marker (iapguard.dev/managed),
	// with the access record (iapguard.dev/access-granted) set, changed or
	// removed.
	Annotations map[string]string
	// ValidateOnly asks Cloud Run to validate without persisting.
	ValidateOnly bool
	// Source is Service.Source of the read this update was computed from;
	// the adapter may send it back with only the masked fields changed.
	Source any
}

// Mask returns the Cloud Run v2 update-mask paths of the fields u sets.
func (u *ServiceUpdate) Mask() []string {
	var m []string
	if u.Ingress != "" {
		m = append(m, "ingress")
	}
	if u.RequireInvokerIAM {
		m = append(m, "invoker_iam_disabled")
	}
	if u.EnableIAP {
		m = append(m, "iap_enabled")
	}
	if u.Annotations != nil {
		m = append(m, "annotations")
	}
	return m
}

func (u *ServiceUpdate) empty() bool { return u == nil || len(u.Mask()) == 0 }
