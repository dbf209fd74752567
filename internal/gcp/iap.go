package gcp

import (
	"context"
	"encoding/base64"
	"fmt"

	iap "google.golang.org/api/iap/v1"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// IAPAdapter implements iapsetup.IAPPolicies over the Identity-Aware Proxy
// API v1 (REST, google.golang.org/api/iap/v1): getIamPolicy and
// setIamPolicy on IAP resources (projects/NUMBER/iap_web/...).
//
// Permissions (Google's getIamPolicy/setIamPolicy reference lists one per
// resource kind; the mapping below follows it, not verified on a real
// project): iap.webServices.getIamPolicy / iap.webServices.setIamPolicy on
// backend-service and cloud_run-REGION service resources,
// iap.web.getIamPolicy on the project-wide projects/NUMBER/iap_web.
//
// Where the emulator differs from Google: it checks no permissions, answers
// NOT_FOUND for resources it does not know, and normalises bindings (see
// emulator/iapapi).
type IAPAdapter struct {
	c    *iap.Service
	pace *pacer
}

var _ iapsetup.IAPPolicies = (*IAPAdapter)(nil)

// GetIAPPolicy reads the IAM policy of an IAP resource, asking for version 3
// so conditional bindings come back intact. Needs iap.webServices.getIamPolicy
// (iap.web.getIamPolicy for projects/NUMBER/iap_web).
func (a *IAPAdapter) GetIAPPolicy(ctx context.Context, resource string) (_ *iapsetup.Policy, err error) {
	defer classify(&err)
	p, err := paced(ctx, a.pace, readCall, func() (*iap.Policy, error) {
		return a.c.V1.GetIamPolicy(resource, &iap.GetIamPolicyRequest{
			Options: &iap.GetPolicyOptions{RequestedPolicyVersion: 3},
		}).Context(ctx).Do()
	})
	if err != nil {
		return nil, fmt.Errorf("getting IAM policy of IAP resource %s: %w", resource, err)
	}
	return fromIAPPolicy(resource, p)
}

// SetIAPPolicy replaces the IAM policy of an IAP resource; p.Etag is the
// precondition (a concurrent change → 409 ABORTED). Needs
// iap.webServices.setIamPolicy.
func (a *IAPAdapter) SetIAPPolicy(ctx context.Context, resource string, p *iapsetup.Policy) (_ *iapsetup.Policy, err error) {
	defer classify(&err)
	out, err := paced(ctx, a.pace, writeCall, func() (*iap.Policy, error) {
		return a.c.V1.SetIamPolicy(resource, &iap.SetIamPolicyRequest{Policy: toIAPPolicy(p)}).Context(ctx).Do()
	})
	if err != nil {
		return nil, fmt.Errorf("setting IAM policy of IAP resource %s: %w", resource, err)
	}
	return fromIAPPolicy(resource, out)
}

// fromIAPPolicy converts the REST policy; its etag is base64 of the opaque
// bytes IAM uses.
func fromIAPPolicy(resource string, p *iap.Policy) (*iapsetup.Policy, error) {
	etag, err := base64.StdEncoding.DecodeString(p.Etag)
	if err != nil {
		return nil, fmt.Errorf("reading IAM policy of IAP resource %s: etag %q is not base64: %w", resource, p.Etag, err)
	}
	out := &iapsetup.Policy{Version: int32(p.Version), Etag: etag}
	for _, b := range p.Bindings {
		if b == nil {
			continue
		}
		nb := iapsetup.Binding{Role: b.Role, Members: append([]string(nil), b.Members...)}
		if c := b.Condition; c != nil {
			nb.Condition = &iapsetup.Condition{Title: c.Title, Description: c.Description, Expression: c.Expression, Location: c.Location}
		}
		out.Bindings = append(out.Bindings, nb)
	}
	return out, nil
}

func toIAPPolicy(p *iapsetup.Policy) *iap.Policy {
	out := &iap.Policy{Version: int64(p.Version)}
	if len(p.Etag) > 0 {
		out.Etag = base64.StdEncoding.EncodeToString(p.Etag)
	}
	for _, b := range p.Bindings {
		nb := &iap.Binding{Role: b.Role, Members: append([]string(nil), b.Members...)}
		if c := b.Condition; c != nil {
			nb.Condition = &iap.Expr{Title: c.Title, Description: c.Description, Expression: c.Expression, Location: c.Location}
		}
		out.Bindings = append(out.Bindings, nb)
	}
	if len(out.Bindings) == 0 {
		// An empty policy still replaces the old one (all bindings removed).
		out.ForceSendFields = []string{"Bindings"}
	}
	return out
}
