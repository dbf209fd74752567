package gcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	runv2 "google.golang.org/api/run/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// RunAdapter implements iapsetup.CloudRun over the Cloud Run Admin API v2
// through its discovery-based REST client (google.golang.org/api/run/v2):
// the same methods, permissions and resources as the gRPC client
// (cloud.google.com/go/run/apiv2), without the generated protobuf packages
// whose registration every process start paid for (docs/performance.md).
type RunAdapter struct {
	c         *runv2.Service
	opTimeout time.Duration
	pace      *pacer
}

var _ iapsetup.CloudRun = (*RunAdapter)(nil)

// The gRPC clients' default call settings for the methods used here
// (cloud.google.com/go/run/apiv2 defaultServicesCallOptions, and
// cloud.google.com/go/longrunning/autogen defaultOperationsCallOptions for
// the operation polls), which the discovery-based client does not apply by
// itself: service reads and operation polls retried on UNAVAILABLE (a 503,
// or no answer at all: onUnavailable), reads with 1 s backoff growing 1.3×
// to 10 s, polls with 500 ms doubling to 10 s, both within 10 s; the update
// bounded by 15 s; IAM calls as they are. A timeout applies only when ctx
// has no deadline (gax.Invoke). Without the poll's retry, an update that
// was made but whose first poll met a 503 failed the reconcile, which then
// wrote again on redelivery (found by TestSoak's redundant-writes count).
var (
	runReadSettings = []gax.CallOption{gax.WithTimeout(10 * time.Second), gax.WithRetry(func() gax.Retryer {
		return &onUnavailable{gax.Backoff{Initial: time.Second, Max: 10 * time.Second, Multiplier: 1.3}}
	})}
	runPollSettings = []gax.CallOption{gax.WithTimeout(10 * time.Second), gax.WithRetry(func() gax.Retryer {
		return &onUnavailable{gax.Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}}
	})}
	runUpdateSettings = []gax.CallOption{gax.WithTimeout(15 * time.Second)}
)

// onUnavailable retries what the gRPC client saw as UNAVAILABLE: an HTTP
// 503, or a call that got no answer at all (gcperr.IsTransportFailure).
type onUnavailable struct{ bo gax.Backoff }

func (r *onUnavailable) Retry(err error) (time.Duration, bool) {
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusServiceUnavailable || gcperr.IsTransportFailure(err) {
		return r.bo.Pause(), true
	}
	return 0, false
}

// invoke runs one REST call with call settings (gax.Invoke).
func invoke[T any](ctx context.Context, settings []gax.CallOption, f func(context.Context) (T, error)) (T, error) {
	var v T
	err := gax.Invoke(ctx, func(ctx context.Context, _ gax.CallSettings) error {
		var err error
		v, err = f(ctx)
		return err
	}, settings...)
	return v, err
}

