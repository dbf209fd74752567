// Package iapapi emulates the IAM part of the Identity-Aware Proxy API v1
// (getIamPolicy, setIamPolicy, testIamPermissions) for the IAP web
// resources iapguard manages. The official client google.golang.org/api/iap/v1
// works against it unchanged with option.WithEndpoint("http://ADDR/") and
// option.WithoutAuthentication().
//
// Routes (method keys for core.Begin in parentheses), RESOURCE being one of
// the names below:
//
//	POST v1/{RESOURCE}:getIamPolicy        (iap.getIamPolicy)
//	POST v1/{RESOURCE}:setIamPolicy        (iap.setIamPolicy)
//	POST v1/{RESOURCE}:testIamPermissions  (iap.testIamPermissions)
//
// Resources (PROJECT is the project number or ID; both address the same
// policy):
//
//	projects/PROJECT/iap_web                                       (iap.web.*)
//	projects/PROJECT/iap_web/compute                               (iap.webTypes.*)
//	projects/PROJECT/iap_web/compute-REGION                        (iap.webTypes.*)
//	projects/PROJECT/iap_web/cloud_run-REGION                      (iap.webTypes.*)
//	projects/PROJECT/iap_web/compute/services/ID_OR_NAME           (iap.webServices.*)
//	projects/PROJECT/iap_web/compute-REGION/services/ID_OR_NAME    (iap.webServices.*)
//	projects/PROJECT/iap_web/cloud_run-REGION/services/NAME        (iap.webServices.*)
//
// Google requires iap.<kind>.getIamPolicy / setIamPolicy on the resource; the
// emulator checks no permissions. Backend services are resolved through a
// BackendLookup and Cloud Run services through a RunLookup on every call, so
// a policy disappears with its resource (a re-created backend service gets a
// new id and an empty policy) and the backend service id and name address
// the same policy.
//
// Policy semantics follow Cloud IAM: setIamPolicy replaces the whole policy;
// an empty etag overwrites blindly, a stale one fails with 409 ABORTED
// ("There were concurrent policy changes..."); every write returns a new
// etag; a policy never set reads as {"etag":"ACAB"}. Members need a type
// prefix (user:, serviceAccount:, group:, domain:, principal://, ...) and
// roles must be roles/* or custom role names, else 400 INVALID_ARGUMENT.
// Conditional bindings need policy version 3.
//
// Where the emulator differs from Google:
//   - Unknown resources (including App Engine iap_web/appengine-* names)
//     answer 404 NOT_FOUND. Unknown projects answer 403 PERMISSION_DENIED
//     "Permission denied on resource project X.", as Google does.
//   - Bindings are normalised (members de-duplicated and sorted, bindings
//     without members dropped, bindings sorted by role); Google normalises
//     similarly but not necessarily identically.
//   - testIamPermissions grants every iap.* permission unless a filter is
//     installed with SetPermissionFilter; other permissions are never granted.
//   - The setIamPolicy audit entry uses serviceName iap.googleapis.com and
//     methodName google.cloud.iap.v1.IdentityAwareProxyAdminService.SetIamPolicy
//     (as listed in Google's IAP audit-logging documentation); its resource
//     type (audited_resource) and field set are inferred, and it carries no
//     serviceData policy delta (core.Record has no such field).
package iapapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

// Names used for accounting and audit entries.
const (
	ServiceName          = "iap.googleapis.com"
	MethodSetIamPolicy   = "google.cloud.iap.v1.IdentityAwareProxyAdminService.SetIamPolicy"
	KeyGetIamPolicy      = "iap.getIamPolicy"
	KeySetIamPolicy      = "iap.setIamPolicy"
	KeyTestIamPermission = "iap.testIamPermissions"

	// ConcurrentChangeMessage is the ABORTED message for a stale etag.
	ConcurrentChangeMessage = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."

	emptyEtag = "ACAB"
	prefix    = "/v1/"
)

