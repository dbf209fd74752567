package cloudrun

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/core"
)

// maxPolicyMembers is IAM's limit of principals per policy.
const maxPolicyMembers = 1500

// concurrentPolicyChange is IAM's message for a stale policy etag.
const concurrentPolicyChange = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."

var (
	roleRE   = regexp.MustCompile(`^(roles|(projects|organizations)/[^/\s]+/roles)/[A-Za-z0-9_.]+$`)
	memberRE = regexp.MustCompile(`^(allUsers|allAuthenticatedUsers` +
		`|(user|serviceAccount|group):[^@\s:]+@[^@\s]+\.[^@\s]+` +
		`|deleted:(user|serviceAccount|group):[^@\s:]+@[^@\s]+\?uid=[0-9]+` +
		`|domain:[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+` +
		`|principal(Set)?://\S+` +
		`|project(Owner|Editor|Viewer):[a-z0-9][a-z0-9.:-]*)$`)
)

// grantable are the predefined roles that carry Cloud Run service
// permissions (run.services.*, run.routes.invoke): the ones IAM lets a
// service's policy grant (cloud.google.com/run/docs/reference/iam/roles).
var grantable = core.NewGrantable(
	"roles/run.admin", "roles/run.developer", "roles/run.viewer", "roles/run.invoker",
	"roles/run.servicesInvoker", "roles/run.sourceViewer", "roles/run.sourceDeveloper",
	"roles/iam.securityAdmin", "roles/iam.securityReviewer",
)

// normalisePolicy validates p and returns it the way IAM stores it: bindings
// with the same role and condition merged, members deduplicated and sorted,
// bindings sorted by role, empty bindings dropped, version 3 when a binding
// has a condition and 1 otherwise. The etag is not set.
func normalisePolicy(p *iampb.Policy) (*iampb.Policy, error) {
	if p == nil {
		return nil, invalid("policy: required field is not set")
	}
	switch p.GetVersion() {
	case 0, 1, 3:
	default:
		return nil, invalid("policy.version: must be 0, 1 or 3, got %d", p.GetVersion())
	}
	if len(p.GetAuditConfigs()) > 0 {
		return nil, invalid("policy.audit_configs: audit configs are not supported on Cloud Run services")
	}
	type key struct{ role, cond string }
	merged := map[key]*iampb.Binding{}
	var order []key
	total, conditional := 0, false
	for i, b := range p.GetBindings() {
		if !roleRE.MatchString(b.GetRole()) {
			return nil, invalid("policy.bindings[%d].role: %q is not a valid role; want roles/{role}, projects/{project}/roles/{role} or organizations/{org}/roles/{role}", i, b.GetRole())
		}
		if err := grantable.Check(b.GetRole()); err != nil {
			return nil, err
		}
		for j, m := range b.GetMembers() {
			if !memberRE.MatchString(m) {
				return nil, invalid("policy.bindings[%d].members[%d]: invalid member %q; want allUsers, allAuthenticatedUsers, user:EMAIL, serviceAccount:EMAIL, group:EMAIL, domain:DOMAIN or principal://...", i, j, m)
			}
		}
		k := key{role: b.GetRole()}
		if c := b.GetCondition(); c != nil {
			if strings.TrimSpace(c.GetExpression()) == "" {
				return nil, invalid("policy.bindings[%d].condition.expression: required field is not set", i)
			}
			if p.GetVersion() != 3 {
				return nil, invalid("policy.bindings[%d].condition: conditional role bindings require policy version 3", i)
			}
			conditional = true
			cb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
			k.cond = string(cb)
		}
		if merged[k] == nil {
			merged[k] = &iampb.Binding{Role: b.GetRole(), Condition: proto.CloneOf(b.GetCondition())}
			order = append(order, k)
		}
		merged[k].Members = append(merged[k].Members, b.GetMembers()...)
	}
	out := &iampb.Policy{Version: 1}
	if conditional {
		out.Version = 3
	}
	for _, k := range order {
		b := merged[k]
		sort.Strings(b.Members)
		b.Members = slices.Compact(b.Members)
		if len(b.Members) == 0 {
			continue
		}
		total += len(b.Members)
		out.Bindings = append(out.Bindings, b)
	}
	if total > maxPolicyMembers {
		return nil, invalid("policy: at most %d principals are allowed, got %d", maxPolicyMembers, total)
	}
	sort.SliceStable(out.Bindings, func(i, j int) bool { return out.Bindings[i].Role < out.Bindings[j].Role })
	return out, nil
}

