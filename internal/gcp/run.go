package gcp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// RunAdapter implements iapsetup.CloudRun over the Cloud Run Admin API v2.
type RunAdapter struct {
	c         *run.ServicesClient
	opTimeout time.Duration
	pace      *pacer
}

var _ iapsetup.CloudRun = (*RunAdapter)(nil)

// GetService reads a service. Needs run.services.get.
func (a *RunAdapter) GetService(ctx context.Context, ref iapsetup.ServiceRef) (_ *iapsetup.Service, err error) {
	defer classify(&err)
	s, err := paced(ctx, a.pace, readCall, func() (*runpb.Service, error) {
		return a.c.GetService(ctx, &runpb.GetServiceRequest{Name: ref.String()})
	})
	if err != nil {
		return nil, fmt.Errorf("getting Cloud Run service %s: %w", ref, err)
	}
	return fromRunService(s)
}

// ListServices lists the services of project in region, which must be a
// region: Cloud Run Admin API v2 refuses the "-" wildcard
// (runpb.ListServicesRequest.parent: "cannot be the "-" wildcard"), and so
// does this method, without a call; Discovery finds services across
// regions. Each page waits for the read limiter, which is told how it
// ended; a throttled page is not retried (the iterator's error is final):
// the listing fails transiently. Needs run.services.list.
func (a *RunAdapter) ListServices(ctx context.Context, project, region string) (_ []*iapsetup.Service, err error) {
	defer classify(&err)
	var calls int64
	return a.listServices(ctx, project, region, &calls)
}

// listServices is ListServices counting the pages fetched in *calls.
func (a *RunAdapter) listServices(ctx context.Context, project, region string, calls *int64) ([]*iapsetup.Service, error) {
	parent := "projects/" + project + "/locations/" + region
	if region == "-" || region == "" {
		return nil, fmt.Errorf("listing Cloud Run services in %s: %w (%w)", parent, errNoWildcard, iapsetup.ErrPermanent)
	}
	it := a.c.ListServices(ctx, &runpb.ListServicesRequest{Parent: parent, PageSize: 500})
	var out []*iapsetup.Service
	for {
		// The next Next call fetches a page when the buffer is empty and
		// either nothing was fetched yet or the last page had a token.
		fetch := it.PageInfo().Remaining() == 0 && (it.Response == nil || it.PageInfo().Token != "")
		var sent time.Time
		if fetch {
			if err := wait(ctx, a.pace.limiter(readCall)); err != nil {
				return nil, err
			}
			sent = a.pace.now(readCall)
			*calls++
		}
		s, err := it.Next()
		if fetch {
			a.pace.observe(readCall, sent, err)
		}
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing Cloud Run services in %s: %w", parent, err)
		}
		svc, err := fromRunService(s)
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
}

