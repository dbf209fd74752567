package event

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// auditLogType is protoPayload.@type of Cloud Audit Logs entries. It is
// optional: real samples omit it (see shared/reference/audit-events.md §7).
const auditLogType = "type.googleapis.com/google.cloud.audit.AuditLog"

// logEntry is the part of a LogEntry (google.events.cloud.audit.v1.LogEntryData)
// the decoder reads. Free-form members (request, response) stay raw and are
// read leniently, so that an unexpected shape there never makes an entry
// malformed; the members below must have the documented JSON types.
type logEntry struct {
	LogName          string            `json:"logName"`
	InsertID         string            `json:"insertId"`
	Resource         *monitoredRes     `json:"resource"`
	ProtoPayload     *auditPayload     `json:"protoPayload"`
	Timestamp        string            `json:"timestamp"`
	ReceiveTimestamp string            `json:"receiveTimestamp"`
	Operation        *entryOperation   `json:"operation"`
	Labels           map[string]string `json:"labels"`
}

type monitoredRes struct {
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels"`
}

type entryOperation struct {
	ID       string `json:"id"`
	Producer string `json:"producer"`
	First    bool   `json:"first"`
	Last     bool   `json:"last"`
}

type auditPayload struct {
	Type               string          `json:"@type"`
	ServiceName        string          `json:"serviceName"`
	MethodName         string          `json:"methodName"`
	ResourceName       string          `json:"resourceName"`
	Status             *rpcStatus      `json:"status"`
	AuthenticationInfo *authInfo       `json:"authenticationInfo"`
	ResourceLocation   *resourceLoc    `json:"resourceLocation"`
	Request            json.RawMessage `json:"request"`
	Response           json.RawMessage `json:"response"`
}

type rpcStatus struct {
	Code    int32  `json:"code"`
	Message string `json:"message"`
}

type authInfo struct {
	PrincipalEmail   string `json:"principalEmail"`
	PrincipalSubject string `json:"principalSubject"`
}

type resourceLoc struct {
	CurrentLocations []string `json:"currentLocations"`
}

// parseEntry parses LogEntry JSON. Errors wrap ErrMalformed.
func parseEntry(b []byte) (*logEntry, error) {
	var le logEntry
	if err := json.Unmarshal(b, &le); err != nil {
		return nil, fmt.Errorf("%w: parsing audit log entry: %w", ErrMalformed, err)
	}
	if le.ProtoPayload == nil {
		return nil, fmt.Errorf("%w: log entry has no protoPayload", ErrMalformed)
	}
	return &le, nil
}

// entryTime parses a LogEntry timestamp. Real entries use RFC 3339 with
// nanoseconds; some third-party captures use "YYYY-MM-DD hh:mm:ss.n" (UTC).
// An unparsable timestamp is not an error: the time is informational.
func entryTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02 15:04:05.999999999", s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// auditSourceAndID derive the CloudEvent source and id Eventarc gives the
// audit-log event carrying le (OBSERVED, see audit-events.md §1):
// source "//cloudaudit.googleapis.com/<parent>/logs/<activity|data_access|…>",
// id logName + insertId + the timestamp in unix microseconds. ok is false
// when le lacks what the derivation needs.
func auditSourceAndID(le *logEntry) (source, id string, ok bool) {
	i := strings.LastIndex(le.LogName, "/logs/")
	if i <= 0 || le.InsertID == "" {
		return "", "", false
	}
	parent, logID := le.LogName[:i], le.LogName[i+len("/logs/"):]
	if u, err := url.PathUnescape(logID); err == nil {
		logID = u
	}
	if kind, found := strings.CutPrefix(logID, "cloudaudit.googleapis.com/"); found && kind != "" {
		source = "//cloudaudit.googleapis.com/" + parent + "/logs/" + kind
	} else {
		source = "//logging.googleapis.com/" + le.LogName
	}
	id = le.LogName + le.InsertID
	if t, tok := entryTime(le.Timestamp); tok {
		id += strconv.FormatInt(t.UnixMicro(), 10)
	}
	return source, id, true
}

