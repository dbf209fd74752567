package cloudrun

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/iapguard/iapguard/emulator/core"
)

// operation is one Cloud Run long-running operation.
type operation struct {
	project core.Project
	region  string
	id      string
	created time.Time
	// pending is the metadata while the operation runs: the service as
	// written with the status of before the write (pendingView); response
	// is the service once the rollout is done (for a delete: the deleted
	// service), and the metadata too once done (names in project-ID form).
	pending  *runpb.Service
	response *runpb.Service
	done     bool
	doneAt   time.Time // delay mode
}

func (op *operation) canonical() string {
	return "projects/" + op.project.ID + "/locations/" + op.region + "/operations/" + op.id
}

// render returns the wire form with names in the caller's project form:
// metadata = Any(Service) always (the pending service while running, the
// finished one once done, as Google answers), response = Any(Service) once
// done.
func (op *operation) render(form string) (*longrunningpb.Operation, error) {
	md := op.pending
	if op.done {
		md = op.response
	}
	mda, err := anypb.New(view(md, op.project, form))
	if err != nil {
		return nil, core.Errorf(codes.Internal, "encoding operation metadata: %v", err)
	}
	out := &longrunningpb.Operation{
		Name:     reform(op.canonical(), op.project, form),
		Metadata: mda,
		Done:     op.done,
	}
	if op.done {
		resp, err := anypb.New(view(op.response, op.project, form))
		if err != nil {
			return nil, core.Errorf(codes.Internal, "encoding operation response: %v", err)
		}
		out.Result = &longrunningpb.Operation_Response{Response: resp}
	}
	return out, nil
}

// newOperationLocked records the operation of an accepted write of svc
// (prev: the service before it, nil for a create) and completes it
// according to the LRO mode.
func (s *Server) newOperationLocked(loc locRef, svc, prev *runpb.Service, deleted bool, now time.Time) *operation {
	op := &operation{
		project:  loc.project,
		region:   loc.region,
		id:       newUUID(),
		created:  now,
		pending:  pendingView(svc, prev),
		response: proto.CloneOf(svc),
	}
	switch s.mode {
	case LROImmediate:
		op.done = true
	case LRODelay:
		op.doneAt = now.Add(s.delay)
	}
	name := op.canonical()
	if s.mode == LRODelay {
		s.opsDue[name] = op
	}
	t := now
	if s.mode == LRODelay {
		t = op.doneAt
	}
	settle(op.response, t)
	if deleted {
		op.response.Reconciling = false
	}
	s.ops[name] = op
	s.opOrder = append(s.opOrder, name)
	for len(s.opOrder) > maxOperations {
		delete(s.ops, s.opOrder[0])
		delete(s.opsDue, s.opOrder[0])
		s.opOrder = s.opOrder[1:]
	}
	return op
}

// pendingView is the service a write's operation carries while it runs,
// as recorded from Google: the written spec (new generation, update time,
// etag) with the status of before the write — observed generation,
// conditions, revisions, traffic statuses and URLs of prev (none for a
// create) — reconciling, and a terminal condition whose state is
// CONDITION_PENDING (for a create, nothing but that state, and no
// ingress).
func pendingView(svc, prev *runpb.Service) *runpb.Service {
	p := proto.CloneOf(svc)
	p.ObservedGeneration, p.Conditions, p.TrafficStatuses = 0, nil, nil
	p.LatestReadyRevision, p.LatestCreatedRevision, p.Uri, p.Urls = "", "", "", nil
	p.TerminalCondition = &runpb.Condition{State: runpb.Condition_CONDITION_PENDING}
	if prev == nil {
		// Google's first answer to a create carries no ingress, although
		// the request set one and every later read shows it (recorded).
		p.Ingress = runpb.IngressTraffic_INGRESS_TRAFFIC_UNSPECIFIED
	} else {
		p.ObservedGeneration = prev.ObservedGeneration
		for _, c := range prev.Conditions {
			p.Conditions = append(p.Conditions, proto.CloneOf(c))
		}
		for _, t := range prev.TrafficStatuses {
			p.TrafficStatuses = append(p.TrafficStatuses, proto.CloneOf(t))
		}
		p.LatestReadyRevision, p.LatestCreatedRevision = prev.LatestReadyRevision, prev.LatestCreatedRevision
		p.Uri, p.Urls = prev.Uri, slices.Clone(prev.Urls)
		if tc := prev.TerminalCondition; tc != nil {
			p.TerminalCondition = &runpb.Condition{Type: tc.Type, State: runpb.Condition_CONDITION_PENDING,
				LastTransitionTime: tc.LastTransitionTime}
		}
	}
	p.Reconciling = true
	return p
}

