package compute

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/iapguard/iapguard/emulator/core"
)

// linkBase prefixes every selfLink and canonical reference, as Compute
// writes them regardless of the endpoint or API version called.
const linkBase = "https://www.googleapis.com/compute/v1/"

// DefaultOperationDelay is how long an operation stays RUNNING before it
// completes by itself (and its "last" audit entry is written) when nobody
// polls it. get/wait complete it at once.
const DefaultOperationDelay = 5 * time.Millisecond

// DefaultRegions are the regions the emulator knows: the public Compute
// regions as of 2026 (the list a real aggregatedList spans).
var DefaultRegions = []string{
	"africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
	"asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
	"australia-southeast2", "europe-central2", "europe-north1", "europe-north2", "europe-southwest1",
	"europe-west1", "europe-west10", "europe-west12", "europe-west2", "europe-west3", "europe-west4",
	"europe-west6", "europe-west8", "europe-west9", "me-central1", "me-central2", "me-west1",
	"northamerica-northeast1", "northamerica-northeast2", "northamerica-south1", "southamerica-east1",
	"southamerica-west1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
	"us-west2", "us-west3", "us-west4",
}

// Server is the Compute Engine REST surface. It is safe for concurrent use;
// every mutation applies atomically under one lock.
type Server struct {
	c *core.Core

	mu        sync.Mutex
	res       map[resKey]*resource
	ops       map[opKey]*operation
	reqIDs    map[string]*operation // project/requestId -> operation
	regions   []string
	regionSet map[string]bool
	opDelay   time.Duration
	// defaulted holds the projects whose default network exists (or
	// existed: deleting it is allowed and final).
	defaulted map[string]bool
}

type resKey struct {
	coll    string // spec.collection
	project string // project ID
	region  string // "" = global
	name    string
}

type opKey struct {
	project string
	region  string
	name    string
}

// resource is one stored object; obj is a pointer to its compute/v1 type
// holding exactly what GET returns minus derived fields (usedBy) and
// render-time zero values.
type resource struct {
	spec    *spec
	project core.Project
	region  string
	name    string
	id      uint64
	created time.Time
	obj     any
	// deleting is the running delete operation: the resource (and the
	// references it holds) stays until that operation is done, as at
	// Google; meanwhile other mutations of it are refused (resourceNotReady).
	deleting *operation
}

// New returns an empty Compute surface on c.
func New(c *core.Core) *Server {
	s := &Server{
		c:       c,
		res:     map[resKey]*resource{},
		ops:     map[opKey]*operation{},
		reqIDs:  map[string]*operation{},
		opDelay: DefaultOperationDelay,

		defaulted: map[string]bool{},
	}
	s.SetRegions(DefaultRegions...)
	return s
}

// Settle completes every operation still running (a delete takes effect
// then). Replays of recorded traffic call it where the recording shows
// that time has passed: a later read found the resource gone.
func (s *Server) Settle() {
	s.mu.Lock()
	var pending []*operation
	for _, o := range s.ops {
		if !o.done {
			pending = append(pending, o)
		}
	}
	s.mu.Unlock()
	for _, o := range pending {
		s.complete(o)
	}
}

// SetOperationDelay sets how long operations stay RUNNING when not polled;
// d < 0 disables self-completion (only get/wait complete them).
func (s *Server) SetOperationDelay(d time.Duration) {
	s.mu.Lock()
	s.opDelay = d
	s.mu.Unlock()
}

// SetRegions replaces the known regions (paths naming another region answer
// 404, and aggregatedList spans exactly these).
func (s *Server) SetRegions(regions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regions = append([]string(nil), regions...)
	sort.Strings(s.regions)
	s.regionSet = map[string]bool{}
	for _, r := range regions {
		s.regionSet[r] = true
	}
}

