package cloudrun

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/iapguard/iapguard/emulator/core"
)

// RESTPrefix is where Cloud Run Admin API v2 is served over REST/JSON, as
// Google transcodes it (google/cloud/run/v2/service.proto http rules):
//
//	GET    /v2/{name=projects/*/locations/*/services/*}              GetService
//	GET    /v2/{parent=projects/*/locations/*}/services              ListServices
//	POST   /v2/{parent=projects/*/locations/*}/services?serviceId=   CreateService (body: Service)
//	PATCH  /v2/{service.name=projects/*/locations/*/services/*}      UpdateService (body: Service)
//	DELETE /v2/{name=projects/*/locations/*/services/*}              DeleteService
//	GET    /v2/{resource=...services/*}:getIamPolicy                 GetIamPolicy
//	POST   /v2/{resource=...services/*}:setIamPolicy                 SetIamPolicy
//	POST   /v2/{resource=...services/*}:testIamPermissions           TestIamPermissions
//	GET    /v2/{name=projects/*/locations/*/operations/*}            Operations.GetOperation
//	POST   /v2/{name=projects/*/locations/*/operations/*}:wait       Operations.WaitOperation
//	GET    /v2/{name=projects/*/locations/*}/operations              Operations.ListOperations
//
// The official client's REST transport (run.NewServicesRESTClient) works
// against it with option.WithEndpoint("http://ADDR") and no credentials.
// Each call is counted, faulted and audited under the same method key as
// its gRPC twin. Update masks given in JSON (lowerCamelCase) are converted
// to proto names, as Google's front end does. Query parameters bind as
// Google's transcoding binds them (query.go): a value that does not parse
// as its field's type, or a parameter that names no field of the request,
// is 400 INVALID_ARGUMENT, never read as false, 0 or nothing.
const RESTPrefix = "/v2/"

