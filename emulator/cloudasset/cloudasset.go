// Package cloudasset emulates the part of Cloud Asset Inventory API v1 that
// iapguard uses: google.cloud.asset.v1.AssetService.SearchAllResources over
// gRPC, for Cloud Run services (asset type run.googleapis.com/Service), fed
// by the Cloud Run emulator's changes. The official client
// (cloud.google.com/go/asset/apiv1) works against it unchanged.
//
// What it serves, and where it differs from Google:
//
//   - scope: projects/{ID or NUMBER}, folders/{N}, organizations/{N}
//     [DOC assetpb SearchAllResourcesRequest.scope]. A scope the emulator
//     does not know → PERMISSION_DENIED (Google does not tell an unknown
//     scope from one the caller may not search) [INFER].
//   - asset_types: exactly ["run.googleapis.com/Service"]. Google searches
//     every supported type when it is empty and accepts RE2 patterns; the
//     emulator indexes Cloud Run services only, so anything else →
//     INVALID_ARGUMENT rather than a quietly partial answer.
//   - query: only the forms iapguard sends — empty (every service),
//     labels.KEY:* (the label is present) and labels.KEY:VALUE or
//     labels.KEY=VALUE (the label has that value) — [DOC assetpb
//     SearchAllResourcesRequest.query: "labels.env:prod", "labels.env:*"].
//     Every other query → INVALID_ARGUMENT (Google accepts a much richer
//     language: free text, NOT, OR, location:, state:, ...).
//   - page_size: ≤ 0 → 100, capped at 500 [DOC assetpb page_size: "Page
//     size is capped at 500 even if a larger value is given"]. page_token
//     must come from the same request (all other fields equal but
//     page_size, which AIP-158 lets change) [DOC].
//     order_by must be empty (results come sorted by name).
//   - read_mask: empty, "*", or a subset of the default fields (name,
//     assetType, project, folders, organization, displayName, location,
//     labels, createTime, updateTime, state, parentFullResourceName,
//     parentAssetType); versionedResources and other large fields →
//     INVALID_ARGUMENT (not served).
//   - result names: //run.googleapis.com/projects/PROJECT_ID/locations/
//     REGION/services/NAME (Cloud Asset's naming table), project
//     "projects/NUMBER", folders from the project up, organization.
//   - index lag: a change to a service shows in search results only
//     Options.IndexLag after it was stored (Google: "minutes"; the index is
//     eventually consistent). Deleted services vanish after the same lag,
//     and once their deletion is visible the index forgets them (Google's
//     index holds no deleted resources): memory is bounded by the live
//     services plus the changes of the last lag. A lag raised later does
//     not bring back services whose deletion was already visible.
//   - quotas [DOC cloud.google.com/asset-inventory/docs/quota]:
//     SearchAllResources 400 per minute per consumer project and 1,500 per
//     minute per organisation. The emulator has one consumer (no
//     credentials); the organisation is the scope's. Exhausted →
//     RESOURCE_EXHAUSTED with a quota message [message INFER].
//   - permissions: none are checked; Google needs
//     cloudasset.assets.searchAllResources on the scope.
//   - the service being disabled is not emulated by default; SetDisabled
//     makes every call fail as Google does for a consumer project without
//     the API: PERMISSION_DENIED, reason SERVICE_DISABLED.
package cloudasset

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/asset/apiv1/assetpb"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iapguard/iapguard/emulator/cloudrun"
	"github.com/iapguard/iapguard/emulator/core"
)

// Method is the method key of SearchAllResources.
const Method = "google.cloud.asset.v1.AssetService.SearchAllResources"

// ServiceAssetType is the Cloud Asset type of Cloud Run services.
const ServiceAssetType = "run.googleapis.com/Service"

// Google's documented default quotas for SearchAllResources
// (cloud.google.com/asset-inventory/docs/quota).
const (
	DefaultProjectQuotaPerMinute = 400
	DefaultOrgQuotaPerMinute     = 1500
)

const (
	defaultPageSize = 100
	maxPageSize     = 500
)

// Options configures the emulated Cloud Asset Inventory.
type Options struct {
	// IndexLag is how long after a change it shows in search results
	// (default 0: at once).
	IndexLag time.Duration
	// ProjectQuotaPerMinute and OrgQuotaPerMinute limit SearchAllResources
	// per consumer project and per organisation (0: Google's defaults, 400
	// and 1,500; negative: unlimited).
	ProjectQuotaPerMinute int
	OrgQuotaPerMinute     int
}

// version is one indexed state of a service.
type version struct {
	at      time.Time
	deleted bool
	ch      cloudrun.Change
}

type tombstone struct {
	key string
	at  time.Time
}