// BackendLookup resolves backend services for IAP resource names. project is
// the project ID; region is "" for global backend services. It reports the
// service's name and numeric id when it exists.
type BackendLookup interface {
	LookupBackendService(project, region, idOrName string) (name string, id uint64, ok bool)
}

// RunLookup reports whether a Cloud Run service exists. project is the
// project ID.
type RunLookup interface {
	ServiceExists(project, region, name string) bool
}

// Server serves IAP v1 IAM under /v1/.
type Server struct {
	c   *core.Core
	b   BackendLookup
	run RunLookup

	mu       sync.Mutex
	policies map[string]*policy // canonical resource name → policy
	allow    func(principal, resource, permission string) bool
}

// New returns an IAP server. b and r may be nil: resources of that kind are
// then never found.
func New(c *core.Core, b BackendLookup, r RunLookup) *Server {
	return &Server{c: c, b: b, run: r, policies: map[string]*policy{}}
}

// SetPermissionFilter replaces the testIamPermissions decision: f reports
// whether principal holds permission on resource (the name as requested).
// nil restores the default (every iap.* permission is granted).
func (s *Server) SetPermissionFilter(f func(principal, resource, permission string) bool) {
	s.mu.Lock()
	s.allow = f
	s.mu.Unlock()
}

// Policy returns a copy of the policy stored for resource (any accepted
// form) as the API would return it, and whether the resource exists.
func (s *Server) Policy(resource string) (Policy, bool) {
	res, err := s.resolve(resource)
	if err != nil {
		return Policy{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policyLocked(res.key).wire(), true
}

// Policy is google.iam.v1.Policy as JSON.
type Policy struct {
	Version  int64     `json:"version,omitempty"`
	Bindings []Binding `json:"bindings,omitempty"`
	Etag     string    `json:"etag,omitempty"`
}

// Binding is one role binding.
type Binding struct {
	Role      string   `json:"role"`
	Members   []string `json:"members,omitempty"`
	Condition *Expr    `json:"condition,omitempty"`
}

// Expr is a binding condition (google.type.Expr).
type Expr struct {
	Expression  string `json:"expression,omitempty"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	Location    string `json:"location,omitempty"`
}

type policy struct {
	version  int64
	bindings []Binding
	etag     string
}

func (p *policy) wire() Policy {
	out := Policy{Etag: p.etag}
	if len(p.bindings) > 0 {
		out.Version = p.version
		out.Bindings = cloneBindings(p.bindings)
	}
	return out
}

func cloneBindings(bs []Binding) []Binding {
	out := make([]Binding, len(bs))
	for i, b := range bs {
		out[i] = Binding{Role: b.Role, Members: slices.Clone(b.Members)}
		if b.Condition != nil {
			c := *b.Condition
			out[i].Condition = &c
		}
	}
	return out
}

// policyLocked returns the stored policy or the empty one; callers hold s.mu.
func (s *Server) policyLocked(key string) *policy {
	if p, ok := s.policies[key]; ok {
		return p
	}
	return &policy{etag: emptyEtag}
}

// resource is a resolved IAP resource name.
type resource struct {
	name    string // as requested
	key     string // canonical: project number, backend service id
	kind    string // "web", "webTypes", "webServices" (permission infix)
	project core.Project
}

var (
	typeRe    = regexp.MustCompile(`^(compute|compute-([a-z0-9-]+)|cloud_run-([a-z0-9-]+))$`)
	segmentRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

func (s *Server) resolve(name string) (resource, error) {
	notFound := core.Errorf(codes.NotFound, "Resource %s not found.", name)
	parts := strings.Split(name, "/")
	if len(parts) < 3 || parts[0] != "projects" || parts[2] != "iap_web" {
		return resource{}, notFound
	}
	p, ok := s.c.Projects.Lookup(parts[1])
	if !ok {
		return resource{}, core.UnknownProject(parts[1])
	}
	base := "projects/" + p.NumberString() + "/iap_web"
	res := resource{name: name, project: p}
	switch len(parts) {
	case 3:
		res.key, res.kind = base, "web"
		return res, nil
	case 4, 6:
	default:
		return resource{}, notFound
	}
	m := typeRe.FindStringSubmatch(parts[3])
	if m == nil {
		return resource{}, notFound
	}
	typ := parts[3]
	if len(parts) == 4 {
		res.key, res.kind = base+"/"+typ, "webTypes"
		return res, nil
	}
	if parts[4] != "services" || !segmentRe.MatchString(parts[5]) {
		return resource{}, notFound
	}
	svc := parts[5]
	res.kind = "webServices"
	switch {
	case m[3] != "": // cloud_run-REGION
		if s.run == nil || !s.run.ServiceExists(p.ID, m[3], svc) {
			return resource{}, notFound
		}
		res.key = base + "/" + typ + "/services/" + svc
	default: // compute or compute-REGION
		if s.b == nil {
			return resource{}, notFound
		}
		_, id, ok := s.b.LookupBackendService(p.ID, m[2], svc)
		if !ok {
			return resource{}, notFound
		}
		res.key = fmt.Sprintf("%s/%s/services/%d", base, typ, id)
	}
	return res, nil
}

// ServeHTTP routes IAP requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = core.WithHTTPCaller(r)
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	i := strings.LastIndex(rest, ":")
	if !ok || i < 0 || r.Method != http.MethodPost {
		notFoundURL(w, r)
		return
	}
	name, verb := rest[:i], rest[i+1:]
	var key string
	var serve func(http.ResponseWriter, *http.Request, resource, []byte) error
	switch verb {
	case "getIamPolicy":
		key, serve = KeyGetIamPolicy, s.getIamPolicy
	case "setIamPolicy":
		key, serve = KeySetIamPolicy, s.setIamPolicy
	case "testIamPermissions":
		key, serve = KeyTestIamPermission, s.testIamPermissions
	default:
		notFoundURL(w, r)
		return
	}
	if err := s.c.Begin(r.Context(), key); err != nil {
		core.WriteHTTPError(w, err)
		return
	}
	err := func() error {
		// Every method takes its request in the body ("*"): a query
		// parameter other than Google's system ones binds to nothing.
		if _, err := core.BindQuery(r.URL.Query()); err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return core.Errorf(codes.InvalidArgument, "reading request body: %v", err)
		}
		res, err := s.resolve(name)
		if err != nil {
			return err
		}
		err = serve(w, r, res, body)
		if ce, ok := core.AuditableRejection(err); ok && key == KeySetIamPolicy {
			// A refused setIamPolicy is logged as a failed call: severity
			// ERROR and its status, no response.
			s.c.Audit.Record(core.Record{
				Ctx: r.Context(), Project: res.project, ServiceName: ServiceName, MethodName: MethodSetIamPolicy,
				ResourceName: res.name, Permission: "iap." + res.kind + ".setIamPolicy",
				Request:      map[string]any{"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest", "resource": res.name},
				ResourceType: "audited_resource",
				ResourceLabels: map[string]string{
					"service": ServiceName, "method": MethodSetIamPolicy, "project_id": res.project.ID,
				},
				Err: ce,
			})
		}
		return err
	}()
	if err != nil {
		core.WriteHTTPError(w, err)
	}
}

func notFoundURL(w http.ResponseWriter, r *http.Request) {
	core.Errorf(codes.NotFound, "The requested URL %s was not found on this server.", r.URL.Path).WriteJSON(w)
}

// decode parses a JSON request body strictly, as Google does ("Invalid JSON
// payload received. Unknown name ...").
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return core.Errorf(codes.InvalidArgument, "Invalid JSON payload received. %v", err)
	}
	return nil
}

func (s *Server) getIamPolicy(w http.ResponseWriter, _ *http.Request, res resource, body []byte) error {
	var req struct {
		Options *struct {
			RequestedPolicyVersion int64 `json:"requestedPolicyVersion"`
		} `json:"options"`
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Options != nil {
		switch req.Options.RequestedPolicyVersion {
		case 0, 1, 3:
		default:
			return core.Errorf(codes.InvalidArgument, "Invalid requested policy version %d: want 0, 1 or 3.", req.Options.RequestedPolicyVersion)
		}
	}
	s.mu.Lock()
	out := s.policyLocked(res.key).wire()
	s.mu.Unlock()
	if req.Options == nil || req.Options.RequestedPolicyVersion != 3 {
		// Below version 3 a conditional binding is shown without its
		// condition under ROLE_withcond_HASH, in a version 1 policy
		// (core.WithCondRole).
		for i, b := range out.Bindings {
			if c := b.Condition; c != nil {
				out.Bindings[i].Role = core.WithCondRole(b.Role, c.Expression, c.Title, c.Description)
				out.Bindings[i].Condition = nil
				out.Version = 1
			}
		}
	}
	writeJSON(w, out)
	return nil
}

func (s *Server) setIamPolicy(w http.ResponseWriter, r *http.Request, res resource, body []byte) error {
	var req struct {
		Policy *Policy `json:"policy"`
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Policy == nil {
		return core.Errorf(codes.InvalidArgument, "Request contains an invalid argument: policy is required.")
	}
	bindings, version, err := normalise(*req.Policy)
	if err != nil {
		return err
	}
	for _, b := range bindings {
		if err := s.c.Accounts.CheckMembers(b.Members...); err != nil {
			return err
		}
	}
	var sent []byte
	if req.Policy.Etag != "" {
		if sent, err = base64.StdEncoding.DecodeString(req.Policy.Etag); err != nil {
			return core.Errorf(codes.InvalidArgument, "Invalid etag %q: not base64.", req.Policy.Etag)
		}
	}

	s.mu.Lock()
	cur := s.policyLocked(res.key)
	if s.c.Faults.TakeRace(KeySetIamPolicy) {
		// A concurrent writer changed the policy just before this request.
		cur = &policy{version: cur.version, bindings: cur.bindings, etag: newEtag()}
		s.policies[res.key] = cur
	}
	if sent != nil {
		have, _ := base64.StdEncoding.DecodeString(cur.etag)
		if !bytes.Equal(sent, have) {
			s.mu.Unlock()
			return core.Errorf(codes.Aborted, "%s", ConcurrentChangeMessage)
		}
		if req.Policy.Version < 3 && slices.ContainsFunc(cur.bindings, func(b Binding) bool { return b.Condition != nil }) {
			s.mu.Unlock()
			return core.ErrV1OverConditions()
		}
	}
	next := &policy{version: version, bindings: bindings, etag: newEtag()}
	s.policies[res.key] = next
	out := next.wire()
	s.mu.Unlock()

	s.c.Audit.Record(core.Record{
		Ctx:          r.Context(),
		Project:      res.project,
		ServiceName:  ServiceName,
		MethodName:   MethodSetIamPolicy,
		ResourceName: res.name,
		Permission:   "iap." + res.kind + ".setIamPolicy",
		Request: map[string]any{
			"@type":    "type.googleapis.com/google.iam.v1.SetIamPolicyRequest",
			"resource": res.name,
			"policy":   core.JSONMap(Policy{Version: req.Policy.Version, Bindings: req.Policy.Bindings}, ""),
		},
		Response:     core.JSONMap(out, "type.googleapis.com/google.iam.v1.Policy"),
		ResourceType: "audited_resource",
		ResourceLabels: map[string]string{
			"service": ServiceName, "method": MethodSetIamPolicy, "project_id": res.project.ID,
		},
	})
	writeJSON(w, out)
	return nil
}

var permissionRe = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*\.[a-zA-Z0-9]+\.[a-zA-Z0-9]+$`)

func (s *Server) testIamPermissions(w http.ResponseWriter, r *http.Request, res resource, body []byte) error {
	var req struct {
		Permissions []string `json:"permissions"`
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	for _, p := range req.Permissions {
		if !permissionRe.MatchString(p) {
			return core.Errorf(codes.InvalidArgument, "Permission %s is not valid (wildcards are not allowed).", p)
		}
	}
	s.mu.Lock()
	allow := s.allow
	s.mu.Unlock()
	principal := s.c.PrincipalFrom(r.Context())
	var granted []string
	for _, p := range req.Permissions {
		ok := strings.HasPrefix(p, "iap.")
		if allow != nil {
			ok = allow(principal, res.name, p)
		}
		if ok && !slices.Contains(granted, p) {
			granted = append(granted, p)
		}
	}
	out := map[string]any{}
	if len(granted) > 0 {
		out["permissions"] = granted
	}
	writeJSON(w, out)
	return nil
}

var memberPrefixes = []string{
	"user:", "serviceAccount:", "group:", "domain:",
	"deleted:user:", "deleted:serviceAccount:", "deleted:group:",
	"projectOwner:", "projectEditor:", "projectViewer:",
	"principal://", "principalSet://",
}

func validMember(m string) bool {
	if m == "allUsers" || m == "allAuthenticatedUsers" {
		return true
	}
	for _, p := range memberPrefixes {
		if rest, ok := strings.CutPrefix(m, p); ok && rest != "" && !strings.ContainsAny(rest, " \t\n") {
			switch p {
			case "user:", "serviceAccount:", "group:":
				return strings.Count(rest, "@") == 1 && !strings.HasPrefix(rest, "@") && !strings.HasSuffix(rest, "@")
			}
			return true
		}
	}
	return false
}

// grantable are the predefined roles that carry iap.web* permissions, the
// ones IAM lets an iap_web resource's policy grant
// (cloud.google.com/iap/docs/managing-access#roles).
var grantable = core.NewGrantable(
	"roles/iap.httpsResourceAccessor", "roles/iap.admin", "roles/iap.settingsAdmin",
	"roles/iam.securityAdmin", "roles/iam.securityReviewer",
)

var roleRe = regexp.MustCompile(`^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+)$`)

// normalise validates p's bindings and returns them normalised, with the
// version to store.
func normalise(p Policy) ([]Binding, int64, error) {
	switch p.Version {
	case 0, 1, 3:
	default:
		return nil, 0, core.Errorf(codes.InvalidArgument, "Invalid policy version %d: want 0, 1 or 3.", p.Version)
	}
	var out []Binding
	conditional := false
	for _, b := range p.Bindings {
		if !roleRe.MatchString(b.Role) {
			return nil, 0, core.Errorf(codes.InvalidArgument, "Role %q is not a valid role name.", b.Role)
		}
		if err := grantable.Check(b.Role); err != nil {
			return nil, 0, err
		}
		var members []string
		for _, m := range b.Members {
			if !validMember(m) {
				return nil, 0, core.Errorf(codes.InvalidArgument,
					"The member %s is of an unknown type. Please set a valid type prefix for the member.", m)
			}
			if !slices.Contains(members, m) {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			continue
		}
		sort.Strings(members)
		nb := Binding{Role: b.Role, Members: members}
		if b.Condition != nil {
			if strings.TrimSpace(b.Condition.Expression) == "" {
				return nil, 0, core.Errorf(codes.InvalidArgument, "Condition of the binding for %s has no expression.", b.Role)
			}
			c := *b.Condition
			nb.Condition = &c
			conditional = true
		}
		out = append(out, nb)
	}
	if conditional && p.Version != 3 {
		return nil, 0, core.Errorf(codes.InvalidArgument, "Policies with conditional role bindings must use version 3.")
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Role < out[j].Role })
	version := p.Version
	if version == 0 {
		version = 1
	}
	return out, version, nil
}

// newEtag returns an opaque etag shaped like IAM's (8 bytes, base64).
func newEtag() string {
	b := make([]byte, 8)
	b[0] = 0x07
	for i := 1; i < len(b); i++ {
		b[i] = byte(rand.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}
