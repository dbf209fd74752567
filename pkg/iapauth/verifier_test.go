package iapauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func TestVerify(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	other := newTestKey(t, "key-1") // same kid, different key
	pkix, err := x509.MarshalPKIXPublicKey(&e.key.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	wantID := Identity{Email: testEmail, Subject: testSubject, Hd: testHd, Expiry: now.Add(10 * time.Minute)}

	tests := []struct {
		name    string
		token   string
		want    Identity
		wantErr error
	}{
		{name: "valid", token: e.token(t), want: wantID},
		{name: "valid, prefixed email stripped", token: e.token(t, "email", "accounts.google.com:"+testEmail), want: wantID},
		{name: "valid, unprefixed sub", token: e.token(t, "sub", testSubject), want: wantID},
		{name: "valid, no hd (consumer account)", token: e.token(t, "hd", nil),
			want: Identity{Email: testEmail, Subject: testSubject, Expiry: now.Add(10 * time.Minute)}},
		{name: "valid, aud array containing ours", token: e.token(t, "aud", []string{"/projects/1/apps/x", testAudience}), want: wantID},
		{name: "valid, expired within leeway", token: e.token(t, "exp", now.Add(-29*time.Second).Unix()),
			want: Identity{Email: testEmail, Subject: testSubject, Hd: testHd, Expiry: now.Add(-29 * time.Second)}},
		{name: "valid, issued slightly in the future (skew)", token: e.token(t, "iat", now.Add(29*time.Second).Unix()), want: wantID},
		{name: "expired", token: e.token(t, "exp", now.Add(-31*time.Second).Unix()), wantErr: ErrExpired},
		{name: "expired long ago", token: e.token(t, "iat", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Hour).Unix()), wantErr: ErrExpired},
		{name: "not yet valid: iat in the future", token: e.token(t, "iat", now.Add(2*time.Minute).Unix()), wantErr: ErrNotYetValid},
		{name: "not yet valid: nbf in the future", token: e.token(t, "nbf", now.Add(2*time.Minute).Unix()), wantErr: ErrNotYetValid},
		{name: "wrong audience", token: e.token(t, "aud", "/projects/123456789012/global/backendServices/1"), wantErr: ErrAudience},
		{name: "run.app URL as audience", token: e.token(t, "aud", "https://hello-abc-uc.a.run.app"), wantErr: ErrAudience},
		{name: "no audience", token: e.token(t, "aud", nil), wantErr: ErrAudience},
		{name: "wrong issuer", token: e.token(t, "iss", "https://accounts.google.com"), wantErr: ErrIssuer},
		{name: "no issuer", token: e.token(t, "iss", nil), wantErr: ErrIssuer},
		{name: "no exp", token: e.token(t, "exp", nil), wantErr: ErrMissingClaim},
		{name: "no iat", token: e.token(t, "iat", nil), wantErr: ErrMissingClaim},
		{name: "no sub", token: e.token(t, "sub", nil), wantErr: ErrMissingClaim},
		{name: "sub is only the prefix", token: e.token(t, "sub", "accounts.google.com:"), wantErr: ErrMissingClaim},
		{name: "exp as string", token: e.token(t, "exp", "tomorrow"), wantErr: ErrMalformedToken},
		{name: "signed by another key under a known kid", token: other.sign(t, claimsAt(now)), wantErr: ErrSignature},
		{name: "tampered payload", token: tamper(t, e.token(t)), wantErr: ErrSignature},
		{name: "alg confusion: HS256 keyed with the public key",
			token:   signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: pkix}, e.key.kid, claimsAt(now)),
			wantErr: ErrAlgorithm},
		{name: "alg none", token: unsignedToken(t, e.key.kid, claimsAt(now)), wantErr: ErrAlgorithm},
		{name: "RS256", token: signWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: rsaKey(t)}, e.key.kid, claimsAt(now)), wantErr: ErrAlgorithm},
		{name: "no kid", token: signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: e.key.priv}, "", claimsAt(now)), wantErr: ErrMalformedToken},
		{name: "missing", token: "", wantErr: ErrMissingToken},
		{name: "garbage", token: "not a token", wantErr: ErrMalformedToken},
		{name: "garbage, three parts", token: "a.b.c", wantErr: ErrMalformedToken},
		{name: "JWE-shaped", token: "a.b.c.d.e", wantErr: ErrMalformedToken},
		{name: "Bearer prefix", token: "Bearer " + e.token(t), wantErr: ErrMalformedToken},
		{name: "oversized", token: strings.Repeat("a", maxTokenBytes+1), wantErr: ErrMalformedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Verify() identity mismatch (-want +got):\n%s", diff)
			}
			if err != nil && tc.token != "" {
				for i, part := range strings.Split(tc.token, ".") {
					if len(part) > 8 && strings.Contains(err.Error(), part) {
						t.Errorf("error %q contains token segment %d", err, i)
					}
				}
			}
		})
	}
	if got := e.ks.hits.Load(); got != 1 {
		t.Errorf("key set fetched %d times, want 1 (all keys cached, no unknown kid)", got)
	}
}

// tamper changes the payload's email without re-signing.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	p = []byte(strings.Replace(string(p), testEmail, "mallory@example.com", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