// Server is the emulated AssetService. Safe for concurrent use.
type Server struct {
	assetpb.UnimplementedAssetServiceServer

	c *core.Core

	mu       sync.Mutex
	lag      time.Duration
	disabled bool
	hist     map[string][]version // key: projectID/region/id; oldest first
	// gone are deletions in the order they happened, each dropped with
	// its service's history once it is visible.
	gone     []tombstone
	projQ    *rate.Limiter // nil: unlimited
	orgPerM  float64       // per second; 0: unlimited
	orgBurst int
	orgQ     map[string]*rate.Limiter
}

// New returns an AssetService indexing run's services from now on (and the
// ones run already holds, visible at once).
func New(c *core.Core, run *cloudrun.Server, opts Options) *Server {
	s := &Server{c: c, lag: opts.IndexLag, hist: map[string][]version{}, orgQ: map[string]*rate.Limiter{}}
	s.setQuotas(perSecond(opts.ProjectQuotaPerMinute, DefaultProjectQuotaPerMinute), burst(opts.ProjectQuotaPerMinute, DefaultProjectQuotaPerMinute),
		perSecond(opts.OrgQuotaPerMinute, DefaultOrgQuotaPerMinute), burst(opts.OrgQuotaPerMinute, DefaultOrgQuotaPerMinute))
	run.Each(func(ch cloudrun.Change) {
		ch.At = time.Time{} // already there: indexed long ago
		s.record(ch)
	})
	run.Watch(s.record)
	return s
}

func perSecond(perMinute, def int) float64 {
	switch {
	case perMinute == 0:
		return float64(def) / 60
	case perMinute < 0:
		return 0
	}
	return float64(perMinute) / 60
}

func burst(perMinute, def int) int {
	if perMinute == 0 {
		return def
	}
	return max(perMinute, 0)
}

// Register registers the AssetService on g.
func (s *Server) Register(g *grpc.Server) { assetpb.RegisterAssetServiceServer(g, s) }

// SetIndexLag changes how long changes take to show in search results.
func (s *Server) SetIndexLag(d time.Duration) {
	s.mu.Lock()
	s.lag = max(d, 0)
	s.mu.Unlock()
}

// SetDisabled turns the API off (or on again) for every caller, as for a
// consumer project where cloudasset.googleapis.com is not enabled.
func (s *Server) SetDisabled(off bool) {
	s.mu.Lock()
	s.disabled = off
	s.mu.Unlock()
}

// SetQuotaRate sets both quotas as per-second rates with bursts, for
// benchmarks that cannot wait minutes (0 rate: unlimited).
func (s *Server) SetQuotaRate(projectPerSecond float64, projectBurst int, orgPerSecond float64, orgBurst int) {
	s.setQuotas(projectPerSecond, projectBurst, orgPerSecond, orgBurst)
}

func (s *Server) setQuotas(pps float64, pb int, ops float64, ob int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projQ = nil
	if pps > 0 {
		s.projQ = rate.NewLimiter(rate.Limit(pps), max(pb, 1))
	}
	s.orgPerM, s.orgBurst = ops, max(ob, 1)
	s.orgQ = map[string]*rate.Limiter{}
}

// record stores one change (a cloudrun watcher: called under Cloud Run's
// lock, so it only appends).
func (s *Server) record(ch cloudrun.Change) {
	key := ch.Project.ID + "/" + ch.Region + "/" + ch.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := append(s.hist[key], version{at: ch.At, deleted: ch.Deleted, ch: ch})
	// Keep the newest version that is already visible and every later one.
	cut := ch.At.Add(-s.lag)
	keep := 0
	for i, v := range vs {
		if !v.at.After(cut) {
			keep = i
		}
	}
	s.hist[key] = vs[keep:]
	if ch.Deleted {
		s.gone = append(s.gone, tombstone{key, ch.At})
	}
	s.forgetLocked(s.c.Now().Add(-s.lag))
}

// forgetLocked drops the services whose deletion is visible at cut (now
// minus the lag), unless they were created again since.
func (s *Server) forgetLocked(cut time.Time) {
	n := 0
	for n < len(s.gone) && !s.gone[n].at.After(cut) {
		g := s.gone[n]
		if vs := s.hist[g.key]; len(vs) > 0 && vs[len(vs)-1].deleted && vs[len(vs)-1].at.Equal(g.at) {
			delete(s.hist, g.key)
		}
		n++
	}
	if n > 0 {
		s.gone = slices.Delete(s.gone, 0, n)
	}
}

// Tracked is how many services the index holds: live ones, and deleted
// ones whose deletion is not visible yet (a bound on its memory).
func (s *Server) Tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(s.c.Now().Add(-s.lag))
	return len(s.hist)
}

