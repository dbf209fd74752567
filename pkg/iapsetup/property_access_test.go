package iapsetup_test

// The access half of the never-weaken property (issue #19): random access
// labels, access records (none, a plain list, a genuinely signed record, a
// forged one) and accessor members on every IAP resource; the check that
// iapguard never revokes a member it did not grant.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
)

const (
	propKeyName = "projects/123456789012/secrets/iapguard-record-key/versions/1"
	propNumber  = "123456789012"
)

var (
	propKey       = []byte("property-test access-record key!")
	propAccessors = []string{"group:web@example.com", "user:a@example.com", "user:boss@example.com", "user:eve@example.com"}
	propPolicies  = map[string][]string{"web-users": {"group:web@example.com", "user:a@example.com"}, "admins": {"user:eve@example.com"}}
)

// propAccess is the access part of a case.
type propAccess struct {
	// accessors: IAP resource → members holding the accessor role.
	accessors map[string][]string
	// record is the kind of access record: "", "plain", "signed", "forged";
	// recorded are its entries.
	record   string
	recorded map[string][]string
}

// propIAPResources are the IAP resources that may guard the service.
func propIAPResources(c *propCase) []string {
	ref := iapsetup.ServiceRef{Project: propProject, Region: propRegion, Name: c.name}
	out := []string{iapsetup.CloudRunIAPResource(propNumber, ref)}
	for _, be := range c.backends {
		out = append(out, iapsetup.BackendIAPResource(propNumber, iapsetup.BackendService{Ref: iapsetup.BackendRef{Project: propProject, Region: be.region, Name: be.name}}))
	}
	return out
}

func propSubset(r *rand.Rand, xs []string) []string {
	var out []string
	for _, x := range xs {
		if r.IntN(2) == 0 {
			out = append(out, x)
		}
	}
	return out
}

// propGenAccess adds access labels, records and accessors to c.
func propGenAccess(r *rand.Rand, c *propCase) {
	c.access = propAccess{accessors: map[string][]string{}, recorded: map[string][]string{}}
	if r.IntN(2) == 0 {
		c.labels[access.LabelKey] = propPick(r, "web-users", "admins")
	}
	for _, res := range propIAPResources(c) {
		c.access.accessors[res] = propSubset(r, propAccessors)
	}
	c.access.record = propPick(r, "", "plain", "signed", "forged")
	if c.access.record == "" {
		return
	}
	for _, res := range propIAPResources(c) {
		if ms := propSubset(r, propAccessors); len(ms) > 0 {
			slices.Sort(ms)
			c.access.recorded[res] = ms
		}
	}
	if len(c.access.recorded) == 0 {
		c.access.record = ""
		return
	}
	if c.annotations == nil {
		c.annotations = map[string]string{}
	}
	service := "projects/" + propProject + "/locations/" + propRegion + "/services/" + c.name
	switch c.access.record {
	case "plain":
		var all []string
		for _, ms := range c.access.recorded {
			all = append(all, ms...)
		}
		slices.Sort(all)
		c.annotations[iapsetup.AccessAnnotation] = strings.Join(slices.Compact(all), ",")
	case "signed", "forged":
		entries, _ := json.Marshal(c.access.recorded)
		h := hmac.New(sha256.New, propKey)
		h.Write([]byte("iapguard.dev/access-granted v1\n" + service + "\n"))
		h.Write(entries)
		mac := base64.RawURLEncoding.EncodeToString(h.Sum(nil))
		if c.access.record == "forged" {
			mac = strings.Repeat("A", len(mac))
		}
		rec, _ := json.Marshal(map[string]any{"granted": c.access.recorded, "key": propKeyName, "mac": mac})
		c.annotations[iapsetup.AccessAnnotation] = string(rec)
	}
}

// trusted reports whether a verified record of c lists member on res.
func (a propAccess) trusted(res, member string) bool {
	return a.record == "signed" && slices.Contains(a.recorded[res], member)
}

// GetIAPPolicy and SetIAPPolicy serve the accessor policies in memory.
func (m *propCloud) GetIAPPolicy(_ context.Context, res string) (*iapsetup.Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	p, ok := m.iap[res]
	if !ok {
		p = &iapsetup.Policy{Version: 1, Etag: []byte(m.etag())}
		m.iap[res] = p
	}
	return propClonePolicy(p), nil
}

func (m *propCloud) SetIAPPolicy(_ context.Context, res string, p *iapsetup.Policy) (*iapsetup.Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fault(); err != nil {
		return nil, err
	}
	cur := m.iap[res]
	if cur == nil || string(cur.Etag) != string(p.Etag) {
		return nil, gcp.Classify(status.Error(codes.Aborted, "There were concurrent policy changes."))
	}
	m.writes++
	before, after := propAccessorsOf(cur), propAccessorsOf(p)
	for _, mem := range after {
		if !slices.Contains(before, mem) {
			m.iapGranted[res] = append(m.iapGranted[res], mem)
		}
	}
	for _, mem := range before {
		if !slices.Contains(after, mem) {
			m.iapRevoked = append(m.iapRevoked, propGrant{role: res, member: mem})
		}
	}
	np := propClonePolicy(p)
	np.Etag = []byte(m.etag())
	m.iap[res] = np
	return propClonePolicy(np), nil
}

func propAccessorsOf(p *iapsetup.Policy) []string {
	var out []string
	for _, b := range p.Bindings {
		if b.Role == iapsetup.RoleAccessor && b.Condition == nil {
			out = append(out, b.Members...)
		}
	}
	return out
}

// RecordKey serves the access-record key.
func (m *propCloud) RecordKey(_ context.Context, version string) (string, []byte, error) {
	if version != "" && version != propKeyName {
		return "", nil, fmt.Errorf("secret version %s not found", version)
	}
	return propKeyName, propKey, nil
}

// propCheckAccess: iapguard never revokes a member it did not grant — one
// a verified record lists on that resource, or one it granted during the
// run — and grants only members of the policy the label names.
func propCheckAccess(c *propCase, m *propCloud) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var bad []string
	for _, g := range m.iapRevoked {
		res, mem := g.role, g.member
		if !c.access.trusted(res, mem) && !slices.Contains(m.iapGranted[res], mem) {
			bad = append(bad, fmt.Sprintf("revoked %s on %s, which iapguard did not grant (record %q)", mem, res, c.access.record))
		}
	}
	want := propPolicies[c.labels[access.LabelKey]]
	for res, ms := range m.iapGranted {
		for _, mem := range ms {
			if !slices.Contains(want, mem) {
				bad = append(bad, fmt.Sprintf("granted %s on %s, which the access policy does not list", mem, res))
			}
		}
	}
	return bad
}