func TestVerifySeveralAudiences(t *testing.T) {
	run := CloudRunAudience(testProject, "europe-west1", "hello")
	regional := RegionalBackendServiceAudience(testProject, "europe-west1", 77)
	e := newEnv(t, func(c *Config) { c.Audiences = []string{testAudience, run, " " + regional + " "} })
	tests := []struct {
		name    string
		aud     any
		wantErr error
	}{
		{name: "global backend service", aud: testAudience},
		{name: "Cloud Run built-in IAP", aud: run},
		{name: "regional backend service (configured with spaces)", aud: regional},
		{name: "same service, other region", aud: CloudRunAudience(testProject, "us-central1", "hello"), wantErr: ErrAudience},
		{name: "same service, other project", aud: CloudRunAudience(1, "europe-west1", "hello"), wantErr: ErrAudience},
		{name: "prefix of an accepted audience", aud: strings.TrimSuffix(testAudience, "00"), wantErr: ErrAudience},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.Verify(context.Background(), e.token(t, "aud", tc.aud))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	base := Config{Audiences: []string{testAudience}}
	tests := []struct {
		name       string
		mutate     func(*Config)
		wantErr    bool
		wantLeeway time.Duration
		wantURL    string
	}{
		{name: "defaults", mutate: func(*Config) {}, wantLeeway: DefaultLeeway, wantURL: DefaultJWKSURL},
		{name: "leeway at maximum", mutate: func(c *Config) { c.Leeway = MaxLeeway }, wantLeeway: MaxLeeway, wantURL: DefaultJWKSURL},
		{name: "leeway 1s", mutate: func(c *Config) { c.Leeway = time.Second }, wantLeeway: time.Second, wantURL: DefaultJWKSURL},
		{name: "leeway above maximum", mutate: func(c *Config) { c.Leeway = MaxLeeway + time.Second }, wantErr: true},
		{name: "negative leeway", mutate: func(c *Config) { c.Leeway = -time.Second }, wantErr: true},
		{name: "negative refresh interval", mutate: func(c *Config) { c.MinRefreshInterval = -time.Second }, wantErr: true},
		{name: "no audience", mutate: func(c *Config) { c.Audiences = nil }, wantErr: true},
		{name: "audience is a URL", mutate: func(c *Config) { c.Audiences = []string{"https://hello.a.run.app"} }, wantErr: true},
		{name: "one bad audience among good", mutate: func(c *Config) { c.Audiences = []string{testAudience, ""} }, wantErr: true},
		{name: "relative JWKS URL", mutate: func(c *Config) { c.JWKSURL = "/public_key-jwk" }, wantErr: true},
		{name: "file JWKS URL", mutate: func(c *Config) { c.JWKSURL = "file:///etc/keys" }, wantErr: true},
		{name: "custom JWKS URL", mutate: func(c *Config) { c.JWKSURL = "http://127.0.0.1:1/k" }, wantLeeway: DefaultLeeway, wantURL: "http://127.0.0.1:1/k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mutate(&cfg)
			v, err := NewVerifier(cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewVerifier() error = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if v.leeway != tc.wantLeeway || v.keys.url != tc.wantURL {
				t.Errorf("leeway, url = %v, %q; want %v, %q", v.leeway, v.keys.url, tc.wantLeeway, tc.wantURL)
			}
		})
	}
}

// TestLeewayApplied checks the configured leeway, not the default, bounds
// exp and iat.
func TestLeewayApplied(t *testing.T) {
	tests := []struct {
		name    string
		leeway  time.Duration
		claim   string
		offset  time.Duration
		wantErr error
	}{
		{name: "default: expired 29s ago", claim: "exp", offset: -29 * time.Second},
		{name: "default: expired 31s ago", claim: "exp", offset: -31 * time.Second, wantErr: ErrExpired},
		{name: "2m: expired 90s ago", leeway: 2 * time.Minute, claim: "exp", offset: -90 * time.Second},
		{name: "2m: expired 3m ago", leeway: 2 * time.Minute, claim: "exp", offset: -3 * time.Minute, wantErr: ErrExpired},
		{name: "1s: expired 2s ago", leeway: time.Second, claim: "exp", offset: -2 * time.Second, wantErr: ErrExpired},
		{name: "1s: issued 2s ahead", leeway: time.Second, claim: "iat", offset: 2 * time.Second, wantErr: ErrNotYetValid},
		{name: "max: issued 4m ahead", leeway: MaxLeeway, claim: "iat", offset: 4 * time.Minute},
		{name: "max: issued 6m ahead", leeway: MaxLeeway, claim: "iat", offset: 6 * time.Minute, wantErr: ErrNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Leeway = tc.leeway })
			tok := e.token(t, tc.claim, e.clock.Now().Add(tc.offset).Unix())
			_, err := e.v.Verify(context.Background(), tok)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestAudienceHelpers(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "global backend service", got: BackendServiceAudience(testProject, testBackend),
			want: "/projects/123456789012/global/backendServices/4976554389610562900"},
		{name: "backend id above MaxInt64", got: BackendServiceAudience(1, 18446744073709551615),
			want: "/projects/1/global/backendServices/18446744073709551615"},
		{name: "regional backend service", got: RegionalBackendServiceAudience(testProject, "europe-west1", 42),
			want: "/projects/123456789012/regions/europe-west1/backendServices/42"},
		{name: "Cloud Run", got: CloudRunAudience(testProject, "us-central1", "hello"),
			want: "/projects/123456789012/locations/us-central1/services/hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.got); diff != "" {
				t.Errorf("audience mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReasonCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "wrapped expiry", err: errors.Join(errors.New("x"), ErrExpired), want: "expired"},
		{name: "keys unavailable", err: ErrKeysUnavailable, want: "keys_unavailable"},
		{name: "canceled", err: context.Canceled, want: "canceled"},
		{name: "unknown", err: errors.New("other"), want: "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := reason(tc.err); got != tc.want {
				t.Errorf("reason(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