// ancestry returns the folders (nearest first) and organisation of p.
func (s *Server) ancestry(p core.Project) (folders []string, org string) {
	parent := p.Parent
	for i := 0; i < 32 && parent != ""; i++ {
		if strings.HasPrefix(parent, "organizations/") {
			return folders, parent
		}
		folders = append(folders, parent)
		f, ok := s.c.Projects.Folder(strings.TrimPrefix(parent, "folders/"))
		if !ok {
			return folders, ""
		}
		parent = f.Parent
	}
	return folders, ""
}

var (
	labelQueryRE = regexp.MustCompile(`^labels\.([a-z][a-z0-9_-]{0,62})(:|=)(\*|[\p{Ll}\p{Lo}0-9_-]{0,63})$`)
	scopeRE      = regexp.MustCompile(`^(projects/[a-z0-9.:-]{1,100}|folders/[0-9]{1,20}|organizations/[0-9]{1,20})$`)
)

// defaultFields are the result fields returned without a read_mask
// [DOC assetpb read_mask], the only ones the emulator fills.
var defaultFields = map[string]bool{
	"name": true, "assetType": true, "project": true, "folders": true, "organization": true,
	"displayName": true, "description": true, "location": true, "labels": true, "tags": true,
	"networkTags": true, "kmsKeys": true, "createTime": true, "updateTime": true, "state": true,
	"additionalAttributes": true, "parentFullResourceName": true, "parentAssetType": true,
	"asset_type": true, "display_name": true, "network_tags": true, "kms_keys": true, "create_time": true,
	"update_time": true, "additional_attributes": true, "parent_full_resource_name": true, "parent_asset_type": true,
}

type filter struct {
	key, value string // value "*": present
	all        bool
}

func (f filter) match(labels map[string]string) bool {
	if f.all {
		return true
	}
	v, ok := labels[f.key]
	return ok && (f.value == "*" || v == f.value)
}

func invalid(format string, args ...any) error {
	return core.Errorf(codes.InvalidArgument, format, args...)
}

func parseQuery(q string) (filter, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return filter{all: true}, nil
	}
	m := labelQueryRE.FindStringSubmatch(q)
	if m == nil || (m[2] == "=" && m[3] == "*") {
		return filter{}, invalid("query: %q is not supported by the emulator: it serves \"\", labels.KEY:*, labels.KEY:VALUE and labels.KEY=VALUE", q)
	}
	return filter{key: m[1], value: m[3]}, nil
}

// inScope reports whether p lies in scope (already validated).
func (s *Server) inScope(scope string, p core.Project) bool {
	kind, id, _ := strings.Cut(scope, "/")
	switch kind {
	case "projects":
		return p.ID == id || p.NumberString() == id
	case "folders":
		fs, _ := s.ancestry(p)
		return slices.Contains(fs, scope)
	}
	_, org := s.ancestry(p)
	return org == scope
}

// checkScope validates scope and returns its organisation ("" if none).
func (s *Server) checkScope(scope string) (string, error) {
	if !scopeRE.MatchString(scope) {
		return "", invalid("scope: %q is not a valid scope; want projects/{PROJECT_ID}, projects/{PROJECT_NUMBER}, folders/{FOLDER_NUMBER} or organizations/{ORGANIZATION_NUMBER}", scope)
	}
	denied := core.Errorf(codes.PermissionDenied, "The caller does not have permission")
	kind, id, _ := strings.Cut(scope, "/")
	switch kind {
	case "projects":
		p, ok := s.c.Projects.Lookup(id)
		if !ok {
			return "", denied
		}
		_, org := s.ancestry(p)
		return org, nil
	case "folders":
		if _, ok := s.c.Projects.Folder(id); !ok {
			return "", denied
		}
		for _, p := range s.c.Projects.All() {
			if fs, org := s.ancestry(p); slices.Contains(fs, scope) {
				return org, nil
			}
		}
		// A folder with no project below: find its organisation upwards.
		f, _ := s.c.Projects.Folder(id)
		_, org := s.ancestry(core.Project{Parent: f.Parent})
		return org, nil
	}
	for _, p := range s.c.Projects.All() {
		if _, org := s.ancestry(p); org == scope {
			return org, nil
		}
	}
	for _, f := range s.c.Projects.Folders() {
		if _, org := s.ancestry(core.Project{Parent: f.Parent}); org == scope {
			return org, nil
		}
	}
	return "", denied
}

// requestHash binds a page token to the request's other fields.
func requestHash(req *assetpb.SearchAllResourcesRequest) string {
	h := sha256.New()
	// page_size may change from page to page (AIP-158; the client's Pager
	// asks for what its page still lacks).
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", req.GetScope(), req.GetQuery(),
		strings.Join(req.GetAssetTypes(), ","), req.GetOrderBy(), strings.Join(req.GetReadMask().GetPaths(), ","))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func encodeToken(hash, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(hash + "\x00" + after))
}

