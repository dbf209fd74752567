package iapsetup

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// The managed marker (managedAnnotation) turns a lost label into the
// opted-out outcome. Anyone who may update the service can write the
// annotation, so opted-out is reported only for a marker iapguard can
// verify: with an access-record key configured (IAPGUARD_RECORD_KEY, see
// RecordKeys) iapguard writes the marker as {"key":VERSION,"mac":BASE64URL},
// an HMAC-SHA256 over "iapguard.dev/managed", a zero byte and the service's
// resource name, with the same key as the access record. A copy from
// another service does not verify; a copy of the same service's own earlier
// marker does, and is true.
//
// Backwards compatibility: markers written before the signature ("true"),
// and every marker written without a key, are kept and rewritten signed the
// next time iapguard reconciles the service while it is labelled and a key
// is configured. A label removed from a service whose marker does not
// verify is reported skipped, with a reason saying why the marker is not
// trusted, never opted-out.

// maxMarker bounds a marker value that is parsed.
const maxMarker = 512

// markerState is the managed marker as the reconciler read it.
type markerState struct {
	// verified: the marker carries iapguard's signature for this service.
	verified bool
	// why the marker is not verified (verified false).
	why string
	// want is the value to write on an enforced service; "" keeps the
	// marker as it is (or writes managedValue when there is none).
	want string
}

type signedMarker struct {
	Key string `json:"key"`
	MAC string `json:"mac"`
}

// markerMAC is the signature of the marker of service.
func markerMAC(key []byte, service string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(managedAnnotation + "\x00" + service))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// formatMarker is the signed marker of service with k.
func formatMarker(service string, k recordKey) string {
	b, _ := json.Marshal(signedMarker{Key: k.name, MAC: markerMAC(k.key, service)})
	return string(b)
}

// parseMarker decodes a signed marker; ok is false for anything else
// ("true", or an edit by hand).
func parseMarker(v string) (signedMarker, bool) {
	var m signedMarker
	if len(v) > maxMarker || !strings.HasPrefix(v, "{") || json.Unmarshal([]byte(v), &m) != nil {
		return signedMarker{}, false
	}
	if !secretVersionRE.MatchString(m.Key) || m.MAC == "" || len(m.MAC) > 64 {
		return signedMarker{}, false
	}
	return m, true
}

// isManagedMarker reports whether v is a value iapguard writes as the
// managed marker: managedValue (no key, or written before markers were
// signed) or a signed marker. It does not verify the signature.
func isManagedMarker(v string) bool {
	if v == managedValue {
		return true
	}
	_, ok := parseMarker(v)
	return ok
}

// readMarker reads the marker raw of service. For an enforced service it
// decides the value to write (a signed marker, when the key can be read
// and the marker is not signed yet; the key is read only then); for a
// service that lost its label it verifies the marker.
func (r *Reconciler) readMarker(ctx context.Context, service, raw string, enforce bool) *markerState {
	sm, signed := parseMarker(raw)
	if enforce {
		st := &markerState{}
		if signed || r.keys == nil {
			return st // already signed (verified when it matters), or nothing to sign with
		}
		if k, err := r.keys.Get(ctx, ""); err == nil {
			st.want = formatMarker(service, k)
		}
		return st
	}
	switch {
	case !signed:
		return &markerState{why: "it is not signed by iapguard (written by hand, before markers were signed, or without IAPGUARD_RECORD_KEY)"}
	case r.keys == nil:
		return &markerState{why: errNoRecordKey.Error() + ", so it cannot be verified"}
	}
	k, err := r.keys.Get(ctx, sm.Key)
	switch {
	case err != nil:
		return &markerState{why: fmt.Sprintf("its key %s cannot be read: %v", sm.Key, err)}
	case !hmac.Equal([]byte(markerMAC(k.key, service)), []byte(sm.MAC)):
		return &markerState{why: "its signature does not match (edited by hand, or copied from another service)"}
	}
	return &markerState{verified: true}
}
