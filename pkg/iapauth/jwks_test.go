package iapauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func mustVerify(t *testing.T, v *Verifier, tok string) {
	t.Helper()
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify() error = %v, want nil", err)
	}
}

func wantVerifyErr(t *testing.T, v *Verifier, tok string, want error) {
	t.Helper()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, want) {
		t.Fatalf("Verify() error = %v, want %v", err, want)
	}
}

func wantHits(t *testing.T, ks *keyServer, want int64) {
	t.Helper()
	if got := ks.hits.Load(); got != want {
		t.Fatalf("key set fetched %d times, want %d", got, want)
	}
}

func TestKeyCacheHonoursMaxAge(t *testing.T) {
	e := newEnv(t)
	e.ks.setCacheControl("public, max-age=120")
	mustVerify(t, e.v, e.token(t))
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 1)

	e.clock.Advance(119 * time.Second)
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 1)

	e.clock.Advance(2 * time.Second)
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 2)
}

func TestUnknownKidRefreshesOnceThenRejects(t *testing.T) {
	e := newEnv(t)
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 1)

	stranger := newTestKey(t, "key-unknown")
	tok := stranger.sign(t, claimsAt(e.clock.Now()))
	// Refresh once: the first fetch is older than the interval.
	e.clock.Advance(DefaultMinRefreshInterval)
	wantVerifyErr(t, e.v, tok, ErrUnknownKey)
	wantHits(t, e.ks, 2)
	// Within the interval: rejected without another fetch.
	for range 5 {
		wantVerifyErr(t, e.v, stranger.sign(t, claimsAt(e.clock.Now())), ErrUnknownKey)
	}
	wantHits(t, e.ks, 2)
	// Known keys keep working meanwhile.
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 2)
}

func TestKeyRotationPickedUpOnUnknownKid(t *testing.T) {
	e := newEnv(t)
	mustVerify(t, e.v, e.token(t))

	next := newTestKey(t, "key-2")
	e.ks.setKeys(t, e.key, next)
	e.clock.Advance(DefaultMinRefreshInterval)
	mustVerify(t, e.v, next.sign(t, claimsAt(e.clock.Now())))
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 2)
}

// TestUnknownKidFloodIsRateLimited sends many concurrent tokens with random
// key ids: each refresh window costs the key endpoint at most one request.
func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MinRefreshInterval = time.Minute })
	flood := func() {
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				k := newTestKey(t, "bogus-"+string(rune('a'+i%26))+time.Duration(i).String())
				if _, err := e.v.Verify(context.Background(), k.sign(t, claimsAt(e.clock.Now()))); !errors.Is(err, ErrUnknownKey) {
					t.Errorf("Verify() error = %v, want ErrUnknownKey", err)
				}
			})
		}
		wg.Wait()
	}
	flood()
	wantHits(t, e.ks, 1)
	flood()
	wantHits(t, e.ks, 1)
	e.clock.Advance(time.Minute)
	flood()
	wantHits(t, e.ks, 2)
}

func TestKeyFetchFailures(t *testing.T) {
	rsaSet, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rsaKey(t).PublicKey, KeyID: "key-1", Algorithm: "RS256"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, e *testEnv)
	}{
		{name: "500", setup: func(t *testing.T, e *testEnv) { e.ks.setStatus(http.StatusInternalServerError) }},
		{name: "404", setup: func(t *testing.T, e *testEnv) { e.ks.setStatus(http.StatusNotFound) }},
		{name: "not JSON", setup: func(t *testing.T, e *testEnv) { e.ks.setBody([]byte("<html>oops</html>")) }},
		{name: "empty set", setup: func(t *testing.T, e *testEnv) { e.ks.setBody([]byte(`{"keys":[]}`)) }},
		{name: "only an RSA key", setup: func(t *testing.T, e *testEnv) { e.ks.setBody(rsaSet) }},
		{name: "too large", setup: func(t *testing.T, e *testEnv) { e.ks.setBody(make([]byte, maxJWKSBytes+10)) }},
		{name: "endpoint down", setup: func(t *testing.T, e *testEnv) { e.srv.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(t, e)
			wantVerifyErr(t, e.v, e.token(t), ErrKeysUnavailable)
			// Rate limited: the failure is remembered, not retried at once.
			hits := e.ks.hits.Load()
			wantVerifyErr(t, e.v, e.token(t), ErrKeysUnavailable)
			wantHits(t, e.ks, hits)
		})
	}
}

func TestKeyFetchRecovers(t *testing.T) {
	e := newEnv(t)
	e.ks.setStatus(http.StatusServiceUnavailable)
	wantVerifyErr(t, e.v, e.token(t), ErrKeysUnavailable)
	e.ks.setStatus(http.StatusOK)
	e.clock.Advance(DefaultMinRefreshInterval)
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 2)
}

func TestStaleKeysUsedWhileEndpointFails(t *testing.T) {
	e := newEnv(t)
	e.ks.setCacheControl("max-age=60")
	mustVerify(t, e.v, e.token(t))
	e.ks.setStatus(http.StatusInternalServerError)

	e.clock.Advance(2 * time.Minute) // cache expired, refresh fails
	mustVerify(t, e.v, e.token(t))
	wantHits(t, e.ks, 2)
	// A kid never seen is still rejected, as keys are unavailable.
	e.clock.Advance(DefaultMinRefreshInterval)
	wantVerifyErr(t, e.v, newTestKey(t, "key-9").sign(t, claimsAt(e.clock.Now())), ErrKeysUnavailable)

	e.clock.Advance(maxStale) // far past expiry: no longer trusted
	wantVerifyErr(t, e.v, e.token(t), ErrKeysUnavailable)
}