func decodeToken(tok, hash string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	h, after, ok := strings.Cut(string(b), "\x00")
	return after, ok && h == hash
}

// SearchAllResources searches the indexed Cloud Run services of a scope.
// Permission on Google: cloudasset.assets.searchAllResources on the scope.
func (s *Server) SearchAllResources(_ context.Context, req *assetpb.SearchAllResourcesRequest) (*assetpb.SearchAllResourcesResponse, error) {
	s.mu.Lock()
	disabled := s.disabled
	s.mu.Unlock()
	if disabled {
		st, _ := status.New(codes.PermissionDenied, "Cloud Asset API has not been used in this project before or it is disabled. Enable it by visiting the API library, then retry.").
			WithDetails(&errdetails.ErrorInfo{Reason: "SERVICE_DISABLED", Domain: "googleapis.com",
				Metadata: map[string]string{"service": "cloudasset.googleapis.com"}})
		return nil, st.Err()
	}
	org, err := s.checkScope(req.GetScope())
	if err != nil {
		return nil, err
	}
	if !slices.Equal(req.GetAssetTypes(), []string{ServiceAssetType}) {
		return nil, invalid("asset_types: %q is not supported by the emulator: it indexes only [%q]", req.GetAssetTypes(), ServiceAssetType)
	}
	f, err := parseQuery(req.GetQuery())
	if err != nil {
		return nil, err
	}
	if req.GetOrderBy() != "" {
		return nil, invalid("order_by: %q is not supported by the emulator (results come sorted by name)", req.GetOrderBy())
	}
	for _, p := range req.GetReadMask().GetPaths() {
		if p != "*" && !defaultFields[p] {
			return nil, invalid("read_mask: field %q is not supported by the emulator", p)
		}
	}
	size := int(req.GetPageSize())
	switch {
	case size <= 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	hash := requestHash(req)
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		var ok bool
		if after, ok = decodeToken(tok, hash); !ok {
			return nil, invalid("page_token: %q is not a page token of this request (every other field must be identical)", tok)
		}
	}
	if err := s.takeQuota(org); err != nil {
		return nil, err
	}

	now := s.c.Now()
	type hit struct {
		name string
		ch   cloudrun.Change
	}
	var hits []hit
	s.mu.Lock()
	cut := now.Add(-s.lag)
	s.forgetLocked(cut)
	for _, vs := range s.hist {
		var cur *version
		for i := range vs {
			if !vs[i].at.After(cut) {
				cur = &vs[i]
			}
		}
		if cur == nil || cur.deleted || !f.match(cur.ch.Labels) || !s.inScope(req.GetScope(), cur.ch.Project) {
			continue
		}
		name := "//run.googleapis.com/projects/" + cur.ch.Project.ID + "/locations/" + cur.ch.Region + "/services/" + cur.ch.ID
		if name > after {
			hits = append(hits, hit{name, cur.ch})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(hits, func(a, b hit) int { return strings.Compare(a.name, b.name) })

	resp := &assetpb.SearchAllResourcesResponse{}
	if len(hits) > size {
		hits = hits[:size]
		resp.NextPageToken = encodeToken(hash, hits[size-1].name)
	}
	for _, h := range hits {
		folders, porg := s.ancestry(h.ch.Project)
		resp.Results = append(resp.Results, &assetpb.ResourceSearchResult{
			Name: h.name, AssetType: ServiceAssetType, Project: "projects/" + h.ch.Project.NumberString(),
			Folders: folders, Organization: porg, DisplayName: h.ch.ID, Location: h.ch.Region,
			Labels: maps.Clone(h.ch.Labels), CreateTime: timestamppb.New(h.ch.CreateTime),
			UpdateTime: timestamppb.New(h.ch.UpdateTime), State: "ACTIVE",
			ParentFullResourceName: "//cloudresourcemanager.googleapis.com/projects/" + h.ch.Project.NumberString(),
			ParentAssetType:        "cloudresourcemanager.googleapis.com/Project",
		})
	}
	return resp, nil
}

// takeQuota charges one call to the consumer project's and the
// organisation's quotas.
func (s *Server) takeQuota(org string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.projQ != nil && !s.projQ.Allow() {
		return quotaError("per minute per project")
	}
	if org != "" && s.orgPerM > 0 {
		l := s.orgQ[org]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(s.orgPerM), s.orgBurst)
			s.orgQ[org] = l
		}
		if !l.Allow() {
			return quotaError("per minute per organization")
		}
	}
	return nil
}

func quotaError(limit string) error {
	return &core.Error{Code: codes.ResourceExhausted, Reason: "RATE_LIMIT_EXCEEDED",
		Message: "Quota exceeded for quota metric 'SearchAllResources requests' and limit 'SearchAllResources requests " + limit + "' of service 'cloudasset.googleapis.com'."}
}
