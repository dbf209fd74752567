package iapsetup

import (
	"errors"
	"fmt"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"strings"
)

// errUnsafeWrite marks a write the apply path refused because it would
// weaken protection or touch something iapguard does not own. It always
// indicates a bug in iapguard, never a state of the world; it is permanent.
var errUnsafeWrite = errors.New("refused unsafe write")

func unsafeWrite(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnsafeWrite, fmt.Sprintf(format, args...))
}

// checkServiceUpdate refuses an update that would loosen ingress, drop or
// change an annotation other than adding the managed marker and recording
// access grants (accessAnnotation: valid, non-public members only), target
// another service, or be sent without the etag of the service it was
// computed from.
// (Turning IAP off and disabling the invoker IAM check cannot be expressed
// by ServiceUpdate at all.)
func checkServiceUpdate(before *Service, u *ServiceUpdate) error {
	if before == nil || u == nil {
		return unsafeWrite("service update without the service it was computed from")
	}
	if u.Ref != before.Ref {
		return unsafeWrite("update for %s computed from %s", u.Ref, before.Ref)
	}
	if u.Etag == "" || u.Etag != before.Etag {
		return unsafeWrite("update of %s without the etag of the read it was computed from", u.Ref)
	}
	if u.Ingress != "" {
		if ingressStrictness(u.Ingress) < ingressStrictness(ingressInternalLoadBalancer) {
			return unsafeWrite("ingress of %s to %s", u.Ref, u.Ingress)
		}
		if ingressStrictness(u.Ingress) < ingressStrictness(before.Ingress) {
			return unsafeWrite("ingress of %s loosened from %s to %s", u.Ref, before.Ingress, u.Ingress)
		}
	}
	if u.Annotations != nil {
		for k, v := range before.Annotations {
			if k == accessAnnotation {
				continue
			}
			if got, ok := u.Annotations[k]; k == managedAnnotation && ok && isManagedMarker(got) {
				continue // an unsigned or stale marker replaced by a signed one
			} else if !ok || got != v {
				return unsafeWrite("annotation %q of %s changed or removed", k, u.Ref)
			}
		}
		for k, v := range u.Annotations {
			if k == accessAnnotation {
				if old, ok := before.Annotations[k]; ok && old == v {
					continue // kept as it was (possibly a record iapguard does not trust)
				}
				if err := checkGrantedAnnotation(v); err != nil {
					return unsafeWrite("annotation %s of %s: %v", accessAnnotation, u.Ref, err)
				}
				continue
			}
			if _, ok := before.Annotations[k]; !ok && (k != managedAnnotation || !isManagedMarker(v)) {
				return unsafeWrite("annotation %q=%q added to %s", k, v, u.Ref)
			}
		}
	}
	return nil
}

// checkGrantedAnnotation accepts exactly what formatRecord renders: a
// record of canonical, non-public members sorted per known IAP resource,
// bounded in size, signed or not (the signature itself is checked when the
// record is read, not here: the guard holds no key).
func checkGrantedAnnotation(v string) error {
	if len(v) > maxAccessAnnotation {
		return fmt.Errorf("value of %d bytes exceeds %d", len(v), maxAccessAnnotation)
	}
	if v == "" {
		return errors.New("empty value (the annotation is removed instead)")
	}
	r, err := parseRecord(v)
	if err != nil {
		return err
	}
	if len(r.Granted)+len(r.Pending) == 0 {
		return errors.New("a record with no entry (the annotation is removed instead)")
	}
	if r.Key == "" && formatRecord("", r.Granted, r.Pending, nil) != v {
		return errors.New("record not in canonical form")
	}
	return nil
}