// GetService reads a service. Needs run.services.get.
func (a *RunAdapter) GetService(ctx context.Context, ref iapsetup.ServiceRef) (_ *iapsetup.Service, err error) {
	defer classify(&err)
	s, err := paced(ctx, a.pace, readCall, func() (*runv2.GoogleCloudRunV2Service, error) {
		return invoke(ctx, runReadSettings, func(ctx context.Context) (*runv2.GoogleCloudRunV2Service, error) {
			return a.c.Projects.Locations.Services.Get(ref.String()).Context(ctx).Do()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("getting Cloud Run service %s: %w", ref, err)
	}
	return fromRunService(s)
}

// ListServices lists the services of project in region, which must be a
// region: Cloud Run Admin API v2 refuses the "-" wildcard
// (ListServicesRequest.parent: "cannot be the "-" wildcard"), and so
// does this method, without a call; Discovery finds services across
// regions. Each page waits for the read limiter and is paced like any
// other read (a throttled page is retried as a throttled call is). Needs
// run.services.list.
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
	var out []*iapsetup.Service
	token := ""
	for {
		page, err := paced(ctx, a.pace, readCall, func() (*runv2.GoogleCloudRunV2ListServicesResponse, error) {
			*calls++
			return invoke(ctx, runReadSettings, func(ctx context.Context) (*runv2.GoogleCloudRunV2ListServicesResponse, error) {
				return a.c.Projects.Locations.Services.List(parent).PageSize(500).PageToken(token).Context(ctx).Do()
			})
		})
		if err != nil {
			return nil, fmt.Errorf("listing Cloud Run services in %s: %w", parent, err)
		}
		for _, s := range page.Services {
			svc, err := fromRunService(s)
			if err != nil {
				return nil, err
			}
			out = append(out, svc)
		}
		if token = page.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// updateMaskJSON is the JSON form of the field mask paths (proto names):
// comma-separated lowerCamelCase, as the REST API's updateMask parameter
// takes it (google/protobuf/field_mask.proto).
func updateMaskJSON(paths []string) string {
	out := make([]string, len(paths))
	for i, p := range paths {
		parts := strings.Split(p, "_")
		for j := 1; j < len(parts); j++ {
			if parts[j] != "" {
				parts[j] = strings.ToUpper(parts[j][:1]) + parts[j][1:]
			}
		}
		out[i] = strings.Join(parts, "")
	}
	return strings.Join(out, ",")
}

// UpdateService sends the service as read (u.Source, when it is a
// *runv2.GoogleCloudRunV2Service) with u's fields applied, u.Etag as
// precondition and an update mask naming exactly u's fields, then waits
// for the operation under the adapter's operation timeout. With
// u.ValidateOnly the server validates and returns the would-be service
// without storing it. Needs run.services.update.
func (a *RunAdapter) UpdateService(ctx context.Context, u *iapsetup.ServiceUpdate) (_ *iapsetup.Service, err error) {
	defer classify(&err)
	mask := u.Mask()
	if len(mask) == 0 {
		return nil, fmt.Errorf("updating Cloud Run service %s: empty update", u.Ref)
	}
	svc := &runv2.GoogleCloudRunV2Service{}
	if src, ok := u.Source.(*runv2.GoogleCloudRunV2Service); ok && src != nil {
		// Only top-level fields are assigned below: a shallow copy keeps
		// the source as read.
		cp := *src
		svc = &cp
	}
	svc.Name, svc.Etag = u.Ref.String(), u.Etag
	svc.ForceSendFields = nil
	if u.Ingress != "" {
		if !knownIngress(u.Ingress) {
			return nil, fmt.Errorf("updating Cloud Run service %s: unknown ingress %q", u.Ref, u.Ingress)
		}
		svc.Ingress = u.Ingress
	}
	if u.RequireInvokerIAM {
		// false is JSON's zero value: sent explicitly all the same.
		svc.InvokerIamDisabled = false
		svc.ForceSendFields = append(svc.ForceSendFields, "InvokerIamDisabled")
	}
	if u.EnableIAP {
		svc.IapEnabled = true
	}
	if u.Annotations != nil {
		svc.Annotations = u.Annotations
	}
	op, err := paced(ctx, a.pace, writeCall, func() (*runv2.GoogleLongrunningOperation, error) {
		return invoke(ctx, runUpdateSettings, func(ctx context.Context) (*runv2.GoogleLongrunningOperation, error) {
			return a.c.Projects.Locations.Services.Patch(svc.Name, svc).
				UpdateMask(updateMaskJSON(mask)).ValidateOnly(u.ValidateOnly).Context(ctx).Do()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("updating Cloud Run service %s (mask %v): %w", u.Ref, mask, err)
	}
	if u.ValidateOnly && !op.Done {
		// A validate-only operation is not stored and cannot be polled; its
		// metadata is the would-be service.
		return serviceFrom(op.Metadata, "validating update of Cloud Run service "+u.Ref.String())
	}
	if op, err = a.waitOp(ctx, op); err != nil {
		return nil, fmt.Errorf("waiting for operation %s updating Cloud Run service %s: %w", op.Name, u.Ref, err)
	}
	if op.Error != nil {
		// The failure as the gRPC client's op.Wait would return it, so
		// that Classify reads the operation's code.
		return nil, fmt.Errorf("updating Cloud Run service %s: operation %s failed: %w", u.Ref, op.Name,
			status.Error(codes.Code(op.Error.Code), op.Error.Message))
	}
	return serviceFrom(op.Response, "updating Cloud Run service "+u.Ref.String())
}

// serviceFrom decodes the service an operation carries (its metadata or
// response: a google.cloud.run.v2.Service with an "@type" member).
func serviceFrom(raw []byte, doing string) (*iapsetup.Service, error) {
	var s runv2.GoogleCloudRunV2Service
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: decoding the operation's service: %w", doing, err)
	}
	return fromRunService(&s)
}

// knownIngress reports whether v names a Cloud Run v2 IngressTraffic value
// other than UNSPECIFIED.
func knownIngress(v string) bool {
	switch v {
	case "INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_NONE":
		return true
	}
	return false
}

// waitOp polls op (operations.get, a read) until it is done or the
// operation timeout passes: at once, then after 1 s, doubling up to 1 min —
// the schedule of the gRPC client library's op.Wait, with every poll
// paced. It returns the last operation read (op itself on error).
func (a *RunAdapter) waitOp(ctx context.Context, op *runv2.GoogleLongrunningOperation) (*runv2.GoogleLongrunningOperation, error) {
	wctx, cancel := context.WithTimeout(ctx, a.opTimeout)
	defer cancel()
	bo := gax.Backoff{Initial: time.Second, Max: time.Minute}
	for !op.Done {
		next, err := paced(wctx, a.pace, readCall, func() (*runv2.GoogleLongrunningOperation, error) {
			return invoke(wctx, runPollSettings, func(ctx context.Context) (*runv2.GoogleLongrunningOperation, error) {
				return a.c.Projects.Locations.Operations.Get(op.Name).Context(ctx).Do()
			})
		})
		if err != nil {
			return op, err
		}
		if op = next; op.Done {
			break
		}
		if err := gax.Sleep(wctx, bo.Pause()); err != nil {
			return op, err
		}
	}
	return op, nil
}

// GetIAMPolicy reads the service's IAM policy, asking for version 3 so
// conditional bindings come back intact. Needs run.services.getIamPolicy.
func (a *RunAdapter) GetIAMPolicy(ctx context.Context, ref iapsetup.ServiceRef) (_ *iapsetup.Policy, err error) {
	defer classify(&err)
	p, err := paced(ctx, a.pace, readCall, func() (*runv2.GoogleIamV1Policy, error) {
		return a.c.Projects.Locations.Services.GetIamPolicy(ref.String()).OptionsRequestedPolicyVersion(3).Context(ctx).Do()
	})
	if err != nil {
		return nil, fmt.Errorf("getting IAM policy of Cloud Run service %s: %w", ref, err)
	}
	return fromIAMPolicy(ref, p)
}

// SetIAMPolicy replaces the service's IAM policy; p.Etag is the
// precondition (a concurrent change → ABORTED). Needs
// run.services.setIamPolicy.
func (a *RunAdapter) SetIAMPolicy(ctx context.Context, ref iapsetup.ServiceRef, p *iapsetup.Policy) (_ *iapsetup.Policy, err error) {
	defer classify(&err)
	out, err := paced(ctx, a.pace, writeCall, func() (*runv2.GoogleIamV1Policy, error) {
		return a.c.Projects.Locations.Services.SetIamPolicy(ref.String(),
			&runv2.GoogleIamV1SetIamPolicyRequest{Policy: toIAMPolicy(p)}).Context(ctx).Do()
	})
	if err != nil {
		return nil, fmt.Errorf("setting IAM policy of Cloud Run service %s: %w", ref, err)
	}
	return fromIAMPolicy(ref, out)
}

func fromRunService(s *runv2.GoogleCloudRunV2Service) (*iapsetup.Service, error) {
	ref, err := parseServiceName(s.Name)
	if err != nil {
		return nil, fmt.Errorf("reading Cloud Run service: %w", err)
	}
	ingress := s.Ingress
	if ingress == "" {
		// JSON omits the enum's zero value.
		ingress = "INGRESS_TRAFFIC_UNSPECIFIED"
	}
	return &iapsetup.Service{
		Ref:                ref,
		Labels:             s.Labels,
		Annotations:        s.Annotations,
		Ingress:            ingress,
		InvokerIAMDisabled: s.InvokerIamDisabled,
		IAPEnabled:         s.IapEnabled,
		Etag:               s.Etag,
		Source:             s,
	}, nil
}

// fromIAMPolicy converts the REST policy; its etag is base64 of the
// opaque bytes IAM uses (as in fromIAPPolicy).
func fromIAMPolicy(ref iapsetup.ServiceRef, p *runv2.GoogleIamV1Policy) (*iapsetup.Policy, error) {
	etag, err := base64.StdEncoding.DecodeString(p.Etag)
	if err != nil {
		return nil, fmt.Errorf("reading IAM policy of Cloud Run service %s: etag %q is not base64: %w", ref, p.Etag, err)
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

func toIAMPolicy(p *iapsetup.Policy) *runv2.GoogleIamV1Policy {
	out := &runv2.GoogleIamV1Policy{Version: int64(p.Version)}
	if len(p.Etag) > 0 {
		out.Etag = base64.StdEncoding.EncodeToString(p.Etag)
	}
	for _, b := range p.Bindings {
		nb := &runv2.GoogleIamV1Binding{Role: b.Role, Members: append([]string(nil), b.Members...)}
		if c := b.Condition; c != nil {
			nb.Condition = &runv2.GoogleTypeExpr{Title: c.Title, Description: c.Description, Expression: c.Expression, Location: c.Location}
		}
		out.Bindings = append(out.Bindings, nb)
	}
	if len(out.Bindings) == 0 {
		// An empty policy still replaces the old one (all bindings removed).
		out.ForceSendFields = []string{"Bindings"}
	}
	return out
}