// pollLocked returns the operation, completing it first in on-first-poll mode.
func (s *Server) pollLocked(ref opRef) (*operation, error) {
	s.settleLocked()
	op := s.ops[ref.canonical()]
	if op == nil {
		return nil, core.Errorf(codes.NotFound, "operation %q not found", ref.locRef.name()+"/operations/"+ref.id)
	}
	if s.mode == LROOnFirstPoll {
		op.done = true
	}
	return op, nil
}

// operationsServer serves google.longrunning.Operations for Cloud Run.
type operationsServer struct {
	longrunningpb.UnimplementedOperationsServer
	s *Server
}

// GetOperation returns an operation; in on-first-poll mode this completes it.
func (o *operationsServer) GetOperation(_ context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	s := o.s
	ref, err := s.parseOperationName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	op, err := s.pollLocked(ref)
	if err != nil {
		return nil, err
	}
	return op.render(ref.form)
}

// waitStep bounds one sleep of WaitOperation, so an emulator clock moved by
// core.SetNow is noticed.
const waitStep = 20 * time.Millisecond

// WaitOperation waits until the operation is done, timeout (if set) passes or
// the call's context ends, and returns its latest state.
func (o *operationsServer) WaitOperation(ctx context.Context, req *longrunningpb.WaitOperationRequest) (*longrunningpb.Operation, error) {
	s := o.s
	ref, err := s.parseOperationName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetTimeout() != nil {
		if err := req.GetTimeout().CheckValid(); err != nil || req.GetTimeout().AsDuration() < 0 {
			return nil, invalid("timeout: must be a non-negative duration")
		}
	}
	var deadline <-chan time.Time
	if t := req.GetTimeout(); t != nil {
		timer := time.NewTimer(t.AsDuration())
		defer timer.Stop()
		deadline = timer.C
	}
	for {
		s.mu.Lock()
		op, err := s.pollLocked(ref)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		out, err := op.render(ref.form)
		done, left := op.done, op.doneAt.Sub(s.c.Now())
		s.mu.Unlock()
		if done || err != nil {
			return out, err
		}
		wait := min(max(left, time.Millisecond), waitStep)
		select {
		case <-ctx.Done():
			return nil, core.Errorf(codes.DeadlineExceeded, "waiting for operation %q: %v", req.GetName(), ctx.Err())
		case <-deadline:
			return out, nil
		case <-time.After(wait):
		}
	}
}

// ListOperations lists a location's operations, newest first. name is
// projects/{project}/locations/{location} ("-": every location); filter
// may be empty, "done=true" or "done=false".
func (o *operationsServer) ListOperations(_ context.Context, req *longrunningpb.ListOperationsRequest) (*longrunningpb.ListOperationsResponse, error) {
	s := o.s
	loc, err := s.parseLocation("name", req.GetName(), true)
	if err != nil {
		return nil, err
	}
	var wantDone *bool
	switch f := strings.ReplaceAll(req.GetFilter(), " ", ""); f {
	case "":
	case "done=true", "done=false":
		v := f == "done=true"
		wantDone = &v
	default:
		return nil, invalid("filter: %q is not supported; the emulator understands only done=true and done=false", req.GetFilter())
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
	// The token is the canonical name of the last operation returned.
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := decodeOpToken(tok)
		if err != nil {
			return nil, err
		}
		after = b
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	names := slices.Clone(s.opOrder)
	slices.Reverse(names)
	if after != "" {
		i := slices.Index(names, after)
		if i < 0 {
			return nil, invalid("page_token: the operation it points at no longer exists; restart the listing")
		}
		names = names[i+1:]
	}
	resp := &longrunningpb.ListOperationsResponse{}
	lastName := ""
	for _, n := range names {
		op := s.ops[n]
		if op.project.ID != loc.project.ID || (loc.region != "-" && op.region != loc.region) {
			continue
		}
		if wantDone != nil && op.done != *wantDone {
			continue
		}
		if len(resp.Operations) == size {
			resp.NextPageToken = encodeOpToken(lastName)
			break
		}
		out, err := op.render(loc.form)
		if err != nil {
			return nil, err
		}
		resp.Operations = append(resp.Operations, out)
		lastName = n
	}
	return resp, nil
}

func encodeOpToken(canonical string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(canonical))
}

func decodeOpToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), "projects/") {
		return "", invalid("page_token: %q is not a page token of this request", tok)
	}
	return string(b), nil
}

// DeleteOperation forgets an operation; it does not affect the service.
func (o *operationsServer) DeleteOperation(_ context.Context, req *longrunningpb.DeleteOperationRequest) (*emptypb.Empty, error) {
	s := o.s
	ref, err := s.parseOperationName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := ref.canonical()
	if s.ops[name] == nil {
		return nil, core.Errorf(codes.NotFound, "operation %q not found", req.GetName())
	}
	delete(s.ops, name)
	delete(s.opsDue, name)
	s.opOrder = slices.DeleteFunc(s.opOrder, func(n string) bool { return n == name })
	return &emptypb.Empty{}, nil
}