// UpdateService sends the service as read (u.Source, when it is a
// *runpb.Service) with u's fields applied, u.Etag as precondition and an
// update mask naming exactly u's fields, then waits for the operation under
// the adapter's operation timeout. With u.ValidateOnly the server validates
// and returns the would-be service without storing it. Needs
// run.services.update.
func (a *RunAdapter) UpdateService(ctx context.Context, u *iapsetup.ServiceUpdate) (_ *iapsetup.Service, err error) {
	defer classify(&err)
	mask := u.Mask()
	if len(mask) == 0 {
		return nil, fmt.Errorf("updating Cloud Run service %s: empty update", u.Ref)
	}
	svc := &runpb.Service{}
	if src, ok := u.Source.(*runpb.Service); ok && src != nil {
		svc = proto.Clone(src).(*runpb.Service)
	}
	svc.Name, svc.Etag = u.Ref.String(), u.Etag
	if u.Ingress != "" {
		v, ok := runpb.IngressTraffic_value[u.Ingress]
		if !ok {
			return nil, fmt.Errorf("updating Cloud Run service %s: unknown ingress %q", u.Ref, u.Ingress)
		}
		svc.Ingress = runpb.IngressTraffic(v)
	}
	if u.RequireInvokerIAM {
		svc.InvokerIamDisabled = false
	}
	if u.EnableIAP {
		svc.IapEnabled = true
	}
	if u.Annotations != nil {
		svc.Annotations = u.Annotations
	}
	op, err := paced(ctx, a.pace, writeCall, func() (*run.UpdateServiceOperation, error) {
		return a.c.UpdateService(ctx, &runpb.UpdateServiceRequest{
			Service:      svc,
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: mask},
			ValidateOnly: u.ValidateOnly,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("updating Cloud Run service %s (mask %v): %w", u.Ref, mask, err)
	}
	if u.ValidateOnly && !op.Done() {
		// A validate-only operation is not stored and cannot be polled; its
		// metadata is the would-be service.
		md, err := op.Metadata()
		if err != nil {
			return nil, fmt.Errorf("validating update of Cloud Run service %s: %w", u.Ref, err)
		}
		return fromRunService(md)
	}
	out, err := a.waitOp(ctx, op)
	if err != nil {
		return nil, fmt.Errorf("waiting for operation %s updating Cloud Run service %s: %w", op.Name(), u.Ref, err)
	}
	return fromRunService(out)
}

// waitOp polls op (GetOperation, a read) until it is done or the operation
// timeout passes: at once, then after 1 s, doubling up to 1 min — the
// schedule of the client library's op.Wait, but with every poll paced.
func (a *RunAdapter) waitOp(ctx context.Context, op *run.UpdateServiceOperation) (*runpb.Service, error) {
	wctx, cancel := context.WithTimeout(ctx, a.opTimeout)
	defer cancel()
	bo := gax.Backoff{Initial: time.Second, Max: time.Minute}
	for {
		out, err := paced(wctx, a.pace, readCall, func() (*runpb.Service, error) { return op.Poll(wctx) })
		if err != nil || op.Done() {
			return out, err
		}
		if err := gax.Sleep(wctx, bo.Pause()); err != nil {
			return nil, err
		}
	}
}

// GetIAMPolicy reads the service's IAM policy, asking for version 3 so
// conditional bindings come back intact. Needs run.services.getIamPolicy.
func (a *RunAdapter) GetIAMPolicy(ctx context.Context, ref iapsetup.ServiceRef) (_ *iapsetup.Policy, err error) {
	defer classify(&err)
	p, err := paced(ctx, a.pace, readCall, func() (*iampb.Policy, error) {
		return a.c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{
			Resource: ref.String(),
			Options:  &iampb.GetPolicyOptions{RequestedPolicyVersion: 3},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("getting IAM policy of Cloud Run service %s: %w", ref, err)
	}
	return fromIAMPolicy(p), nil
}

// SetIAMPolicy replaces the service's IAM policy; p.Etag is the
// precondition (a concurrent change → ABORTED). Needs
// run.services.setIamPolicy.
func (a *RunAdapter) SetIAMPolicy(ctx context.Context, ref iapsetup.ServiceRef, p *iapsetup.Policy) (_ *iapsetup.Policy, err error) {
	defer classify(&err)
	out, err := paced(ctx, a.pace, writeCall, func() (*iampb.Policy, error) {
		return a.c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: ref.String(), Policy: toIAMPolicy(p)})
	})
	if err != nil {
		return nil, fmt.Errorf("setting IAM policy of Cloud Run service %s: %w", ref, err)
	}
	return fromIAMPolicy(out), nil
}

func fromRunService(s *runpb.Service) (*iapsetup.Service, error) {
	ref, err := parseServiceName(s.GetName())
	if err != nil {
		return nil, fmt.Errorf("reading Cloud Run service: %w", err)
	}
	return &iapsetup.Service{
		Ref:                ref,
		Labels:             s.GetLabels(),
		Annotations:        s.GetAnnotations(),
		Ingress:            s.GetIngress().String(),
		InvokerIAMDisabled: s.GetInvokerIamDisabled(),
		IAPEnabled:         s.GetIapEnabled(),
		Etag:               s.GetEtag(),
		Source:             s,
	}, nil
}

func fromIAMPolicy(p *iampb.Policy) *iapsetup.Policy {
	out := &iapsetup.Policy{Version: p.GetVersion(), Etag: p.GetEtag()}
	for _, b := range p.GetBindings() {
		nb := iapsetup.Binding{Role: b.GetRole(), Members: append([]string(nil), b.GetMembers()...)}
		if c := b.GetCondition(); c != nil {
			nb.Condition = &iapsetup.Condition{Title: c.GetTitle(), Description: c.GetDescription(), Expression: c.GetExpression(), Location: c.GetLocation()}
		}
		out.Bindings = append(out.Bindings, nb)
	}
	return out
}

func toIAMPolicy(p *iapsetup.Policy) *iampb.Policy {
	out := &iampb.Policy{Version: p.Version, Etag: p.Etag}
	for _, b := range p.Bindings {
		nb := &iampb.Binding{Role: b.Role, Members: append([]string(nil), b.Members...)}
		if c := b.Condition; c != nil {
			nb.Condition = &expr.Expr{Title: c.Title, Description: c.Description, Expression: c.Expression, Location: c.Location}
		}
		out.Bindings = append(out.Bindings, nb)
	}
	return out
}