func TestVerifyStopsWaitingWhenContextEnds(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	e.ks.mu.Lock()
	e.ks.block = block
	e.ks.mu.Unlock()
	defer close(block)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.v.Verify(ctx, e.token(t))
	if !errors.Is(err, ErrKeysUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify() error = %v, want ErrKeysUnavailable wrapping DeadlineExceeded", err)
	}
}

func TestParseJWKS(t *testing.T) {
	ec := newTestKey(t, "ec-1")
	ec2 := newTestKey(t, "ec-2")
	jwk := func(k jose.JSONWebKey) json.RawMessage {
		b, err := k.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p384 := jose.JSONWebKey{Key: &p384Key(t).PublicKey, KeyID: "p384", Algorithm: "ES384"}
	tests := []struct {
		name        string
		keys        []json.RawMessage
		wantKids    []string
		wantSkipped int
		wantErr     bool
	}{
		{name: "two keys", keys: []json.RawMessage{jwk(ec.jwk()), jwk(ec2.jwk())}, wantKids: []string{"ec-1", "ec-2"}},
		{name: "no alg, no use", keys: []json.RawMessage{jwk(jose.JSONWebKey{Key: &ec.priv.PublicKey, KeyID: "bare"})}, wantKids: []string{"bare"}},
		{name: "symmetric key under a valid kid is ignored",
			keys:     []json.RawMessage{jwk(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "ec-1", Algorithm: "HS256"}), jwk(ec2.jwk())},
			wantKids: []string{"ec-2"}, wantSkipped: 1},
		{name: "private key is ignored", keys: []json.RawMessage{jwk(jose.JSONWebKey{Key: ec.priv, KeyID: "priv", Algorithm: "ES256"}), jwk(ec2.jwk())},
			wantKids: []string{"ec-2"}, wantSkipped: 1},
		{name: "P-384 key is ignored", keys: []json.RawMessage{jwk(p384), jwk(ec2.jwk())}, wantKids: []string{"ec-2"}, wantSkipped: 1},
		{name: "encryption key is ignored", keys: []json.RawMessage{jwk(jose.JSONWebKey{Key: &ec.priv.PublicKey, KeyID: "enc", Use: "enc"}), jwk(ec2.jwk())},
			wantKids: []string{"ec-2"}, wantSkipped: 1},
		{name: "no kid is ignored", keys: []json.RawMessage{jwk(jose.JSONWebKey{Key: &ec.priv.PublicKey}), jwk(ec2.jwk())},
			wantKids: []string{"ec-2"}, wantSkipped: 1},
		{name: "duplicate kid keeps the first", keys: []json.RawMessage{jwk(ec.jwk()), jwk(jose.JSONWebKey{Key: &ec2.priv.PublicKey, KeyID: "ec-1"})},
			wantKids: []string{"ec-1"}, wantSkipped: 1},
		{name: "unparseable key is skipped", keys: []json.RawMessage{json.RawMessage(`{"kty":"EC","crv":"P-256","x":"!!","y":"??","kid":"bad"}`), jwk(ec2.jwk())},
			wantKids: []string{"ec-2"}, wantSkipped: 1},
		{name: "nothing usable", keys: []json.RawMessage{jwk(p384)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"keys": tc.keys})
			if err != nil {
				t.Fatal(err)
			}
			keys, skipped, err := parseJWKS(body)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseJWKS() error = %v, wantErr %v", err, tc.wantErr)
			}
			var kids []string
			for k := range keys {
				kids = append(kids, k)
			}
			sort.Strings(kids)
			if diff := cmp.Diff(tc.wantKids, kids); diff != "" {
				t.Errorf("kids mismatch (-want +got):\n%s", diff)
			}
			if !tc.wantErr && skipped != tc.wantSkipped {
				t.Errorf("skipped = %d, want %d", skipped, tc.wantSkipped)
			}
			if tc.name == "duplicate kid keeps the first" && !keys["ec-1"].Equal(&ec.priv.PublicKey) {
				t.Errorf("duplicate kid: kept the second key")
			}
		})
	}
}

func TestKeyTTL(t *testing.T) {
	floor := 30 * time.Second
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{name: "no header", header: http.Header{}, want: defaultKeyTTL},
		{name: "max-age", header: http.Header{"Cache-Control": {"public, max-age=19869"}}, want: 19869 * time.Second},
		{name: "max-age minus Age", header: http.Header{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, want: 500 * time.Second},
		{name: "Age beyond max-age hits the floor", header: http.Header{"Cache-Control": {"max-age=60"}, "Age": {"100"}}, want: floor},
		{name: "tiny max-age hits the floor", header: http.Header{"Cache-Control": {"max-age=1"}}, want: floor},
		{name: "no-store hits the floor", header: http.Header{"Cache-Control": {"no-store"}}, want: floor},
		{name: "huge max-age is capped", header: http.Header{"Cache-Control": {"max-age=99999999999"}}, want: maxKeyTTL},
		{name: "garbage max-age ignored", header: http.Header{"Cache-Control": {"max-age=soon"}}, want: defaultKeyTTL},
		{name: "quoted, upper case", header: http.Header{"Cache-Control": {`MAX-AGE="120"`}}, want: 120 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := keyTTL(tc.header, floor); got != tc.want {
				t.Errorf("keyTTL() = %v, want %v", got, tc.want)
			}
		})
	}
}
