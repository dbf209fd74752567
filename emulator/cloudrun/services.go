package cloudrun

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iapguard/iapguard/emulator/core"
)

// Method keys (also the audit methodName).
const (
	methodCreate = "google.cloud.run.v2.Services.CreateService"
	methodUpdate = "google.cloud.run.v2.Services.UpdateService"
	methodDelete = "google.cloud.run.v2.Services.DeleteService"
	methodSetIAM = "google.cloud.run.v2.Services.SetIamPolicy"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// CreateService creates a service and returns its long-running operation.
// Permission: run.services.create.
func (s *Server) CreateService(ctx context.Context, req *runpb.CreateServiceRequest) (_ *longrunningpb.Operation, err error) {
	defer func() {
		s.auditRejected(ctx, methodCreate, "run.services.create", req.GetParent()+"/services/"+req.GetServiceId(), req, "google.cloud.run.v2.CreateServiceRequest", err)
	}()
	loc, err := s.parseLocation("parent", req.GetParent(), false)
	if err != nil {
		return nil, err
	}
	id := req.GetServiceId()
	if id == "" {
		id = "service-" + newUUID()[:8]
	}
	if err := checkServiceID("service_id", id); err != nil {
		return nil, err
	}
	if req.GetService() == nil {
		return nil, invalid("service: required field is not set")
	}
	in := proto.CloneOf(req.GetService())
	if err := validateService("service", in); err != nil {
		return nil, err
	}
	ref := serviceRef{locRef: loc, id: id}
	principal, now := s.c.PrincipalFrom(ctx), s.c.Now()

	s.mu.Lock()
	s.settleLocked()
	if s.services[ref.key()] != nil {
		s.mu.Unlock()
		return nil, core.Errorf(codes.AlreadyExists, "Resource '%s' already exists.", ref.name())
	}
	e, err := s.newEntryLocked(ref, in, principal, now)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if req.GetValidateOnly() {
		s.mu.Unlock()
		return validateOnlyOp(ref, e.svc, now)
	}
	s.services[e.key()] = e
	s.startRolloutLocked(e, now)
	op := s.newOperationLocked(ref.locRef, e.svc, nil, false, now)
	out, err := op.render(ref.form)
	resp := view(e.svc, ref.project, ref.form)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}

	s.audit(ctx, methodCreate, "run.services.create", ref, ref.id, req, "google.cloud.run.v2.CreateServiceRequest", resp, "google.cloud.run.v2.Service")
	return out, nil
}

// GetService returns a service. Permission: run.services.get.
func (s *Server) GetService(_ context.Context, req *runpb.GetServiceRequest) (*runpb.Service, error) {
	ref, err := s.parseServiceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	e := s.services[ref.key()]
	if e == nil {
		return nil, notFound(ref)
	}
	return view(e.svc, ref.project, ref.form), nil
}

// pageToken is the cursor after the last service of a page.
type pageToken struct {
	parent string // canonical parent
	create int64  // create_time in Unix nanoseconds
	seq    uint64
}

func (t pageToken) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%s|%d|%d", t.parent, t.create, t.seq)))
}

func decodePageToken(s string) (pageToken, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pageToken{}, false
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 3 {
		return pageToken{}, false
	}
	c, err1 := strconv.ParseInt(parts[1], 10, 64)
	q, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return pageToken{}, false
	}
	return pageToken{parent: parts[0], create: c, seq: q}, true
}

// after reports whether e sorts after the cursor (creation time descending,
// then newest first).
func (t pageToken) after(e *entry) bool {
	c := e.svc.GetCreateTime().AsTime().UnixNano()
	if c != t.create {
		return c < t.create
	}
	return e.seq < t.seq
}