// decideEntry decides on a parsed entry. tr carries the delivery fields
// (id, source, type, via, time fallback); the entry's fields are added.
func decideEntry(le *logEntry, tr Trigger) (Decision, error) {
	p := le.ProtoPayload
	tr.Method = p.MethodName
	tr.ResourceName = p.ResourceName
	if p.AuthenticationInfo != nil {
		tr.Principal = p.AuthenticationInfo.PrincipalEmail
		tr.Principal = cmp.Or(tr.Principal, p.AuthenticationInfo.PrincipalSubject)
	}
	if t, ok := entryTime(le.Timestamp); ok {
		tr.Time = t
	}
	d := Decision{Trigger: tr}
	if p.Type != "" && p.Type != auditLogType {
		d.Skip = fmt.Sprintf("not an audit log entry (protoPayload @type %q)", p.Type)
		return d, nil
	}
	if p.ServiceName == "" || p.MethodName == "" {
		return d, fmt.Errorf("%w: audit log entry lacks serviceName or methodName", ErrMalformed)
	}
	switch p.ServiceName {
	case RunServiceName:
		return decideRun(le, d)
	case ComputeServiceName:
		return decideCompute(le, d)
	}
	d.Skip = fmt.Sprintf("not a Cloud Run or Compute event (serviceName %q)", p.ServiceName)
	return d, nil
}

func failed(s *rpcStatus) bool { return s != nil && s.Code != 0 }

func statusText(s *rpcStatus) string {
	if s.Message == "" {
		return "code " + strconv.Itoa(int(s.Code))
	}
	return "code " + strconv.Itoa(int(s.Code)) + ": " + s.Message
}

// decideRun handles run.googleapis.com entries. Cloud Run entries carry no
// operation markers in the real samples; should an entry carry them, it is
// still acted on (reconciling twice is harmless, missing a change is not),
// unless its status reports a failure.
func decideRun(le *logEntry, d Decision) (Decision, error) {
	p := le.ProtoPayload
	switch {
	case slices.Contains(runDeletes, p.MethodName):
		d.Skip = "Cloud Run service deleted: nothing to protect"
		return d, nil
	case !slices.Contains(runHandled, p.MethodName):
		d.Skip = fmt.Sprintf("Cloud Run method %q does not change what iapguard enforces", p.MethodName)
		return d, nil
	case failed(p.Status):
		d.Skip = fmt.Sprintf("call failed (%s): nothing changed", statusText(p.Status))
		return d, nil
	case validateOnly(p.Request):
		d.Skip = ValidateOnlySkip
		return d, nil
	case p.ResourceName == "":
		return d, fmt.Errorf("%w: %s entry has no resourceName", ErrMalformed, p.MethodName)
	}
	t, err := runTarget(le)
	if err != nil {
		return d, err
	}
	d.Targets = []Target{t}
	return d, nil
}

// ValidateOnlySkip is the skip reason of an entry for a validate-only
// request.
const ValidateOnlySkip = "validate-only request (a dry run): nothing changed"

// validateOnly reports whether an audit entry's request asked only for
// validation: Cloud Run v2's validateOnly (what iapguard's dry run sends
// with UpdateService) or v1's dryRun. Nothing changed, so such an entry is
// never acted on — were Google to log it, a dry-running function would
// otherwise trigger itself once per event, forever. Whether Google logs
// validate-only calls is not known; the rule holds either way.
func validateOnly(request json.RawMessage) bool {
	req := rawObject(request)
	for _, k := range []string{"validateOnly", "validate_only"} {
		var b bool
		if v, ok := req[k]; ok && json.Unmarshal(v, &b) == nil && b {
			return true
		}
	}
	// Cloud Run Admin API v1 (Knative): dryRun=all.
	return rawString(req, "dryRun") != "" || rawString(req, "dry_run") != ""
}

// SkipOwnDryRun marks d skipped when it reports a call the function itself
// made while dry-running: a function in dry-run mode changes nothing, so
// every audit entry naming one of its own identities (self: its service
// account, and the principal it names to the emulator) comes from one of
// its validate-only calls, whatever Google logs of the request. Acting on
// it would loop: each dry-run reconcile would cause the next. Outside dry
// run, or for another principal, d is returned as it is.
func SkipOwnDryRun(d Decision, dryRun bool, self ...string) Decision {
	if !dryRun || d.Skip != "" || d.Trigger.Principal == "" || !slices.Contains(self, d.Trigger.Principal) {
		return d
	}
	d.Targets, d.Compute = nil, nil
	d.Skip = "caused by iapguard's own dry-run call (" + d.Trigger.Principal + "): nothing changed"
	return d
}

