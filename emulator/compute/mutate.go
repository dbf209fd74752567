package compute

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

// operation is a Compute Operation plus what its completion must write.
type operation struct {
	op    *compute.Operation
	first core.Record
	last  core.Record
	// firstDone is closed once the "first" audit entry is written: an
	// operation never completes before it. completing is set when the "last"
	// entry is being written; done (status DONE) only after it exists, and
	// recorded is closed then.
	firstDone  chan struct{}
	completing bool
	done       bool
	recorded   chan struct{}
	// fail, when set, is the error the operation ends with (a
	// core.Faults.FailOperations rule): the change was undone at once.
	fail *core.Error
	// deletes is the resource a delete operation removes when it is done.
	deletes *resource
}

var requestIDRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// mutate serves insert, patch, update and delete. The change applies at
// once, atomically; the returned Operation is RUNNING and completes after
// the operation delay or on the first get/wait.
//
// Contracts (as Compute): insert of an existing name → 409 alreadyExists;
// patch is an RFC 7396 merge patch of the raw body, with the fingerprint
// optional but checked when sent; update (PUT) replaces every writable field
// and requires the fingerprint; a stale fingerprint → 412 conditionNotMet;
// delete of a referenced resource → 400 resourceInUseByAnotherResource.
// Required IAM permissions (recorded in the audit entry, not enforced):
// <perm>.create / .update (patch and update) / .delete.
func (q *request) mutate() (any, error) {
	s, rt, sp := q.s, q.rt, q.rt.spec
	reqID := q.r.URL.Query().Get("requestId")
	if reqID != "" && (!requestIDRE.MatchString(reqID) || reqID == "00000000-0000-0000-0000-000000000000") {
		return nil, invalidParam("requestId", reqID, "The request ID must be a valid non-zero UUID.")
	}
	var raw map[string]any
	var obj any
	switch rt.action {
	case "delete", "deleteSignedUrlKey":
	case "addSignedUrlKey":
		var err error
		if raw, err = decodeObject(q.body); err != nil {
			return nil, err
		}
		obj = &compute.SignedUrlKey{}
		if err := fromMap(raw, obj); err != nil {
			return nil, err
		}
	default:
		var err error
		if raw, err = decodeObject(q.body); err != nil {
			return nil, err
		}
		// Decoding the body alone catches unknown members and type errors
		// before anything is looked up.
		obj = sp.newObj()
		if err := fromMap(raw, obj); err != nil {
			return nil, err
		}
	}

	s.mu.Lock()
	if reqID != "" {
		if o := s.reqIDs[q.p.ID+"/"+reqID]; o != nil {
			// A retried request: Compute returns the original operation.
			snap := *o.op
			s.mu.Unlock()
			return &snap, nil
		}
	}
	// A FailOperations rule: the mutation is validated and answered as
	// usual, then undone, and its operation ends with an error. Only an
	// accepted mutation takes the rule (a refused one starts no operation).
	undo := q.snapshot(obj)
	var o *operation
	var err error
	switch rt.action {
	case "insert":
		o, err = q.insert(raw, obj)
	case "patch":
		o, err = q.patch(raw)
	case "update":
		o, err = q.update(raw, obj)
	case "delete":
		o, err = q.delete()
	case "setLabels":
		o, err = q.setLabels(raw, obj)
	case "setTarget":
		o, err = q.setTarget(raw, obj)
	case "addSignedUrlKey", "deleteSignedUrlKey":
		o, err = q.signedURLKey(obj)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if failCode, failOp := s.c.Faults.TakeOperationFailure(rt.methodKey); failOp {
		undo()
		msg := "The operation failed (injected)."
		o.fail = &core.Error{Code: failCode, Message: msg, Injected: true}
		o.last.Err = o.fail
	}
	if reqID != "" {
		s.reqIDs[q.p.ID+"/"+reqID] = o
	}
	resp := *o.op
	delay := s.opDelay
	s.mu.Unlock()

	s.c.Audit.Record(o.first)
	close(o.firstDone)
	if rt.action == "setLabels" {
		// Compute answers setLabels with an operation already DONE
		// (recorded traffic: progress 100 and endTime in the answer).
		s.complete(o)
		s.mu.Lock()
		resp = *o.op
		s.mu.Unlock()
	} else if delay >= 0 {
		time.AfterFunc(delay, func() { s.complete(o) })
	}
	return &resp, nil
}

// snapshot returns a function that puts back the state a mutation of the
// request's resource changes (s.mu held throughout).
func (q *request) snapshot(obj any) func() {
	s, sp := q.s, q.rt.spec
	name := q.rt.name
	if q.rt.action == "insert" {
		name = getString(obj, "Name")
	}
	r := s.find(sp, q.p.ID, q.rt.region, name)
	if r == nil {
		key := resKey{sp.collection, q.p.ID, q.rt.region, name}
		return func() { delete(s.res, key) }
	}
	key := resKey{sp.collection, r.project.ID, r.region, r.name}
	prev := r.obj
	return func() {
		r.obj = prev
		s.res[key] = r
	}
}

// codeName is the Compute operation error code for e (UPPER_SNAKE of its
// gRPC code, e.g. RESOURCE_EXHAUSTED; Compute's own codes are finer).
func codeName(e *core.Error) string {
	return strings.ToUpper(camelBoundary.ReplaceAllString(e.Code.String(), "${1}_${2}"))
}

var camelBoundary = regexp.MustCompile(`([a-z])([A-Z])`)

func (q *request) mutation(raw map[string]any) *mutation {
	return &mutation{s: q.s, project: q.p, region: q.rt.region, raw: raw}
}

func (q *request) insert(raw map[string]any, obj any) (*operation, error) {
	s, sp := q.s, q.rt.spec
	name := getString(obj, "Name")
	if err := checkName(name); err != nil {
		return nil, err
	}
	if s.res[resKey{sp.collection, q.p.ID, q.rt.region, name}] != nil {
		return nil, alreadyExists(q.relName(name))
	}
	if err := sp.prepare(q.mutation(raw), obj, nil); err != nil {
		return nil, err
	}
	r := &resource{spec: sp, project: q.p, region: q.rt.region, name: name, id: core.ID(), created: s.c.Now(), obj: obj}
	setOutputs(r, true)
	s.res[resKey{sp.collection, q.p.ID, q.rt.region, name}] = r
	return q.newOperation(r, raw), nil
}

// lookup finds the resource named in the path (name or id). A mutation
// of a resource whose delete operation is still running is refused, as
// Compute refuses it (400 resourceNotReady).
func (q *request) lookup() (*resource, error) {
	r := q.s.find(q.rt.spec, q.p.ID, q.rt.region, q.rt.name)
	if r == nil {
		return nil, notFound(q.relName(q.rt.name))
	}
	if r.deleting != nil && q.rt.action != "get" {
		return nil, notReady(r.rel())
	}
	return r, nil
}

// checkFingerprint applies a forced race, then the caller's precondition.
func (q *request) checkFingerprint(r *resource, sent string, present bool) error {
	if !r.spec.fingerprint {
		return nil
	}
	if q.s.c.Faults.TakeRace(q.rt.methodKey) {
		// A concurrent writer got there first.
		setField(r.obj, "Fingerprint", newFingerprint())
	}
	if present && sent != getString(r.obj, "Fingerprint") {
		return staleFingerprint()
	}
	return nil
}

func (q *request) patch(raw map[string]any) (*operation, error) {
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	fp, present := raw["fingerprint"].(string)
	if err := q.checkFingerprint(r, fp, present); err != nil {
		return nil, err
	}
	cur, err := toMap(r.obj)
	if err != nil {
		return nil, internal(err)
	}
	merged := mergePatch(cur, raw).(map[string]any)
	if n, ok := merged["name"].(string); ok && n != r.name {
		return nil, invalidField("name", n, "The name of an existing resource cannot be changed.")
	}
	obj := r.spec.newObj()
	if err := fromMap(merged, obj); err != nil {
		return nil, err
	}
	return q.replace(r, obj, raw)
}

func (q *request) update(raw map[string]any, obj any) (*operation, error) {
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	fp := getString(obj, "Fingerprint")
	if r.spec.fingerprint && fp == "" {
		return nil, requiredField("fingerprint")
	}
	if err := q.checkFingerprint(r, fp, true); err != nil {
		return nil, err
	}
	if n := getString(obj, "Name"); n != "" && n != r.name {
		return nil, invalidField("name", n, "The name of an existing resource cannot be changed.")
	}
	return q.replace(r, obj, raw)
}

// replace validates obj as r's new state and stores it.
func (q *request) replace(r *resource, obj any, raw map[string]any) (*operation, error) {
	if err := r.spec.prepare(q.mutation(raw), obj, r.obj); err != nil {
		return nil, err
	}
	r.obj = obj
	setOutputs(r, true)
	return q.newOperation(r, raw), nil
}

func (q *request) delete() (*operation, error) {
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	if users := q.s.users(r.rel()); len(users) > 0 {
		return nil, inUse(r.spec.snake, r.rel(), users[0].rel())
	}
	// Google removes the resource when the delete operation is done, not
	// at request time: until then it can still be read and it still holds
	// its references (recorded: a go-vcr cassette's teardown, where
	// deleting a proxy right after the forwarding rule that names it is
	// 400 resourceInUseByAnotherResource).
	o := q.newOperation(r, nil)
	o.deletes, r.deleting = r, o
	return o, nil
}

// setLabels serves forwardingRules.setLabels (the only way to label a
// forwarding rule: insert ignores labels, as recorded traffic shows and
// the API reference says). The labelFingerprint must be the current one.
func (q *request) setLabels(raw map[string]any, obj any) (*operation, error) {
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	req, cur := obj.(*compute.ForwardingRule), r.obj.(*compute.ForwardingRule)
	if req.LabelFingerprint == "" {
		return nil, requiredField("labelFingerprint")
	}
	if req.LabelFingerprint != cur.LabelFingerprint {
		return nil, &core.Error{Code: codes.FailedPrecondition, HTTPStatus: http.StatusPreconditionFailed,
			Reason: "conditionNotMet", OmitStatus: true, Message: "Labels fingerprint either invalid or resource labels have changed"}
	}
	if err := checkLabels(req.Labels); err != nil {
		return nil, err
	}
	next := *cur
	next.Labels = req.Labels
	next.LabelFingerprint = labelFingerprint(req.Labels)
	r.obj = &next
	return q.newOperation(r, raw), nil
}

// validSignedURLKeyValue: a key's value is 128 bits, base64url (RFC 4648
// §5), padded or not (recorded: "MTIzNDU2Nzg5MDEyMzQ1Ng==").
func validSignedURLKeyValue(v string) bool {
	b, err := base64.URLEncoding.DecodeString(v)
	if err != nil {
		b, err = base64.RawURLEncoding.DecodeString(v)
	}
	return err == nil && len(b) == 16
}

// signedURLKey serves backendServices.addSignedUrlKey (obj is the
// SignedUrlKey sent) and deleteSignedUrlKey (?keyName=): the key names are
// listed in cdnPolicy.signedUrlKeyNames, the values are never returned.
// Rules are the API reference's (a name under Compute's name rule, a
// 128-bit value, at most 3 keys per backend service); messages are the
// emulator's. Permission: compute.backendServices.addSignedUrlKey /
// deleteSignedUrlKey.
func (q *request) signedURLKey(obj any) (*operation, error) {
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	next := *r.obj.(*compute.BackendService)
	var names []string
	if next.CdnPolicy != nil {
		cp := *next.CdnPolicy
		next.CdnPolicy = &cp
		names = cp.SignedUrlKeyNames
	} else {
		next.CdnPolicy = &compute.BackendServiceCdnPolicy{}
	}
	if k, ok := obj.(*compute.SignedUrlKey); ok {
		if err := checkName(k.KeyName); err != nil {
			return nil, err
		}
		if !validSignedURLKeyValue(k.KeyValue) {
			return nil, invalidField("keyValue", "", "The key value must be 128 bits, base64url-encoded.")
		}
		if slices.Contains(names, k.KeyName) {
			return nil, invalidField("keyName", k.KeyName, "A key with this name already exists.")
		}
		if len(names) >= 3 {
			return nil, invalidField("keyName", k.KeyName, "At most 3 signed URL keys per backend service.")
		}
		names = append(slices.Clone(names), k.KeyName)
	} else {
		name := q.r.URL.Query().Get("keyName")
		if name == "" {
			return nil, requiredField("keyName")
		}
		i := slices.Index(names, name)
		if i < 0 {
			return nil, invalidField("keyName", name, "No signed URL key with this name.")
		}
		names = slices.Delete(slices.Clone(names), i, i+1)
	}
	next.CdnPolicy.SignedUrlKeyNames = names
	r.obj = &next
	setOutputs(r, true)
	return q.newOperation(r, nil), nil
}

// setTarget serves forwardingRules.setTarget: the new target must be an
// existing target proxy of the rule's scope.
func (q *request) setTarget(raw map[string]any, obj any) (*operation, error) {
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	target := obj.(*compute.ForwardingRule).Target
	if target == "" {
		return nil, requiredField("target")
	}
	link, _, err := q.mutation(raw).resolveTarget(target)
	if err != nil {
		return nil, err
	}
	next := *r.obj.(*compute.ForwardingRule)
	next.Target = link
	r.obj = &next
	return q.newOperation(r, raw), nil
}

// setOutputs writes the output-only fields of r.obj; newFP issues a new
// fingerprint (every accepted mutation does).
func setOutputs(r *resource, newFP bool) {
	o := r.obj
	setField(o, "Id", r.id)
	setField(o, "Name", r.name)
	setField(o, "Kind", r.spec.kind)
	setField(o, "SelfLink", r.selfLink())
	setField(o, "CreationTimestamp", timestamp(r.created))
	if hasField(o, "SelfLinkWithId") {
		setField(o, "SelfLinkWithId", linkBase+relPath(r.spec, r.project.ID, r.region, formatID(r.id)))
	}
	switch {
	case isZone(r.region):
		setField(o, "Zone", linkBase+"projects/"+r.project.ID+"/"+r.region)
	case r.region != "":
		setField(o, "Region", linkBase+"projects/"+r.project.ID+"/regions/"+r.region)
	default:
		setField(o, "Region", "")
	}
	if newFP && hasField(o, "Fingerprint") {
		setField(o, "Fingerprint", newFingerprint())
	}
}

// permVerb maps a method to the IAM permission verb Compute checks.
func permVerb(action string) string {
	switch action {
	case "insert":
		return "create"
	case "delete", "setLabels", "setTarget", "addSignedUrlKey", "deleteSignedUrlKey":
		return action
	}
	return "update"
}

// newOperation creates the RUNNING operation for a mutation of r and
// prepares its two audit entries (s.mu held).
func (q *request) newOperation(r *resource, raw map[string]any) *operation {
	s, rt, sp := q.s, q.rt, q.rt.spec
	now := s.c.Now()
	opType := rt.action
	if rt.action == "setTarget" {
		opType = "SetTarget" // as recorded
	}
	if sp == specRegionNEGs {
		// Observed: regional NEG operations carry the qualified method name.
		opType = "compute.regionNetworkEndpointGroups." + rt.action
	}
	name := core.OperationName(now)
	id := core.ID()
	opBase := linkBase + "projects/" + q.p.ID + "/" + scopePath(rt.region) + "/operations/"
	op := &compute.Operation{
		Kind: "compute#operation", Id: id, Name: name, OperationType: opType,
		Status: "RUNNING", InsertTime: timestamp(now), StartTime: timestamp(now),
		TargetLink: r.selfLink(), TargetId: r.id, User: s.c.PrincipalFrom(q.r.Context()),
		SelfLink: opBase + name, ForceSendFields: []string{"Progress"},
	}
	switch {
	case isZone(rt.region):
		op.Zone = linkBase + "projects/" + q.p.ID + "/" + rt.region
	case rt.region != "":
		op.Region = linkBase + "projects/" + q.p.ID + "/regions/" + rt.region
	}
	o := &operation{op: op, firstDone: make(chan struct{}), recorded: make(chan struct{})}
	s.ops[opKey{q.p.ID, rt.region, name}] = o

	req := map[string]any{}
	if raw != nil {
		req = deepCopy(raw).(map[string]any)
		redact(req)
	}
	req["@type"] = "type.googleapis.com/compute." + sp.collection + "." + rt.action
	resp := core.JSONMap(op, "type.googleapis.com/operation")
	delete(resp, "kind")
	resp["progress"] = "0"
	resp["selfLinkWithId"] = opBase + formatID(id)
	location := strings.TrimPrefix(rt.region, "zones/")
	if location == "" {
		location = "global"
	}
	trigger := newUUID()
	rec := func(first bool) core.Record {
		return core.Record{
			Ctx: q.r.Context(), Project: q.p, ServiceName: "compute.googleapis.com",
			MethodName:   rt.version + ".compute." + sp.collection + "." + rt.action,
			ResourceName: q.relName(r.name), Location: location,
			Permission: sp.perm + "." + permVerb(rt.action), PermissionResourceType: sp.perm,
			Request: req, Response: resp, ResourceType: sp.auditType,
			ResourceLabels: map[string]string{sp.idLabel: formatID(r.id), "project_id": q.p.ID},
			Labels:         map[string]string{"compute.googleapis.com/root_trigger_id": trigger},
			Operation:      &core.EntryOperation{ID: name, Producer: "compute.googleapis.com", First: first, Last: !first},
			Slim:           !first,
		}
	}
	o.first, o.last = rec(true), rec(false)
	return o
}

// complete writes o's "last" audit entry and then marks it DONE, once.
// It never blocks: before the first entry exists, or while another
// goroutine is completing o, it returns and o stays RUNNING for now.
// (Audit listeners run synchronously inside Record; one that polls the
// operation must not deadlock.)
func (s *Server) complete(o *operation) {
	select {
	case <-o.firstDone:
	default:
		return
	}
	s.mu.Lock()
	if o.completing {
		s.mu.Unlock()
		return
	}
	o.completing = true
	last := o.last
	s.mu.Unlock()
	s.c.Audit.Record(last)
	s.mu.Lock()
	if r := o.deletes; r != nil {
		r.deleting = nil
		key := resKey{r.spec.collection, r.project.ID, r.region, r.name}
		if o.fail == nil && s.res[key] == r {
			delete(s.res, key)
		}
	}
	o.done = true
	o.op.Status = "DONE"
	o.op.Progress = 100
	o.op.EndTime = timestamp(s.c.Now())
	if o.fail != nil {
		o.op.Error = &compute.OperationError{Errors: []*compute.OperationErrorErrors{{
			Code: codeName(o.fail), Message: o.fail.Message}}}
		o.op.HttpErrorStatusCode = int64(o.fail.Status())
		o.op.HttpErrorMessage = http.StatusText(o.fail.Status())
	}
	s.mu.Unlock()
	close(o.recorded)
}

// completionGrace bounds how long get/wait wait for a completion another
// goroutine has started.
var completionGrace = time.Second

// getOperation serves globalOperations/regionOperations get and wait: both
// complete the operation first, so they answer DONE (wait may answer
// RUNNING, as Compute's may, only if completion is stuck in an audit
// listener for over a second).
func (q *request) getOperation() (any, error) {
	s := q.s
	s.mu.Lock()
	o := s.ops[opKey{q.p.ID, q.rt.region, q.rt.name}]
	if o == nil {
		for k, c := range s.ops {
			if k.project == q.p.ID && k.region == q.rt.region && formatID(c.op.Id) == q.rt.name {
				o = c
				break
			}
		}
	}
	s.mu.Unlock()
	if o == nil {
		return nil, notFound("projects/" + q.rt.project + "/" + scopePath(q.rt.region) + "/operations/" + q.rt.name)
	}
	s.complete(o)
	s.mu.Lock()
	pending := o.completing && !o.done
	s.mu.Unlock()
	if pending {
		t := time.NewTimer(completionGrace)
		select {
		case <-o.recorded:
		case <-t.C:
		case <-q.r.Context().Done():
		}
		t.Stop()
	}
	s.mu.Lock()
	snap := *o.op
	s.mu.Unlock()
	// Recorded: an operation on a legacy HTTP health check names it under
	// healthChecks when read back (the write's own answer names
	// httpHealthChecks), as the two share one resource at Google.
	snap.TargetLink = strings.Replace(snap.TargetLink, "/global/httpHealthChecks/", "/global/healthChecks/", 1)
	return &snap, nil
}

// get serves <collection>.get.
func (q *request) get() (any, error) {
	q.s.mu.Lock()
	defer q.s.mu.Unlock()
	r, err := q.lookup()
	if err != nil {
		return nil, err
	}
	return q.s.render(r)
}