// GetIamPolicy returns the service's IAM policy. Permission: run.services.getIamPolicy.
func (s *Server) GetIamPolicy(_ context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	ref, err := s.parseServiceName("resource", req.GetResource())
	if err != nil {
		return nil, err
	}
	switch v := req.GetOptions().GetRequestedPolicyVersion(); v {
	case 0, 1, 3:
	default:
		return nil, invalid("options.requested_policy_version: must be 0, 1 or 3, got %d", v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.services[ref.key()]
	if e == nil {
		return nil, notFound(ref)
	}
	return formatPolicy(e.policy, req.GetOptions().GetRequestedPolicyVersion()), nil
}

// formatPolicy returns p as a reader asking for requested sees it: a
// policy with conditional bindings read below version 3 comes back as
// version 1 with each condition dropped and its role renamed
// ROLE_withcond_HASH (core.WithCondRole); the response may use a lower
// version than requested (GetPolicyOptions.requested_policy_version).
func formatPolicy(p *iampb.Policy, requested int32) *iampb.Policy {
	out := proto.CloneOf(p)
	if requested == 3 {
		return out
	}
	for _, b := range out.GetBindings() {
		if c := b.GetCondition(); c != nil {
			b.Role = core.WithCondRole(b.GetRole(), c.GetExpression(), c.GetTitle(), c.GetDescription())
			b.Condition = nil
			out.Version = 1
		}
	}
	return out
}

func hasConditions(p *iampb.Policy) bool {
	for _, b := range p.GetBindings() {
		if b.GetCondition() != nil {
			return true
		}
	}
	return false
}

// SetIamPolicy replaces the service's IAM policy. A policy etag that is not
// the current one → ABORTED; no etag → blind overwrite. update_mask may name
// bindings, etag and version (default: bindings, etag). Permission:
// run.services.setIamPolicy.
func (s *Server) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (_ *iampb.Policy, err error) {
	defer func() {
		s.auditRejected(ctx, methodSetIAM, "run.services.setIamPolicy", req.GetResource(), req, "google.iam.v1.SetIamPolicyRequest", err)
	}()
	ref, err := s.parseServiceName("resource", req.GetResource())
	if err != nil {
		return nil, err
	}
	for _, p := range req.GetUpdateMask().GetPaths() {
		switch p {
		case "bindings", "etag", "version", "audit_configs": // proto names only (see fieldByName)
		default:
			return nil, invalid("update_mask: unknown or unsupported policy field path %q", p)
		}
	}
	np, err := normalisePolicy(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	for _, b := range np.GetBindings() {
		if err := s.c.Accounts.CheckMembers(b.GetMembers()...); err != nil {
			return nil, err
		}
	}

	s.mu.Lock()
	e := s.services[ref.key()]
	if e == nil {
		s.mu.Unlock()
		return nil, notFound(ref)
	}
	if etag := req.GetPolicy().GetEtag(); len(etag) > 0 {
		if s.c.Faults.TakeRace(methodSetIAM) {
			e.policy.Etag = newPolicyEtag()
		}
		if !bytes.Equal(etag, e.policy.GetEtag()) {
			s.mu.Unlock()
			return nil, core.Errorf(codes.Aborted, concurrentPolicyChange)
		}
		if req.GetPolicy().GetVersion() < 3 && hasConditions(e.policy) {
			s.mu.Unlock()
			return nil, core.ErrV1OverConditions()
		}
	}
	if paths := req.GetUpdateMask().GetPaths(); len(paths) > 0 && !slices.Contains(paths, "bindings") {
		// Bindings not masked: keep the stored ones.
		np.Bindings = proto.CloneOf(e.policy).GetBindings()
		np.Version = max(e.policy.GetVersion(), 1)
	}
	np.Etag = newPolicyEtag()
	e.policy = np
	out := proto.CloneOf(np)
	s.mu.Unlock()

	s.audit(ctx, methodSetIAM, "run.services.setIamPolicy", ref, "", req, "google.iam.v1.SetIamPolicyRequest", out, "google.iam.v1.Policy")
	return out, nil
}

// TestIamPermissions returns the requested permissions that are Cloud Run's
// (run.*): the emulator grants every caller everything.
func (s *Server) TestIamPermissions(_ context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	ref, err := s.parseServiceName("resource", req.GetResource())
	if err != nil {
		return nil, err
	}
	for i, p := range req.GetPermissions() {
		if strings.Contains(p, "*") {
			return nil, invalid("permissions[%d]: permissions with wildcards (such as '*' or 'run.*') are not allowed, got %q", i, p)
		}
	}
	s.mu.Lock()
	exists := s.services[ref.key()] != nil
	s.mu.Unlock()
	if !exists {
		return nil, notFound(ref)
	}
	out := &iampb.TestIamPermissionsResponse{}
	for _, p := range req.GetPermissions() {
		if strings.HasPrefix(p, "run.") && !slices.Contains(out.Permissions, p) {
			out.Permissions = append(out.Permissions, p)
		}
	}
	return out, nil
}
