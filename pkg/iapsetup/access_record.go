package iapsetup

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/iapguard/iapguard/internal/boundedre"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/iapsetup/internal/cache"
)

// The access record (accessAnnotation) says which members iapguard granted
// roles/iap.httpsResourceAccessor on which IAP resource. Anyone who may
// update the service (run.services.update) can write the annotation, so a
// record is trusted only when it carries a valid HMAC-SHA256 over the
// service's resource name and its entries, with a key only iapguard reads:
// a Secret Manager secret version (RecordKeys). iapguard revokes a member
// only where a verified record says it granted it, on that IAP resource. A
// record that does not verify (no signature, a signature that does not
// match, a key version that cannot be read) is reported, never acted on,
// and replaced by a signed record of what iapguard grants from then on.
//
// Residual risk: an editor can put back an earlier record of the same
// service that iapguard itself signed; it lists only members iapguard once
// granted on the resources named in it.
//
// The value is JSON: {"granted":{RESOURCE:[MEMBER...]},"key":VERSION,
// "mac":BASE64URL}. An unsigned record (no key configured) has neither key
// nor mac and is never trusted.

// RecordKeys reads the key that signs access records: the payload of a
// Secret Manager secret version (needs secretmanager.versions.access on
// the secret). internal/gcp implements it over the official client.
type RecordKeys interface {
	// RecordKey returns the key of version, a full secret version name;
	// version "" means the configured signing version (which may end in
	// versions/latest). name is the version resolved to its number.
	RecordKey(ctx context.Context, version string) (name string, key []byte, err error)
}

// recordKey is one key version.
type recordKey struct {
	name string
	key  []byte
}

// minRecordKeyBytes is the shortest record key accepted (HMAC-SHA256: 32
// bytes of randomness; e.g. head -c 32 /dev/urandom).
const minRecordKeyBytes = 32

// recordKeyTTL is how long a key version is cached. The signing version
// ("latest") is re-read after it, so a rotation takes effect within it.
const recordKeyTTL = 10 * time.Minute

// secretVersionRE matches the version names records may cite.
// (project at most 63 characters, secret 255, version 20 digits).
var secretVersionRE = boundedre.MustCompile(`^projects/([a-z0-9-]+)/secrets/([a-zA-Z0-9_-]+)/versions/([0-9]+)$`, 0, 63, 255, 20)

// iapResourceRE matches the IAP resource names records may cite.
// (project number at most 20 digits, region 40 characters, service 63).
var iapResourceRE = boundedre.MustCompile(`^projects/([0-9]+)/iap_web/(?:cloud_run-([a-z0-9-]+)|compute|compute-([a-z0-9-]+))/services/([a-zA-Z0-9_-]+)$`, 0, 20, 40, 40, 63)

// accessRecord is the decoded annotation.
type accessRecord struct {
	Granted map[string][]string `json:"granted"`
	// Pending are grants iapguard is about to make: written (signed)
	// before the IAP write, confirmed (moved to Granted) after it. A
	// pending member found holding the role is iapguard's own grant whose
	// confirmation was lost (a crash, a failed service update).
	Pending map[string][]string `json:"pending,omitempty"`
	Key     string              `json:"key,omitempty"`
	MAC     string              `json:"mac,omitempty"`
}

// recordState is what the reconcile learned about the service's record.
type recordState struct {
	// granted: IAP resource → members, from a verified record (empty
	// without a record); pending: its grants recorded as intended.
	granted map[string][]string
	pending map[string][]string
	// unverified holds the entries of a record found but not verified,
	// and why; iapguard does not act on them.
	unverified map[string][]string
	why        string
	// unsigned: the record is well formed but carries no signature (as
	// iapguard writes it when no key is configured).
	unsigned bool
	// sign is the key to sign the new record with; nil: none configured
	// (the record is written unsigned and never trusted); signErr: the key
	// could not be read (access writes are not made).
	sign    *recordKey
	signErr error
}

// recordMembers returns every member of m, sorted and distinct (record
// members are canonical: equal if the same).
func recordMembers(m map[string][]string) []string {
	all := slices.Concat(slices.Collect(maps.Values(m))...)
	slices.Sort(all)
	return slices.Compact(all)
}

// parseRecord decodes an annotation value strictly: canonical members,
// known IAP resource names, a cited key version of the right form.
func parseRecord(v string) (*accessRecord, error) {
	if !strings.HasPrefix(v, "{") {
		return nil, errors.New("not a signed record (a plain member list, written by an older iapguard or by hand)")
	}
	if len(v) > maxAccessAnnotation {
		return nil, fmt.Errorf("record of %d bytes exceeds %d", len(v), maxAccessAnnotation)
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	var r accessRecord
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("malformed record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed record: trailing data")
	}
	for _, entries := range []map[string][]string{r.Granted, r.Pending} {
		for res, ms := range entries {
			if !iapResourceRE.MatchString(res) {
				return nil, fmt.Errorf("record names %q, which is not an IAP resource iapguard grants on", res)
			}
			if len(ms) == 0 || len(ms) > access.MaxMembers {
				return nil, fmt.Errorf("record lists %d members on %s", len(ms), res)
			}
			for i, m := range ms {
				c, err := access.CanonicalMember(m)
				if err != nil || c != m {
					return nil, fmt.Errorf("record member %q is not canonical", m)
				}
				if i > 0 && ms[i-1] >= m {
					return nil, errors.New("record members not sorted or not distinct")
				}
			}
		}
	}
	if (r.Key == "") != (r.MAC == "") || r.Key != "" && !secretVersionRE.MatchString(r.Key) {
		return nil, errors.New("record key or signature malformed")
	}
	return &r, nil
}

