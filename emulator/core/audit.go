package core

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// LogEntry is a Cloud Audit Logs entry in the JSON shape Cloud Logging
// returns and Eventarc delivers as CloudEvent data
// (google.events.cloud.audit.v1.LogEntryData). Field order and names follow
// the real samples in internal/auditsamples/testdata.
type LogEntry struct {
	ProtoPayload     *AuditPayload     `json:"protoPayload"`
	InsertID         string            `json:"insertId"`
	Resource         MonitoredResource `json:"resource"`
	Timestamp        time.Time         `json:"timestamp"`
	Severity         string            `json:"severity"`
	Labels           map[string]string `json:"labels,omitempty"`
	LogName          string            `json:"logName"`
	Operation        *EntryOperation   `json:"operation,omitempty"`
	ReceiveTimestamp time.Time         `json:"receiveTimestamp"`
}

// AuditPayload is protoPayload (type.googleapis.com/google.cloud.audit.AuditLog).
type AuditPayload struct {
	Type               string              `json:"@type,omitempty"` // empty in Eventarc's delivered data
	Status             *RPCStatus          `json:"status,omitempty"`
	AuthenticationInfo *AuthenticationInfo `json:"authenticationInfo,omitempty"`
	RequestMetadata    *RequestMetadata    `json:"requestMetadata,omitempty"`
	ServiceName        string              `json:"serviceName"`
	MethodName         string              `json:"methodName"`
	AuthorizationInfo  []AuthorizationInfo `json:"authorizationInfo,omitempty"`
	ResourceName       string              `json:"resourceName"`
	Request            map[string]any      `json:"request,omitempty"`
	Response           map[string]any      `json:"response,omitempty"`
	ResourceLocation   *ResourceLocation   `json:"resourceLocation,omitempty"`
}

// RPCStatus is google.rpc.Status.
type RPCStatus struct {
	Code    int32  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// AuthenticationInfo names the caller.
type AuthenticationInfo struct {
	PrincipalEmail   string `json:"principalEmail"`
	PrincipalSubject string `json:"principalSubject,omitempty"`
}

// RequestMetadata describes the request's origin.
type RequestMetadata struct {
	CallerIP                string         `json:"callerIp"`
	CallerSuppliedUserAgent string         `json:"callerSuppliedUserAgent,omitempty"`
	RequestAttributes       map[string]any `json:"requestAttributes"`
	DestinationAttributes   map[string]any `json:"destinationAttributes"`
}

// AuthorizationInfo is one permission check.
type AuthorizationInfo struct {
	Resource           string            `json:"resource"`
	Permission         string            `json:"permission"`
	Granted            bool              `json:"granted"`
	ResourceAttributes map[string]string `json:"resourceAttributes"`
	PermissionType     string            `json:"permissionType,omitempty"`
}

// ResourceLocation lists where the resource lives.
type ResourceLocation struct {
	CurrentLocations []string `json:"currentLocations"`
}

// MonitoredResource is the entry's resource.
type MonitoredResource struct {
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels"`
}

// EntryOperation links the first and last entries of a long operation.
type EntryOperation struct {
	ID       string `json:"id"`
	Producer string `json:"producer"`
	First    bool   `json:"first,omitempty"`
	Last     bool   `json:"last,omitempty"`
}

// Record is what a surface knows about one audited call.
type Record struct {
	Ctx          context.Context // principal and user agent are read from it
	Project      Project
	ServiceName  string // "run.googleapis.com"
	MethodName   string // "google.cloud.run.v2.Services.UpdateService"
	ResourceName string // as Google writes it for this method
	Location     string // "us-central1", "global"
	Permission   string // "run.services.update"; empty: no authorizationInfo
	// PermissionResourceType fills authorizationInfo.resourceAttributes.type
	// ("compute.backendServices"); empty leaves resourceAttributes {} as Cloud Run does.
	PermissionResourceType string
	Request                map[string]any // must carry "@type"
	Response               map[string]any
	ResourceType           string // "cloud_run_revision", "gce_backend_service"
	ResourceLabels         map[string]string
	Labels                 map[string]string
	Operation              *EntryOperation
	Err                    *Error // a failed call: status + severity ERROR
	// Slim renders a compute "last" entry: request holds only @type, no
	// response, no authorizationInfo, empty requestAttributes.
	Slim bool
}

// AuditLog is the emulator's Cloud Logging: every mutation appends an entry;
// listeners (the Eventarc stand-in, the log sink) are told of each.
type AuditLog struct {
	core      *Core
	mu        sync.Mutex
	entries   []*LogEntry
	listeners map[int]func(*LogEntry)
	nextID    int
	max       int
}

func newAuditLog(c *Core) *AuditLog {
	return &AuditLog{core: c, listeners: map[int]func(*LogEntry){}, max: 100_000}
}

// Listen calls f for every entry appended from now on, synchronously on the
// appending goroutine (so an entry has reached every listener when Append or
// Record returns): f must not block. Entries appended by one goroutine reach
// f in append order; entries appended concurrently by several goroutines may
// reach f in an order that differs from Entries. f may itself cause entries
// to be appended. The returned func stops it (calling it again is a no-op).
func (a *AuditLog) Listen(f func(*LogEntry)) (stop func()) {
	a.mu.Lock()
	id := a.nextID
	a.nextID++
	a.listeners[id] = f
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.listeners, id)
		a.mu.Unlock()
	}
}