// ServeREST serves Cloud Run v2 over REST/JSON.
func (s *Server) ServeREST(w http.ResponseWriter, r *http.Request) {
	r = core.WithHTTPCaller(r)
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	name, verb, _ := strings.Cut(path, ":")
	q := r.URL.Query()
	// The Go REST clients ask for enums as numbers ($alt=json;enum-encoding=int).
	out := protojson.MarshalOptions{UseEnumNumbers: strings.Contains(q.Get("$alt"), "enum-encoding=int")}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		core.WriteOnePlatformError(w, core.Errorf(codes.InvalidArgument, "reading the request body: %v", err))
		return
	}
	segs := strings.Split(name, "/")
	kind := ""
	if len(segs) >= 5 && segs[0] == "projects" && segs[2] == "locations" {
		kind = segs[4]
	}
	var (
		method string
		call   func(ctx context.Context) (proto.Message, error)
	)
	ops := &operationsServer{s: s}
	switch {
	case kind == "services" && len(segs) == 6 && verb == "" && r.Method == http.MethodGet:
		method = "google.cloud.run.v2.Services.GetService"
		call = func(ctx context.Context) (proto.Message, error) {
			if _, err := core.BindQuery(q); err != nil {
				return nil, err
			}
			return s.GetService(ctx, &runpb.GetServiceRequest{Name: name})
		}
	case kind == "services" && len(segs) == 5 && verb == "" && r.Method == http.MethodGet:
		method = "google.cloud.run.v2.Services.ListServices"
		call = func(ctx context.Context) (proto.Message, error) {
			rq, err := core.BindQuery(q, "page_size", "page_token", "show_deleted")
			if err != nil {
				return nil, err
			}
			size, err := rq.Int32("page_size")
			if err != nil {
				return nil, err
			}
			deleted, err := rq.Bool("show_deleted")
			if err != nil {
				return nil, err
			}
			return s.ListServices(ctx, &runpb.ListServicesRequest{Parent: strings.Join(segs[:4], "/"),
				PageSize: size, PageToken: rq.Str("page_token"), ShowDeleted: deleted})
		}
	case kind == "services" && len(segs) == 5 && verb == "" && r.Method == http.MethodPost:
		method = "google.cloud.run.v2.Services.CreateService"
		call = func(ctx context.Context) (proto.Message, error) {
			rq, err := core.BindQuery(q, "service_id", "validate_only")
			if err != nil {
				return nil, err
			}
			validate, err := rq.Bool("validate_only")
			if err != nil {
				return nil, err
			}
			svc := &runpb.Service{}
			if err := unmarshal(body, svc); err != nil {
				return nil, err
			}
			return s.CreateService(ctx, &runpb.CreateServiceRequest{Parent: strings.Join(segs[:4], "/"),
				Service: svc, ServiceId: rq.Str("service_id"), ValidateOnly: validate})
		}
	case kind == "services" && len(segs) == 6 && verb == "" && r.Method == http.MethodPatch:
		method = "google.cloud.run.v2.Services.UpdateService"
		call = func(ctx context.Context) (proto.Message, error) {
			rq, err := core.BindQuery(q, "update_mask", "validate_only", "allow_missing", "force_new_revision")
			if err != nil {
				return nil, err
			}
			req := &runpb.UpdateServiceRequest{}
			for _, f := range []struct {
				name string
				dst  *bool
			}{{"validate_only", &req.ValidateOnly}, {"allow_missing", &req.AllowMissing}, {"force_new_revision", &req.ForceNewRevision}} {
				if *f.dst, err = rq.Bool(f.name); err != nil {
					return nil, err
				}
			}
			svc := &runpb.Service{}
			if err := unmarshal(body, svc); err != nil {
				return nil, err
			}
			svc.Name = name
			req.Service = svc
			if m := rq.Str("update_mask"); m != "" {
				fm := &fieldmaskpb.FieldMask{}
				// FieldMask's JSON form: comma-separated lowerCamelCase
				// paths, converted to proto names (field_mask.proto).
				if err := protojson.Unmarshal([]byte(strconv.Quote(m)), fm); err != nil {
					return nil, core.Errorf(codes.InvalidArgument, "Invalid value at 'update_mask' (type.googleapis.com/google.protobuf.FieldMask), %q", m)
				}
				req.UpdateMask = fm
			}
			return s.UpdateService(ctx, req)
		}
	case kind == "services" && len(segs) == 6 && verb == "" && r.Method == http.MethodDelete:
		method = "google.cloud.run.v2.Services.DeleteService"
		call = func(ctx context.Context) (proto.Message, error) {
			rq, err := core.BindQuery(q, "etag", "validate_only")
			if err != nil {
				return nil, err
			}
			validate, err := rq.Bool("validate_only")
			if err != nil {
				return nil, err
			}
			return s.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: name, Etag: rq.Str("etag"),
				ValidateOnly: validate})
		}
	case kind == "services" && len(segs) == 6 && verb == "getIamPolicy" && r.Method == http.MethodGet:
		method = "google.cloud.run.v2.Services.GetIamPolicy"
		call = func(ctx context.Context) (proto.Message, error) {
			rq, err := core.BindQuery(q, "options.requested_policy_version")
			if err != nil {
				return nil, err
			}
			v, err := rq.Int32("options.requested_policy_version")
			if err != nil {
				return nil, err
			}
			return s.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name,
				Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: v}})
		}
	case kind == "services" && len(segs) == 6 && verb == "setIamPolicy" && r.Method == http.MethodPost:
		method = "google.cloud.run.v2.Services.SetIamPolicy"
		call = func(ctx context.Context) (proto.Message, error) {
			if _, err := core.BindQuery(q); err != nil {
				return nil, err
			}
			req := &iampb.SetIamPolicyRequest{}
			if err := unmarshal(body, req); err != nil {
				return nil, err
			}
			req.Resource = name
			return s.SetIamPolicy(ctx, req)
		}
	case kind == "services" && len(segs) == 6 && verb == "testIamPermissions" && r.Method == http.MethodPost:
		method = "google.cloud.run.v2.Services.TestIamPermissions"
		call = func(ctx context.Context) (proto.Message, error) {
			if _, err := core.BindQuery(q); err != nil {
				return nil, err
			}
			req := &iampb.TestIamPermissionsRequest{}
			if err := unmarshal(body, req); err != nil {
				return nil, err
			}
			req.Resource = name
			return s.TestIamPermissions(ctx, req)
		}
	case kind == "operations" && len(segs) == 6 && verb == "" && r.Method == http.MethodGet:
		method = "google.longrunning.Operations.GetOperation"
		call = func(ctx context.Context) (proto.Message, error) {
			if _, err := core.BindQuery(q); err != nil {
				return nil, err
			}
			return ops.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: name})
		}
	case kind == "operations" && len(segs) == 6 && verb == "wait" && r.Method == http.MethodPost:
		method = "google.longrunning.Operations.WaitOperation"
		call = func(ctx context.Context) (proto.Message, error) {
			if _, err := core.BindQuery(q); err != nil {
				return nil, err
			}
			req := &longrunningpb.WaitOperationRequest{}
			if err := unmarshal(body, req); err != nil {
				return nil, err
			}
			req.Name = name
			return ops.WaitOperation(ctx, req)
		}
	case kind == "operations" && len(segs) == 5 && verb == "" && r.Method == http.MethodGet:
		method = "google.longrunning.Operations.ListOperations"
		call = func(ctx context.Context) (proto.Message, error) {
			rq, err := core.BindQuery(q, "filter", "page_size", "page_token", "return_partial_success")
			if err != nil {
				return nil, err
			}
			size, err := rq.Int32("page_size")
			if err != nil {
				return nil, err
			}
			partial, err := rq.Bool("return_partial_success")
			if err != nil {
				return nil, err
			}
			return ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: strings.Join(segs[:4], "/"),
				Filter: rq.Str("filter"), PageSize: size, PageToken: rq.Str("page_token"), ReturnPartialSuccess: partial})
		}
	default:
		core.Errorf(codes.NotFound, "The requested URL %s was not found on this server.", r.URL.Path).WriteJSON(w)
		return
	}
	if err := s.c.Begin(r.Context(), method); err != nil {
		core.WriteOnePlatformError(w, err)
		return
	}
	resp, err := call(r.Context())
	if err != nil {
		var ce *core.Error
		if !errors.As(err, &ce) {
			st, _ := status.FromError(err)
			ce = core.Errorf(st.Code(), "%s", st.Message())
		}
		core.WriteOnePlatformError(w, ce)
		return
	}
	b, err := out.Marshal(resp)
	if err != nil {
		core.WriteOnePlatformError(w, core.Errorf(codes.Internal, "encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

// unmarshal decodes a JSON request body as Google does: unknown fields are
// refused ("Invalid JSON payload received. Unknown name ...").
func unmarshal(body []byte, m proto.Message) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		return core.Errorf(codes.InvalidArgument, "Invalid JSON payload received. %v", err)
	}
	return nil
}