// LookupBackendService resolves a backend service by numeric id or name, for
// the IAP surface; region "" means global. project is an ID or a number.
func (s *Server) LookupBackendService(project, region, idOrName string) (name string, id uint64, ok bool) {
	p, found := s.c.Projects.Lookup(project)
	if !found {
		return "", 0, false
	}
	sp := specBackendServices
	if region != "" {
		sp = specRegionBackendServices
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.find(sp, p.ID, region, idOrName)
	if r == nil {
		return "", 0, false
	}
	return r.name, r.id, true
}

// route is a parsed request path.
type route struct {
	version   string // "v1" or "beta"
	project   string // as the caller wrote it
	region    string // "" = global
	spec      *spec  // nil for operations
	name      string // resource or operation name/id
	action    string // get list insert patch update delete aggregatedList wait
	methodKey string // compute.<collection>.<method>
}

func (rt *route) regional() bool { return rt.region != "" }

// scopePath is "global", "regions/R" or "zones/Z" for a scope ("", R or
// "zones/Z").
func scopePath(region string) string {
	switch {
	case region == "":
		return "global"
	case isZone(region):
		return region
	}
	return "regions/" + region
}

func (s *Server) parseRoute(r *http.Request) (*route, error) {
	path := r.URL.Path
	rt := &route{}
	switch {
	case strings.HasPrefix(path, "/compute/v1/"):
		rt.version, path = "v1", strings.TrimPrefix(path, "/compute/v1/")
	case strings.HasPrefix(path, "/compute/beta/"):
		rt.version, path = "beta", strings.TrimPrefix(path, "/compute/beta/")
	default:
		return nil, noRoute(r.Method, r.URL.Path)
	}
	segs := strings.Split(path, "/")
	for _, sg := range segs {
		if sg == "" {
			return nil, noRoute(r.Method, r.URL.Path)
		}
	}
	if len(segs) < 3 || segs[0] != "projects" {
		return nil, noRoute(r.Method, r.URL.Path)
	}
	rt.project, segs = segs[1], segs[2:]
	switch {
	case segs[0] == "aggregated" && len(segs) == 2 && segs[1] == "backendServices" && r.Method == http.MethodGet:
		rt.spec, rt.action = specBackendServices, "aggregatedList"
		rt.methodKey = "compute.backendServices.aggregatedList"
		return rt, nil
	case segs[0] == "global" && len(segs) >= 2:
		segs = segs[1:]
	case segs[0] == "regions" && len(segs) >= 3:
		rt.region, segs = segs[1], segs[2:]
	case segs[0] == "zones" && len(segs) >= 3:
		rt.region, segs = "zones/"+segs[1], segs[2:]
	default:
		return nil, noRoute(r.Method, r.URL.Path)
	}
	if segs[0] == "operations" {
		coll := "compute.globalOperations."
		switch {
		case isZone(rt.region):
			coll = "compute.zoneOperations."
		case rt.regional():
			coll = "compute.regionOperations."
		}
		switch {
		case len(segs) == 2 && r.Method == http.MethodGet:
			rt.action = "get"
		case len(segs) == 3 && segs[2] == "wait" && r.Method == http.MethodPost:
			rt.action = "wait"
		default:
			return nil, noRoute(r.Method, r.URL.Path)
		}
		rt.name, rt.methodKey = segs[1], coll+rt.action
		return rt, nil
	}
	sp := specFor(segs[0], rt.region)
	if sp == nil {
		return nil, noRoute(r.Method, r.URL.Path)
	}
	rt.spec = sp
	switch {
	case len(segs) == 1 && r.Method == http.MethodGet:
		rt.action = "list"
	case len(segs) == 1 && r.Method == http.MethodPost:
		rt.action = "insert"
	case len(segs) == 3 && r.Method == http.MethodPost && (segs[2] == "setLabels" || segs[2] == "setTarget" ||
		segs[2] == "addSignedUrlKey" || segs[2] == "deleteSignedUrlKey"):
		rt.name, rt.action = segs[1], segs[2]
	case len(segs) == 2:
		rt.name = segs[1]
		switch r.Method {
		case http.MethodGet:
			rt.action = "get"
		case http.MethodPatch:
			rt.action = "patch"
		case http.MethodPut:
			rt.action = "update"
		case http.MethodDelete:
			rt.action = "delete"
		}
	}
	if rt.action == "" || !sp.methods[rt.action] {
		return nil, noRoute(r.Method, r.URL.Path)
	}
	rt.methodKey = "compute." + sp.collection + "." + rt.action
	return rt, nil
}

// maxBody bounds request bodies.
const maxBody = 4 << 20

// ServeHTTP serves paths under /compute/v1/ and /compute/beta/ (the full
// request path, not stripped).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// Last line of defence: a bug must surface as a 500 with a log
		// line, not a dropped connection.
		if v := recover(); v != nil {
			s.c.Log.Error("compute emulator panic", slog.String("path", r.URL.Path), slog.Any("panic", v))
			core.WriteHTTPError(w, internal(fmt.Errorf("emulator panic: %v", v)))
		}
	}()
	r = core.WithHTTPCaller(r)
	rt, err := s.parseRoute(r)
	if err != nil {
		core.WriteHTTPError(w, err)
		return
	}
	if err := s.c.Begin(r.Context(), rt.methodKey); err != nil {
		core.WriteHTTPError(w, err)
		return
	}
	p, ok := s.c.Projects.Lookup(rt.project)
	if !ok {
		// Compute answers an unknown project with 404 notFound (a project the
		// caller cannot see would be 403; the emulator has no IAM).
		core.WriteHTTPError(w, notFound("projects/"+rt.project))
		return
	}
	s.mu.Lock()
	s.ensureDefaultNetwork(p)
	s.mu.Unlock()
	if rt.regional() && !s.knownRegion(rt.region) {
		core.WriteHTTPError(w, notFound("projects/"+rt.project+"/"+scopePath(rt.region)))
		return
	}
	var body []byte
	if rt.action == "insert" || rt.action == "patch" || rt.action == "update" || rt.action == "setLabels" || rt.action == "setTarget" ||
		rt.action == "addSignedUrlKey" {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				core.WriteHTTPError(w, badPayload("Request body too large."))
				return
			}
			core.WriteHTTPError(w, badPayload("Unreadable request body."))
			return
		}
	}
	req := &request{s: s, r: r, rt: rt, p: p, body: body}
	var out any
	switch rt.action {
	case "get":
		if rt.spec == nil {
			out, err = req.getOperation()
		} else {
			out, err = req.get()
		}
	case "wait":
		out, err = req.getOperation()
	case "list":
		out, err = req.list()
	case "aggregatedList":
		out, err = req.aggregatedList()
	case "insert", "patch", "update", "delete", "setLabels", "setTarget", "addSignedUrlKey", "deleteSignedUrlKey":
		out, err = req.mutate()
		if err != nil {
			req.auditRejected(err)
		}
	}
	if err != nil {
		var ce *core.Error
		if !errors.As(err, &ce) {
			s.c.Log.Error("compute emulator internal error", slog.String("method", rt.methodKey), slog.Any("err", err))
		}
		core.WriteHTTPError(w, err)
		return
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		core.WriteHTTPError(w, internal(err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// knownRegion reports whether scope r (a region or "zones/Z") exists: a
// zone is a known region's name and a letter a-f (the emulator's
// approximation of Google's zone list).
func (s *Server) knownRegion(r string) bool {
	if z, ok := strings.CutPrefix(r, "zones/"); ok {
		i := strings.LastIndex(z, "-")
		if i < 0 || len(z)-i != 2 || z[i+1] < 'a' || z[i+1] > 'f' {
			return false
		}
		r = z[:i]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.regionSet[r]
}

// request carries one call through its handler.
type request struct {
	s    *Server
	r    *http.Request
	rt   *route
	p    core.Project
	body []byte
}

// relName is "projects/P/global/backendServices/N" with P as the caller
// wrote it (Compute echoes the caller's form in messages and audit entries).
// auditRejected writes the Admin Activity entry of a mutation Compute
// refused (a stale fingerprint, an invalid or conflicting request): severity
// ERROR, status, and a response of @type type.googleapis.com/error holding
// the error envelope, with no operation member since none started (as
// Compute logs rejected calls; the failed-operation sample in
// internal/auditsamples/testdata shows the status shape). The caller's
// request body is not logged, only its @type.
func (q *request) auditRejected(err error) {
	ce, ok := core.AuditableRejection(err)
	if !ok || q.rt.spec == nil {
		return
	}
	sp, rt := q.rt.spec, q.rt
	name := rt.name
	if rt.action == "insert" {
		var b struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(q.body, &b)
		name = b.Name
	}
	location := rt.region
	if location == "" {
		location = "global"
	}
	q.s.c.Audit.Record(core.Record{
		Ctx: q.r.Context(), Project: q.p, ServiceName: "compute.googleapis.com",
		MethodName:   rt.version + ".compute." + sp.collection + "." + rt.action,
		ResourceName: q.relName(name), Location: location,
		Permission: sp.perm + "." + permVerb(rt.action), PermissionResourceType: sp.perm,
		Request:        map[string]any{"@type": "type.googleapis.com/compute." + sp.collection + "." + rt.action},
		Response:       map[string]any{"@type": "type.googleapis.com/error", "error": ce.Envelope()},
		ResourceType:   sp.auditType,
		ResourceLabels: map[string]string{"project_id": q.p.ID},
		Err:            ce,
	})
}

func (q *request) relName(name string) string {
	return "projects/" + q.rt.project + "/" + scopePath(q.rt.region) + "/" + q.rt.spec.segment + "/" + name
}

// --- storage helpers (s.mu held) ---

func relPath(sp *spec, projectID, region, name string) string {
	return "projects/" + projectID + "/" + scopePath(region) + "/" + sp.segment + "/" + name
}

func (r *resource) rel() string      { return relPath(r.spec, r.project.ID, r.region, r.name) }
func (r *resource) selfLink() string { return linkBase + r.rel() }

// ensureDefaultNetwork gives project p, on first sight, the auto-mode VPC
// network "default" a new Google project starts with (unless the
// organisation policy constraints/compute.skipDefaultNetworkCreation is
// enforced; its per-region subnetworks are not modelled). s.mu held.
func (s *Server) ensureDefaultNetwork(p core.Project) {
	if s.defaulted[p.ID] {
		return
	}
	s.defaulted[p.ID] = true
	r := &resource{spec: specNetworks, project: p, name: "default", id: core.ID(), created: s.c.Now(),
		obj: &compute.Network{AutoCreateSubnetworks: true, Description: "Default network for the project",
			NetworkFirewallPolicyEnforcementOrder: "AFTER_CLASSIC_FIREWALL",
			RoutingConfig:                         &compute.NetworkRoutingConfig{RoutingMode: "REGIONAL", BgpBestPathSelectionMode: "LEGACY"}}}
	setOutputs(r, true)
	s.res[resKey{specNetworks.collection, p.ID, "", "default"}] = r
}

// find looks a resource up by name or numeric id.
func (s *Server) find(sp *spec, projectID, region, nameOrID string) *resource {
	if r := s.res[resKey{sp.collection, projectID, region, nameOrID}]; r != nil {
		return r
	}
	if nameOrID == "" || nameOrID[0] < '1' || nameOrID[0] > '9' {
		return nil
	}
	for k, r := range s.res {
		if k.coll == sp.collection && k.project == projectID && k.region == region && formatID(r.id) == nameOrID {
			return r
		}
	}
	return nil
}

// all returns the resources of sp in one project and scope, by name.
func (s *Server) all(sp *spec, projectID, region string) []*resource {
	var out []*resource
	for k, r := range s.res {
		if k.coll == sp.collection && k.project == projectID && k.region == region {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// users lists the resources (any project) whose references include rel,
// sorted by self link.
func (s *Server) users(rel string) []*resource {
	var out []*resource
	for _, r := range s.res {
		if r.spec.refs == nil {
			continue
		}
		for _, ref := range r.spec.refs(r.obj) {
			if relOf(ref) == rel {
				out = append(out, r)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rel() < out[j].rel() })
	return out
}

// render returns a copy of r's object as GET shows it: derived usedBy and
// the zero-valued defaults Google prints.
func (s *Server) render(r *resource) (any, error) {
	cp := r.spec.newObj()
	b, err := json.Marshal(r.obj)
	if err != nil {
		return nil, internal(err)
	}
	if err := json.Unmarshal(b, cp); err != nil {
		return nil, internal(err)
	}
	switch o := cp.(type) {
	case *compute.BackendService:
		for _, u := range s.users(r.rel()) {
			o.UsedBy = append(o.UsedBy, &compute.BackendServiceUsedBy{Reference: u.selfLink()})
		}
	case *compute.Network:
		// A network lists its subnetworks (recorded traffic).
		for _, u := range s.users(r.rel()) {
			if u.spec == specSubnetworks {
				o.Subnetworks = append(o.Subnetworks, u.selfLink())
			}
		}
	}
	if r.spec.decorate != nil {
		r.spec.decorate(cp)
	}
	return cp, nil
}

// --- small utilities ---

func newFingerprint() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}

var pacific = func() *time.Location {
	if l, err := time.LoadLocation("America/Los_Angeles"); err == nil {
		return l
	}
	return time.FixedZone("PST", -8*3600)
}()

// timestamp formats t as Compute does: "2024-10-18T07:34:16.035-07:00".
func timestamp(t time.Time) string { return t.In(pacific).Format("2006-01-02T15:04:05.000-07:00") }

// field access on compute/v1 structs by Go field name.
func setField(obj any, field string, v any) {
	f := reflect.ValueOf(obj).Elem().FieldByName(field)
	if f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(v))
	}
}

func getString(obj any, field string) string {
	f := reflect.ValueOf(obj).Elem().FieldByName(field)
	if f.IsValid() && f.Kind() == reflect.String {
		return f.String()
	}
	return ""
}

func hasField(obj any, field string) bool {
	return reflect.ValueOf(obj).Elem().FieldByName(field).IsValid()
}