// Entries returns a copy of the log, oldest first (never nil, so an empty
// log renders as [] in JSON). It keeps the newest 100,000 entries.
func (a *AuditLog) Entries() []*LogEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append(make([]*LogEntry, 0, len(a.entries)), a.entries...)
}

// Append stores a fully built entry and notifies listeners.
func (a *AuditLog) Append(e *LogEntry) {
	a.mu.Lock()
	a.entries = append(a.entries, e)
	if len(a.entries) > a.max {
		// Drop the oldest entry without copying the log: append reallocates
		// (copying only the live entries) once the backing array is used up,
		// so appends at the cap stay O(1) amortised.
		a.entries[0] = nil
		a.entries = a.entries[1:]
	}
	ls := make([]func(*LogEntry), 0, len(a.listeners))
	for _, f := range a.listeners {
		ls = append(ls, f)
	}
	a.mu.Unlock()
	for _, f := range ls {
		f(e)
	}
}

// Record builds the entry for r the way Cloud Audit Logs writes it, appends
// it and returns it.
func (a *AuditLog) Record(r Record) *LogEntry {
	now := a.core.Now().UTC()
	principal, ua := a.core.DefaultPrincipal, "emulator"
	if r.Ctx != nil {
		principal = a.core.PrincipalFrom(r.Ctx)
		if v := UserAgentFrom(r.Ctx); v != "" {
			ua = v
		}
	}
	p := &AuditPayload{
		Type:               "type.googleapis.com/google.cloud.audit.AuditLog",
		AuthenticationInfo: &AuthenticationInfo{PrincipalEmail: principal, PrincipalSubject: principalSubject(principal)},
		RequestMetadata: &RequestMetadata{
			CallerIP:                "127.0.0.1",
			CallerSuppliedUserAgent: ua,
			RequestAttributes:       map[string]any{"time": now.Format(time.RFC3339Nano), "auth": map[string]any{}},
			DestinationAttributes:   map[string]any{},
		},
		ServiceName:  r.ServiceName,
		MethodName:   r.MethodName,
		ResourceName: r.ResourceName,
		Request:      r.Request,
		Response:     r.Response,
	}
	if r.Location != "" {
		p.ResourceLocation = &ResourceLocation{CurrentLocations: []string{r.Location}}
	}
	if r.Permission != "" && !r.Slim {
		attrs := map[string]string{}
		if r.PermissionResourceType != "" {
			svc, _, _ := strings.Cut(r.ServiceName, ".")
			attrs = map[string]string{"service": svc, "name": r.ResourceName, "type": r.PermissionResourceType}
		}
		p.AuthorizationInfo = []AuthorizationInfo{{
			Resource: r.ResourceName, Permission: r.Permission, Granted: true,
			ResourceAttributes: attrs, PermissionType: "ADMIN_WRITE",
		}}
	}
	if r.Slim {
		p.Request = nil
		if typ, ok := r.Request["@type"]; ok {
			p.Request = map[string]any{"@type": typ}
		}
		p.Response = nil
		p.RequestMetadata.RequestAttributes = map[string]any{}
		p.ResourceLocation = nil
	}
	sev := "NOTICE"
	if r.Err != nil {
		p.Status = &RPCStatus{Code: int32(r.Err.Code), Message: r.Err.Message}
		sev = "ERROR"
	}
	// A copy: Record never writes to the caller's maps, which a surface may
	// share between records or goroutines.
	labels := make(map[string]string, len(r.ResourceLabels)+1)
	for k, v := range r.ResourceLabels {
		labels[k] = v
	}
	if _, ok := labels["project_id"]; !ok {
		labels["project_id"] = r.Project.ID
	}
	e := &LogEntry{
		ProtoPayload:     p,
		InsertID:         randomInsertID(),
		Resource:         MonitoredResource{Type: r.ResourceType, Labels: labels},
		Timestamp:        now,
		Severity:         sev,
		Labels:           r.Labels,
		LogName:          "projects/" + r.Project.ID + "/logs/cloudaudit.googleapis.com%2Factivity",
		Operation:        r.Operation,
		ReceiveTimestamp: now.Add(time.Duration(300+rand.IntN(900)) * time.Microsecond),
	}
	a.Append(e)
	return e
}