// checkAccessWrite refuses an IAP policy write unless, compared with the
// policy it was computed from, it only adds members of the service's access
// policy (wanted) to an unconditional roles/iap.httpsResourceAccessor
// binding and removes from such bindings only members iapguard recorded as
// granted (granted) that the policy no longer lists. It must carry the
// read's etag and never add allUsers or allAuthenticatedUsers.
func checkAccessWrite(before, after *Policy, wanted, granted []string) error {
	if err := checkPolicyBase("IAP policy", before, after); err != nil {
		return err
	}
	bg, ag := grants(before), grants(after)
	for g := range bg {
		if ag[g] {
			continue
		}
		if g.role != roleAccessor || g.cond != "" {
			return unsafeWrite("IAP policy write removes %s from %s", g.member, g.role)
		}
		if !containsMember(granted, g.member) {
			return unsafeWrite("IAP policy write removes %s, which iapguard did not grant", g.member)
		}
		if containsMember(wanted, g.member) {
			return unsafeWrite("IAP policy write removes %s, which the access policy lists", g.member)
		}
	}
	for g := range ag {
		if bg[g] {
			continue
		}
		if isPublic(g.member) {
			return unsafeWrite("IAP policy write adds %s: iapguard never makes IAP public", g.member)
		}
		if g.role != roleAccessor || g.cond != "" {
			return unsafeWrite("IAP policy write adds %s to %s", g.member, g.role)
		}
		if c, err := access.CanonicalMember(g.member); err != nil || !containsMember(wanted, c) {
			return unsafeWrite("IAP policy write adds %s, which the access policy does not list", g.member)
		}
	}
	return checkBindings(after)
}

// checkPolicyBase refuses a write of after (what: "policy" or "IAP
// policy") unless both policies are there, after carries before's etag and
// does not lower its version.
func checkPolicyBase(what string, before, after *Policy) error {
	if before == nil || after == nil {
		return unsafeWrite("%s write without the policy it was computed from", what)
	}
	if len(after.Etag) == 0 || string(after.Etag) != string(before.Etag) {
		return unsafeWrite("%s write without the etag of the read it was computed from", what)
	}
	if after.Version < before.Version {
		return unsafeWrite("%s version lowered from %d to %d", what, before.Version, after.Version)
	}
	return nil
}

// checkBindings refuses a policy with a conditional binding below version
// 3 or a binding without a role.
func checkBindings(p *Policy) error {
	for _, b := range p.Bindings {
		if b.Condition != nil && p.Version < 3 {
			return unsafeWrite("conditional binding in a version %d policy", p.Version)
		}
		if strings.TrimSpace(b.Role) == "" {
			return unsafeWrite("binding without a role")
		}
	}
	return nil
}

type grant struct {
	role, cond, member string
}

func grants(p *Policy) map[grant]bool {
	out := map[grant]bool{}
	for _, b := range p.Bindings {
		cond := ""
		if b.Condition != nil {
			c := b.Condition
			cond = c.Title + "\x00" + c.Description + "\x00" + c.Expression + "\x00" + c.Location
		}
		for _, m := range b.Members {
			out[grant{b.Role, cond, m}] = true
		}
	}
	return out
}

// checkPolicyWrite refuses a policy write unless, compared with the policy it
// was computed from, it only adds agent to an unconditional roles/run.invoker
// binding and removes allUsers/allAuthenticatedUsers from roles/run.invoker
// bindings; it must carry the read's etag, and leave no public invoker.
func checkPolicyWrite(before, after *Policy, agent string) error {
	if err := checkPolicyBase("policy", before, after); err != nil {
		return err
	}
	bg, ag := grants(before), grants(after)
	for g := range bg {
		if ag[g] {
			continue
		}
		if g.role == roleInvoker && isPublic(g.member) {
			continue
		}
		return unsafeWrite("policy write removes %s from %s", g.member, g.role)
	}
	for g := range ag {
		if g.role == roleInvoker && isPublic(g.member) {
			return unsafeWrite("policy write leaves %s in %s", g.member, g.role)
		}
		if bg[g] {
			continue
		}
		if g.role == roleInvoker && g.cond == "" && isAgent(g.member, agent) {
			continue
		}
		return unsafeWrite("policy write adds %s to %s", g.member, g.role)
	}
	return checkBindings(after)
}

// checkBackendWrite refuses to enable IAP on a backend service with Cloud
// CDN (a conflict for a person to decide) or without its fingerprint.
func checkBackendWrite(b *BackendService) error {
	if b == nil {
		return unsafeWrite("backend write without the backend service it was computed from")
	}
	if b.EnableCDN {
		return unsafeWrite("IAP on %s, which has Cloud CDN enabled", b.Ref)
	}
	if b.Fingerprint == "" {
		return unsafeWrite("patch of %s without a fingerprint", b.Ref)
	}
	return nil
}