// ListServices lists services, newest first. Permission: run.services.list.
//
// parent must name one region: the v2 ListServicesRequest.parent comment
// says "Location must be a valid Google Cloud region, and cannot be the "-"
// wildcard" [DOC runpb]. The emulator answers "-" with INVALID_ARGUMENT, as
// it does every other location that is not a region; the exact status and
// message Google sends are not recorded in our reference [INFER]. Callers
// that need every region enumerate them (Run v1 projects.locations.list,
// ServeLocations) or search Cloud Asset Inventory.
func (s *Server) ListServices(_ context.Context, req *runpb.ListServicesRequest) (*runpb.ListServicesResponse, error) {
	loc, err := s.parseLocation("parent", req.GetParent(), false)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalid("page_size: must not be negative, got %d", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	canonParent := "projects/" + loc.project.ID + "/locations/" + loc.region
	var cursor *pageToken
	if tok := req.GetPageToken(); tok != "" {
		t, ok := decodePageToken(tok)
		if !ok || t.parent != canonParent {
			return nil, invalid("page_token: %q is not a page token of this request", tok)
		}
		cursor = &t
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	var es []*entry
	for _, e := range s.services {
		if e.project.ID == loc.project.ID && e.region == loc.region {
			if cursor == nil || cursor.after(e) {
				es = append(es, e)
			}
		}
	}
	slices.SortFunc(es, func(a, b *entry) int {
		if c := b.svc.GetCreateTime().AsTime().Compare(a.svc.GetCreateTime().AsTime()); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	resp := &runpb.ListServicesResponse{}
	for i, e := range es {
		if i == size {
			last := es[i-1]
			resp.NextPageToken = pageToken{parent: canonParent, create: last.svc.GetCreateTime().AsTime().UnixNano(), seq: last.seq}.encode()
			break
		}
		resp.Services = append(resp.Services, view(e.svc, loc.project, loc.form))
	}
	return resp, nil
}

// UpdateService updates a service and returns its long-running operation.
// With update_mask only the masked paths are applied; without one the
// writable spec is replaced. Permission: run.services.update
// (run.services.create when allow_missing creates it).
func (s *Server) UpdateService(ctx context.Context, req *runpb.UpdateServiceRequest) (_ *longrunningpb.Operation, err error) {
	defer func() {
		s.auditRejected(ctx, methodUpdate, "run.services.update", req.GetService().GetName(), req, "google.cloud.run.v2.UpdateServiceRequest", err)
	}()
	if req.GetService() == nil {
		return nil, invalid("service: required field is not set")
	}
	ref, err := s.parseServiceName("service.name", req.GetService().GetName())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if err := checkMask(paths); err != nil {
		return nil, err
	}
	in := proto.CloneOf(req.GetService())
	principal, now := s.c.PrincipalFrom(ctx), s.c.Now()

	s.mu.Lock()
	s.settleLocked()
	e := s.services[ref.key()]
	if e == nil {
		if !req.GetAllowMissing() {
			s.mu.Unlock()
			return nil, notFound(ref)
		}
		if err := validateService("service", in); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		ne, err := s.newEntryLocked(ref, in, principal, now)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if req.GetValidateOnly() {
			s.mu.Unlock()
			return validateOnlyOp(ref, ne.svc, now)
		}
		s.services[ne.key()] = ne
		s.startRolloutLocked(ne, now)
		op := s.newOperationLocked(ref.locRef, ne.svc, nil, false, now)
		out, err := op.render(ref.form)
		resp := view(ne.svc, ref.project, ref.form)
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		s.audit(ctx, methodUpdate, "run.services.create", ref, ref.id, req, "google.cloud.run.v2.UpdateServiceRequest", resp, "google.cloud.run.v2.Service")
		return out, nil
	}

	if err := s.checkEtagLocked(methodUpdate, e, in.GetEtag()); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	next := proto.CloneOf(e.svc)
	if len(paths) > 0 {
		err = applyMask(next, in, paths)
	} else {
		replaceWritable(next, in)
	}
	if err == nil {
		err = validateService("service", next)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	applyDefaults(next, e.project)
	newRev := ""
	if req.GetForceNewRevision() || !proto.Equal(e.svc.GetTemplate(), next.GetTemplate()) {
		newRev = next.GetTemplate().GetRevision()
		if err := checkRevisionName("service.template.revision", e.id, newRev); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if newRev == "" {
			newRev = revisionName(e.id, e.revCount+1)
		} else if _, ok := e.revisions[newRev]; ok {
			s.mu.Unlock()
			return nil, core.Errorf(codes.AlreadyExists, "Revision named '%s' with different configuration already exists.", newRev)
		}
		next.LatestCreatedRevision = ref.canonical() + "/revisions/" + newRev
	}
	next.Generation++
	next.UpdateTime = timestamppb.New(now)
	next.LastModifier = principal
	next.Etag = newEtag()
	if req.GetValidateOnly() {
		s.mu.Unlock()
		return validateOnlyOp(ref, next, now)
	}
	prev := e.svc
	e.svc = next
	if newRev != "" {
		e.revisions[newRev] = proto.CloneOf(next.GetTemplate())
		e.revCount++
	}
	s.startRolloutLocked(e, now)
	op := s.newOperationLocked(ref.locRef, e.svc, prev, false, now)
	out, err := op.render(ref.form)
	resp := view(e.svc, ref.project, ref.form)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}

	s.audit(ctx, methodUpdate, "run.services.update", ref, ref.id, req, "google.cloud.run.v2.UpdateServiceRequest", resp, "google.cloud.run.v2.Service")
	return out, nil
}

// checkEtagLocked enforces the caller's etag precondition (empty: none). A
// forced race (core.Faults.ForceRaces) first changes the stored etag, as a
// concurrent writer would.
func (s *Server) checkEtagLocked(method string, e *entry, etag string) error {
	if etag == "" {
		return nil
	}
	if s.c.Faults.TakeRace(method) {
		e.svc.Etag = newEtag()
		e.svc.UpdateTime = timestamppb.New(s.c.Now())
	}
	if etag != e.svc.Etag {
		return core.Errorf(codes.Aborted, "etag %s does not match the current etag of service %q; re-read the service and retry", etag, e.svc.Name[strings.LastIndex(e.svc.Name, "/")+1:])
	}
	return nil
}

// DeleteService deletes a service with its revisions and IAM policy and
// returns its long-running operation. Permission: run.services.delete.
func (s *Server) DeleteService(ctx context.Context, req *runpb.DeleteServiceRequest) (_ *longrunningpb.Operation, err error) {
	defer func() {
		s.auditRejected(ctx, methodDelete, "run.services.delete", req.GetName(), req, "google.cloud.run.v2.DeleteServiceRequest", err)
	}()
	ref, err := s.parseServiceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	now := s.c.Now()
	s.mu.Lock()
	s.settleLocked()
	e := s.services[ref.key()]
	if e == nil {
		s.mu.Unlock()
		return nil, notFound(ref)
	}
	if err := s.checkEtagLocked(methodDelete, e, req.GetEtag()); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	// A delete is a change of its own: the generation grows and the
	// update time is the delete time (recorded traffic).
	gone := proto.CloneOf(e.svc)
	gone.Generation++
	gone.UpdateTime = timestamppb.New(now)
	gone.DeleteTime = timestamppb.New(now)
	gone.ExpireTime = timestamppb.New(now.Add(deletedRetention))
	if req.GetValidateOnly() {
		s.mu.Unlock()
		return validateOnlyOp(ref, gone, now)
	}
	delete(s.services, e.key())
	delete(s.pending, e.key())
	s.notifyLocked(e, true, now)
	op := s.newOperationLocked(ref.locRef, gone, e.svc, true, now)
	out, err := op.render(ref.form)
	resp := view(gone, ref.project, ref.form)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}

	s.audit(ctx, methodDelete, "run.services.delete", ref, ref.id, req, "google.cloud.run.v2.DeleteServiceRequest", resp, "google.cloud.run.v2.Service")
	return out, nil
}

// audit writes the Admin Activity entry of an accepted mutation. serviceLabel
// fills resource.labels.service_name (empty for SetIamPolicy, as observed).
func (s *Server) audit(ctx context.Context, method, permission string, ref serviceRef, serviceLabel string,
	req proto.Message, reqType string, resp proto.Message, respType string) {
	s.c.Audit.Record(core.Record{
		Ctx:          ctx,
		Project:      ref.project,
		ServiceName:  "run.googleapis.com",
		MethodName:   method,
		ResourceName: ref.canonical(),
		Location:     ref.region,
		Permission:   permission,
		Request:      core.ProtoMap(req, "type.googleapis.com/"+reqType),
		Response:     core.ProtoMap(resp, "type.googleapis.com/"+respType),
		ResourceType: "cloud_run_revision",
		ResourceLabels: map[string]string{
			"service_name":       serviceLabel,
			"location":           ref.region,
			"project_id":         ref.project.ID,
			"configuration_name": "",
			"revision_name":      "",
		},
	})
}

// auditRejected writes the Admin Activity entry of a write Cloud Run
// refused for what it asked (core.AuditableRejection: invalid, conflicting,
// a lost etag race, a missing service): severity ERROR and the status, with
// the request and no response. Nothing is written for a name that does not
// resolve to an emulated project (there is no project to log in).
func (s *Server) auditRejected(ctx context.Context, method, permission, name string, req proto.Message, reqType string, err error) {
	ce, ok := core.AuditableRejection(err)
	if !ok {
		return
	}
	if v, isV := req.(interface{ GetValidateOnly() bool }); isV && v.GetValidateOnly() {
		return // validate_only changes nothing and is not logged
	}
	parts := strings.Split(name, "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "services" {
		return
	}
	p, found := s.c.Projects.Lookup(parts[1])
	if !found {
		return
	}
	region, id := parts[3], parts[5]
	s.c.Audit.Record(core.Record{
		Ctx: ctx, Project: p, ServiceName: "run.googleapis.com", MethodName: method,
		ResourceName: "projects/" + p.ID + "/locations/" + region + "/services/" + id,
		Location:     region, Permission: permission,
		Request:      core.ProtoMap(req, "type.googleapis.com/"+reqType),
		ResourceType: "cloud_run_revision",
		ResourceLabels: map[string]string{
			"service_name": id, "location": region, "project_id": p.ID,
			"configuration_name": "", "revision_name": "",
		},
		Err: ce,
	})
}

// validateOnlyOp is the answer to a validate_only write: a finished
// operation carrying the would-be service, not stored anywhere.
func validateOnlyOp(ref serviceRef, svc *runpb.Service, now time.Time) (*longrunningpb.Operation, error) {
	would := view(svc, ref.project, ref.form)
	if would.DeleteTime == nil {
		settle(would, now)
	}
	op := &operation{
		project: ref.project, region: ref.region, id: newUUID(),
		pending: would, response: would, done: true,
	}
	return op.render(ref.form)
}