// recordMAC is HMAC-SHA256 over the service name and the canonical entries
// (the pending ones, when there are any, after a separator).
func recordMAC(key []byte, service string, granted, pending map[string][]string) string {
	entries, _ := json.Marshal(canonicalEntries(granted)) // maps marshal in key order
	h := hmac.New(sha256.New, key)
	h.Write([]byte("iapguard.dev/access-granted v1\n" + service + "\n"))
	h.Write(entries)
	if p := canonicalEntries(pending); len(p) > 0 {
		pe, _ := json.Marshal(p)
		h.Write([]byte("\npending\n"))
		h.Write(pe)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// mergeEntries returns the union of two record entry maps.
func mergeEntries(a, b map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, m := range []map[string][]string{a, b} {
		for res, ms := range m {
			out[res] = append(out[res], ms...)
		}
	}
	return canonicalEntries(out) // sorted and distinct: members are canonical
}

// canonicalEntries drops empty entries and sorts members.
func canonicalEntries(m map[string][]string) map[string][]string {
	out := map[string][]string{}
	for res, ms := range m {
		if len(ms) == 0 {
			continue
		}
		c := slices.Clone(ms)
		sort.Strings(c)
		out[res] = slices.Compact(c)
	}
	return out
}

// formatRecord renders the annotation value for granted and pending (grants
// recorded as intended), signed with k (unsigned with k nil); "" when
// nothing is recorded.
func formatRecord(service string, granted, pending map[string][]string, k *recordKey) string {
	g, pd := canonicalEntries(granted), canonicalEntries(pending)
	if len(g)+len(pd) == 0 {
		return ""
	}
	r := accessRecord{Granted: g}
	if len(pd) > 0 {
		r.Pending = pd
	}
	if k != nil {
		r.Key, r.MAC = k.name, recordMAC(k.key, service, g, pd)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(r)
	return strings.TrimSuffix(b.String(), "\n")
}

// errNoRecordKey: no RecordKeys dependency is configured.
var errNoRecordKey = errors.New("no access-record key is configured (IAPGUARD_RECORD_KEY)")

// readRecord verifies the service's record and fetches the signing key.
// Keys come from the cache (one AccessSecretVersion per version per
// recordKeyTTL).
func (r *Reconciler) readRecord(ctx context.Context, service string, raw string) *recordState {
	var sign *recordKey
	var signErr error
	if r.keys != nil {
		k, err := r.keys.Get(ctx, "")
		if err != nil {
			signErr = fmt.Errorf("reading the access-record key: %w", err)
		} else {
			sign = &k
		}
	}
	lookup := func(version string) (recordKey, error) {
		if r.keys == nil {
			return recordKey{}, errNoRecordKey
		}
		if sign != nil && version == sign.name {
			return *sign, nil
		}
		return r.keys.Get(ctx, version)
	}
	return verifyRecord(service, raw, lookup, sign, signErr)
}

// verifyRecord is pure but for lookup, which returns a key version: it
// decides which entries of the record raw of service are trusted.
func verifyRecord(service, raw string, lookup func(version string) (recordKey, error), sign *recordKey, signErr error) *recordState {
	st := &recordState{granted: map[string][]string{}, sign: sign, signErr: signErr}
	if raw == "" {
		return st
	}
	unverified := func(entries map[string][]string, why string) *recordState {
		st.unverified, st.why = entries, why
		return st
	}
	rec, err := parseRecord(raw)
	switch {
	case err != nil:
		legacy := map[string][]string{}
		if ms := parseGranted(raw); len(ms) > 0 && !strings.HasPrefix(raw, "{") {
			legacy["(resource not recorded)"] = ms
		}
		return unverified(legacy, err.Error())
	case rec.MAC == "":
		st.unsigned = true
		return unverified(mergeEntries(rec.Granted, rec.Pending), "the record is not signed (no access-record key was configured when it was written)")
	}
	k, err := lookup(rec.Key)
	switch {
	case errors.Is(err, errNoRecordKey):
		return unverified(mergeEntries(rec.Granted, rec.Pending), err.Error()+", so the record cannot be verified")
	case err != nil:
		return unverified(mergeEntries(rec.Granted, rec.Pending), fmt.Sprintf("its key %s cannot be read: %v", rec.Key, err))
	case !hmac.Equal([]byte(recordMAC(k.key, service, rec.Granted, rec.Pending)), []byte(rec.MAC)):
		return unverified(mergeEntries(rec.Granted, rec.Pending), "its signature does not match (edited by hand, or copied from another service)")
	}
	st.granted = canonicalEntries(rec.Granted)
	st.pending = canonicalEntries(rec.Pending)
	return st
}

// newKeyCache caches record keys per version name ("" the signing one).
func newKeyCache(k RecordKeys, now func() time.Time) *cache.Loading[recordKey] {
	return cache.NewLoading(64, now, func(ctx context.Context, version string) (recordKey, time.Duration, error) {
		name, key, err := k.RecordKey(ctx, version)
		if err != nil {
			return recordKey{}, 0, err
		}
		if len(key) < minRecordKeyBytes {
			return recordKey{}, 0, fmt.Errorf("access-record key %s has %d bytes, want at least %d", name, len(key), minRecordKeyBytes)
		}
		if !secretVersionRE.MatchString(name) {
			return recordKey{}, 0, fmt.Errorf("access-record key version %q is not projects/P/secrets/S/versions/N", name)
		}
		return recordKey{name: name, key: key}, recordKeyTTL, nil
	})
}

// describeEntries renders record entries for messages.
func describeEntries(m map[string][]string) string {
	var parts []string
	for _, res := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, strings.Join(m[res], ", ")+" on "+res)
	}
	return strings.Join(parts, "; ")
}