// runTarget reads the service from resourceName, in either shape:
// "namespaces/P/services/S" (v1 Create/Replace) or
// "projects/P/locations/R/services/S" (v1 SetIamPolicy, all of v2). The v1
// namespace shape has no region; it is taken from, in order,
// resource.labels.location, resourceLocation.currentLocations[0],
// request.region, request.name, and the response's
// cloud.googleapis.com/location label.
func runTarget(le *logEntry) (Target, error) {
	p := le.ProtoPayload
	segs := strings.Split(p.ResourceName, "/")
	var t Target
	switch {
	case len(segs) == 4 && segs[0] == "namespaces" && segs[2] == "services":
		t = Target{Kind: TargetService, Project: segs[1], Service: segs[3]}
		t.Region = runV1Region(le)
		if t.Region == "" {
			return Target{}, fmt.Errorf("%w: cannot tell the region of %q: no location in the entry", ErrMalformed, p.ResourceName)
		}
	case len(segs) == 6 && segs[0] == "projects" && segs[2] == "locations" && segs[4] == "services":
		t = Target{Kind: TargetService, Project: segs[1], Region: segs[3], Service: segs[5]}
	default:
		return Target{}, fmt.Errorf("%w: %q is not a Cloud Run service name", ErrMalformed, p.ResourceName)
	}
	if err := checkServiceTarget(t); err != nil {
		return Target{}, fmt.Errorf("%w: %q: %w", ErrMalformed, p.ResourceName, err)
	}
	return t, nil
}

func runV1Region(le *logEntry) string {
	p := le.ProtoPayload
	if le.Resource != nil {
		if r := le.Resource.Labels["location"]; r != "" {
			return r
		}
	}
	if p.ResourceLocation != nil && len(p.ResourceLocation.CurrentLocations) > 0 && p.ResourceLocation.CurrentLocations[0] != "" {
		return p.ResourceLocation.CurrentLocations[0]
	}
	req := rawObject(p.Request)
	if r := rawString(req, "region"); r != "" {
		return r
	}
	if segs := strings.Split(rawString(req, "name"), "/"); len(segs) == 6 && segs[0] == "projects" && segs[2] == "locations" {
		return segs[3]
	}
	var resp struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if len(p.Response) > 0 && json.Unmarshal(p.Response, &resp) == nil {
		return resp.Metadata.Labels["cloud.googleapis.com/location"]
	}
	return ""
}

