package iapauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	testProject  int64  = 123456789012
	testBackend  uint64 = 4976554389610562900
	testEmail           = "alice@example.com"
	testSubject         = "10769150350006150715113082367"
	testHd              = "example.com"
	testAudience        = "/projects/123456789012/global/backendServices/4976554389610562900"
)

// t0 is the fake "now" of every test.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey is a locally generated ES256 signing key with its key id.
type testKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newTestKey(t *testing.T, kid string) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return testKey{kid: kid, priv: priv}
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// sign returns a compact ES256 JWS of claims with k's kid in the header.
func (k testKey) sign(t *testing.T, claims any) string {
	t.Helper()
	return signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, k.kid, claims)
}

func signWith(t *testing.T, key jose.SigningKey, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatalf("new signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("marshal claims: %v", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return out
}

// unsignedToken builds header.payload. with alg "none".
func unsignedToken(t *testing.T, kid string, claims any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "."
}

// claimsAt returns the claims IAP would issue at now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss":   Issuer,
		"aud":   testAudience,
		"sub":   "accounts.google.com:" + testSubject,
		"email": testEmail,
		"hd":    testHd,
		"iat":   now.Add(-5 * time.Second).Unix(),
		"exp":   now.Add(10 * time.Minute).Unix(),
	}
}

// with returns a copy of m with the given overrides; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

// keyServer serves a JWK set and counts requests.
type keyServer struct {
	hits atomic.Int64

	mu           sync.Mutex
	body         []byte
	status       int
	cacheControl string
	block        chan struct{} // when non-nil, requests wait for it to close
}

func newKeyServer(t *testing.T, keys ...testKey) (*keyServer, *httptest.Server) {
	t.Helper()
	ks := &keyServer{status: http.StatusOK, cacheControl: "public, max-age=3600"}
	ks.setKeys(t, keys...)
	srv := httptest.NewServer(ks)
	t.Cleanup(srv.Close)
	return ks, srv
}

func (s *keyServer) setKeys(t *testing.T, keys ...testKey) {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatalf("marshal key set: %v", err)
	}
	s.setBody(b)
}

func (s *keyServer) setBody(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func (s *keyServer) setStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

func (s *keyServer) setCacheControl(v string) {
	s.mu.Lock()
	s.cacheControl = v
	s.mu.Unlock()
}

func (s *keyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	body, status, cc, block := s.body, s.status, s.cacheControl, s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// syncBuffer is a bytes.Buffer safe for concurrent slog writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv is a verifier wired to a local key server and a fake clock.
type testEnv struct {
	key    testKey
	ks     *keyServer
	srv    *httptest.Server
	clock  *fakeClock
	logs   *syncBuffer
	v      *Verifier
	config Config
}

func newEnv(t *testing.T, mutate ...func(*Config)) *testEnv {
	t.Helper()
	key := newTestKey(t, "key-1")
	ks, srv := newKeyServer(t, key)
	e := &testEnv{key: key, ks: ks, srv: srv, clock: newClock(), logs: &syncBuffer{}}
	e.config = Config{
		Audiences:  []string{testAudience},
		JWKSURL:    srv.URL + "/public_key-jwk",
		HTTPClient: srv.Client(),
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&e.config)
	}
	v, err := NewVerifier(e.config)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	e.v = v
	return e
}

func (e *testEnv) token(t *testing.T, kv ...any) string {
	t.Helper()
	return e.key.sign(t, with(claimsAt(e.clock.Now()), kv...))
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate RSA key: %v", err)
	}
	return k
}

func p384Key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatalf("generate P-384 key: %v", err)
	}
	return k
}