func principalSubject(email string) string {
	if strings.HasSuffix(email, ".gserviceaccount.com") {
		return "serviceAccount:" + email
	}
	return "user:" + email
}

const insertAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomInsertID() string {
	b := make([]byte, 12)
	for i := range b {
		b[i] = insertAlphabet[rand.IntN(len(insertAlphabet))]
	}
	return string(b)
}

// ProtoMap renders m as protojson and returns it as a map with "@type" set
// to typeURL, for Record.Request/Response.
func ProtoMap(m proto.Message, typeURL string) map[string]any {
	out := map[string]any{}
	if m != nil {
		b, err := protojson.Marshal(m)
		if err == nil {
			_ = json.Unmarshal(b, &out)
		}
	}
	if typeURL != "" {
		out["@type"] = typeURL
	}
	return out
}

// JSONMap renders any JSON-marshalable value as a map with "@type" set.
func JSONMap(v any, typeURL string) map[string]any {
	out := map[string]any{}
	if b, err := json.Marshal(v); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	if typeURL != "" {
		out["@type"] = typeURL
	}
	return out
}

// Caller identity. Official clients are used unchanged, so the caller names
// itself through an optional header / gRPC metadata key; absent, the
// emulator's default principal is recorded.
const (
	PrincipalHeader   = "X-Emulator-Principal"
	principalMetadata = "x-emulator-principal"
)

type ctxKey int

const (
	principalKey ctxKey = iota
	userAgentKey
)

// WithHTTPCaller stores the caller identity and user agent of r in its context.
func WithHTTPCaller(r *http.Request) *http.Request {
	ctx := r.Context()
	if p := r.Header.Get(PrincipalHeader); p != "" {
		ctx = context.WithValue(ctx, principalKey, p)
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		ctx = context.WithValue(ctx, userAgentKey, ua)
	}
	return r.WithContext(ctx)
}

// PrincipalFrom returns the caller named by ctx (HTTP header stored by
// WithHTTPCaller, or incoming gRPC metadata), else the default principal.
func (c *Core) PrincipalFrom(ctx context.Context) string {
	if p, ok := ctx.Value(principalKey).(string); ok && p != "" {
		return p
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(principalMetadata); len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return c.DefaultPrincipal
}

// UserAgentFrom returns the caller's user agent, if known.
func UserAgentFrom(ctx context.Context) string {
	if ua, ok := ctx.Value(userAgentKey).(string); ok {
		return ua
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("user-agent"); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// ID returns a fresh decimal numeric id like Compute's (19 digits).
func ID() uint64 { return 1_000_000_000_000_000_000 + rand.Uint64N(8_000_000_000_000_000_000) }

// OperationName returns a Compute-style operation name.
func OperationName(now time.Time) string {
	return fmt.Sprintf("operation-%d-%013x-%08x-%08x", now.UnixMilli(), rand.Uint64N(1<<52), rand.Uint32(), rand.Uint32())
}