// rawObject parses a free-form JSON object; anything else yields nil.
func rawObject(b json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// rawString returns m[k] if it is a JSON string, else "".
func rawString(m map[string]json.RawMessage, k string) string {
	var s string
	if v, ok := m[k]; !ok || json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// checkServiceTarget says which name of a service target Google would
// never have accepted, and the rule it breaks.
func checkServiceTarget(t Target) error {
	switch {
	case !ValidProject(t.Project):
		return fmt.Errorf("project %q is not a project (%s)", t.Project, ProjectRule)
	case !ValidRegion(t.Region):
		return fmt.Errorf("region %q is not a region (%s)", t.Region, RegionRule)
	case !ValidServiceName(t.Service):
		return fmt.Errorf("service %q is not a Cloud Run service name (%s)", t.Service, ServiceNameRule)
	}
	return nil
}

// computeMethod is a parsed Compute audit methodName such as
// "beta.compute.regionBackendServices.patch".
type computeMethod struct {
	Version, Collection, Verb string
}

// parseComputeMethod splits a Compute methodName; handled reports whether
// the decoder acts on it.
func parseComputeMethod(m string) (cm computeMethod, handled bool) {
	parts := strings.Split(m, ".")
	if len(parts) != 4 || parts[1] != "compute" || !slices.Contains(computeAPIVersions, parts[0]) {
		return computeMethod{}, false
	}
	cm = computeMethod{Version: parts[0], Collection: parts[2], Verb: parts[3]}
	return cm, slices.Contains(computeHandled[cm.Collection], cm.Verb)
}

// computeKindOf returns the resource kind and whether it is regional for a
// handled collection.
func computeKindOf(collection string) (ComputeKind, bool) {
	switch collection {
	case "backendServices":
		return ComputeBackendService, false
	case "regionBackendServices":
		return ComputeBackendService, true
	default: // regionNetworkEndpointGroups
		return ComputeNetworkEndpointGroup, true
	}
}

// decideCompute handles compute.googleapis.com entries. The handled methods
// are long-running: Compute logs a `first` entry at request time and a
// `last` entry when the operation is done (with the error status if it
// failed). Only a successful `last` entry means the change is in place. A
// request rejected up front is logged once, without an operation.
func decideCompute(le *logEntry, d Decision) (Decision, error) {
	p := le.ProtoPayload
	cm, handled := parseComputeMethod(p.MethodName)
	if !handled {
		if _, ok := computeHandled[cm.Collection]; ok && cm.Verb == "delete" {
			kind, _ := computeKindOf(cm.Collection)
			d.Skip = fmt.Sprintf("Compute %s deleted: nothing to protect", kind)
			return d, nil
		}
		d.Skip = fmt.Sprintf("Compute method %q is not handled", p.MethodName)
		return d, nil
	}
	op := le.Operation
	switch {
	case op == nil && failed(p.Status):
		d.Skip = fmt.Sprintf("call rejected (%s): nothing changed", statusText(p.Status))
		return d, nil
	case op == nil:
		d.Skip = "entry has no operation: only a long-running operation's last entry says the change is done"
		return d, nil
	case !op.Last && op.First:
		d.Skip = "waiting for the operation's last entry"
		return d, nil
	case !op.Last:
		d.Skip = "not the operation's last entry"
		return d, nil
	case failed(p.Status):
		d.Skip = fmt.Sprintf("operation failed (%s): nothing changed", statusText(p.Status))
		return d, nil
	case p.ResourceName == "":
		return d, fmt.Errorf("%w: %s entry has no resourceName", ErrMalformed, p.MethodName)
	}
	ref, err := computeRef(cm, p.ResourceName)
	if err != nil {
		return d, err
	}
	d.Compute = &ref
	return d, nil
}

// computeRef parses "projects/P/global/backendServices/N",
// "projects/P/regions/R/backendServices/N" or
// "projects/P/regions/R/networkEndpointGroups/N" (a full API URL is also
// accepted) and checks it fits the method's collection.
func computeRef(cm computeMethod, name string) (ComputeRef, error) {
	rel := name
	for _, pre := range []string{"https://www.googleapis.com/compute/", "https://compute.googleapis.com/compute/"} {
		if rest, ok := strings.CutPrefix(name, pre); ok {
			if _, after, ok := strings.Cut(rest, "/"); ok {
				rel = after
			}
		}
	}
	kind, regional := computeKindOf(cm.Collection)
	coll := "backendServices"
	if kind == ComputeNetworkEndpointGroup {
		coll = "networkEndpointGroups"
	}
	segs := strings.Split(rel, "/")
	var ref ComputeRef
	switch {
	case !regional && len(segs) == 5 && segs[0] == "projects" && segs[2] == "global" && segs[3] == coll:
		ref = ComputeRef{Project: segs[1], Kind: kind, Name: segs[4]}
	case regional && len(segs) == 6 && segs[0] == "projects" && segs[2] == "regions" && segs[4] == coll:
		ref = ComputeRef{Project: segs[1], Region: segs[3], Kind: kind, Name: segs[5]}
		if !ValidRegion(ref.Region) {
			return ComputeRef{}, fmt.Errorf("%w: %q: region %q is not a region (%s)", ErrMalformed, name, ref.Region, RegionRule)
		}
	default:
		return ComputeRef{}, fmt.Errorf("%w: resourceName %q does not fit method collection %s", ErrMalformed, name, cm.Collection)
	}
	switch {
	case !ValidProject(ref.Project):
		return ComputeRef{}, fmt.Errorf("%w: %q: project %q is not a project (%s)", ErrMalformed, name, ref.Project, ProjectRule)
	case !ValidComputeName(ref.Name):
		return ComputeRef{}, fmt.Errorf("%w: %q: %q is not a Compute resource name (%s)", ErrMalformed, name, ref.Name, ComputeNameRule)
	}
	return ref, nil
}

// DecodeLogEntry decodes raw audit LogEntry JSON, as an org-wide log sink
// publishes it or Cloud Logging's entries.list returns it (iapctl replay
// --from-logs). Trigger.Via is ViaLogSink; EventID and Source are derived
// as Eventarc derives them, Type is AuditLogWritten. Errors wrap ErrMalformed.
func DecodeLogEntry(b []byte) (Decision, error) {
	return decodeLogEntryVia(b, Trigger{Via: ViaLogSink})
}

func decodeLogEntryVia(b []byte, tr Trigger) (Decision, error) {
	le, err := parseEntry(b)
	if err != nil {
		return Decision{Trigger: tr}, err
	}
	if src, id, ok := auditSourceAndID(le); ok {
		tr.Source, tr.EventID = src, id
	}
	tr.Type = AuditLogWritten
	return decideEntry(le, tr)
}
