package iapauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// DefaultJWKSURL is where IAP publishes its public signing keys as a JWK
	// set (signed-headers-howto, "Verifying the JWT header").
	DefaultJWKSURL = "https://www.gstatic.com/iap/verify/public_key-jwk"
	// Issuer is the only iss IAP assertions carry.
	Issuer = "https://cloud.google.com/iap"

	// DefaultLeeway is the clock skew Google documents for exp and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds Config.Leeway: IAP assertions live about ten minutes,
	// so a larger allowance would make expiry meaningless.
	MaxLeeway = 5 * time.Minute
	// DefaultMinRefreshInterval is how often, at most, the key set is
	// fetched again (unknown key id, expired cache or a failed fetch).
	DefaultMinRefreshInterval = 30 * time.Second

	// maxTokenBytes rejects absurd header values before any parsing. Real
	// assertions are well under 2 KiB.
	maxTokenBytes = 16 << 10
	// accountsPrefix is the namespace IAP puts in front of identities
	// (identity-howto: "accounts.google.com:example@gmail.com").
	accountsPrefix = "accounts.google.com:"
)

// Errors returned (wrapped) by Verify. Match them with errors.Is.
var (
	ErrMissingToken     = errors.New("no IAP assertion")
	ErrMalformedToken   = errors.New("malformed IAP assertion")
	ErrAlgorithm        = errors.New("IAP assertion not signed with ES256")
	ErrUnknownKey       = errors.New("IAP assertion signed with an unknown key id")
	ErrKeysUnavailable  = errors.New("IAP signing keys unavailable")
	ErrSignature        = errors.New("IAP assertion signature invalid")
	ErrIssuer           = errors.New("IAP assertion issuer not accepted")
	ErrAudience         = errors.New("IAP assertion audience not accepted")
	ErrExpired          = errors.New("IAP assertion expired")
	ErrNotYetValid      = errors.New("IAP assertion not yet valid")
	ErrMissingClaim     = errors.New("IAP assertion lacks a required claim")
	errVerifierNotReady = errors.New("iapauth: nil Verifier")
)

// Config configures a Verifier. Only Audiences is required.
type Config struct {
	// Audiences lists the accepted aud values; a token is accepted when its
	// audience matches any of them. Build them with BackendServiceAudience,
	// RegionalBackendServiceAudience or CloudRunAudience. Every entry must
	// start with "/projects/".
	Audiences []string
	// JWKSURL is where the public keys are fetched; DefaultJWKSURL if empty.
	JWKSURL string
	// HTTPClient fetches the keys; a client with a 10 s timeout if nil.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway; negative or above MaxLeeway is a configuration error.
	Leeway time.Duration
	// MinRefreshInterval bounds how often the key set is fetched, so a flood
	// of tokens naming unknown key ids cannot hammer the JWK endpoint. Zero
	// means DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// Now is the clock (tests); time.Now if nil.
	Now func() time.Time
	// Logger receives one WARN line per rejected request (never the token)
	// and key fetch failures; slog.Default() if nil.
	Logger *slog.Logger
}

// Identity is the verified caller.
type Identity struct {
	// Email is the user's email with the accounts.google.com: prefix removed.
	// It can be empty for identities that have none.
	Email string
	// Subject is the stable user id (sub) with the prefix removed.
	Subject string
	// Hd is the hosted (Workspace) domain, empty for consumer accounts.
	Hd string
	// Expiry is when the assertion expires.
	Expiry time.Time
}

// Verifier verifies IAP assertions. It is safe for concurrent use; create one
// per process and share it, so the key cache is shared.
type Verifier struct {
	audiences []string
	leeway    time.Duration
	now       func() time.Time
	log       *slog.Logger
	keys      *keyCache
}

// NewVerifier validates cfg and returns a Verifier. Keys are fetched lazily,
// on the first Verify.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("iapauth: configure at least one audience")
	}
	auds := make([]string, 0, len(cfg.Audiences))
	for _, a := range cfg.Audiences {
		a = strings.TrimSpace(a)
		if !strings.HasPrefix(a, "/projects/") {
			return nil, fmt.Errorf("iapauth: audience %q: want /projects/NUMBER/global/backendServices/ID, /projects/NUMBER/regions/REGION/backendServices/ID or /projects/NUMBER/locations/REGION/services/NAME", a)
		}
		auds = append(auds, a)
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0 || leeway > MaxLeeway:
		return nil, fmt.Errorf("iapauth: leeway %v outside (0, %v]", leeway, MaxLeeway)
	}
	minRefresh := cfg.MinRefreshInterval
	switch {
	case minRefresh == 0:
		minRefresh = DefaultMinRefreshInterval
	case minRefresh < 0:
		return nil, fmt.Errorf("iapauth: negative MinRefreshInterval %v", minRefresh)
	}
	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		jwksURL = DefaultJWKSURL
	}
	if u, err := url.Parse(jwksURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("iapauth: JWKS URL %q is not an absolute http(s) URL", jwksURL)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Verifier{
		audiences: auds,
		leeway:    leeway,
		now:       now,
		log:       log,
		keys: &keyCache{
			url:         jwksURL,
			client:      client,
			now:         now,
			minInterval: minRefresh,
			log:         log,
		},
	}, nil
}

// iapClaims is the payload of an IAP assertion.
type iapClaims struct {
	jwt.Claims
	Email string `json:"email"`
	Hd    string `json:"hd"`
}

// Verify checks an IAP assertion (the value of the x-goog-iap-jwt-assertion
// header) and returns the identity it carries. Errors wrap one of the Err*
// values and never contain the token. It may fetch IAP's keys over the
// network (no credentials needed); ctx bounds the wait.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	if v == nil {
		return Identity{}, errVerifierNotReady
	}
	if token == "" {
		return Identity{}, ErrMissingToken
	}
	if len(token) > maxTokenBytes {
		return Identity{}, fmt.Errorf("%w: %d bytes", ErrMalformedToken, len(token))
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		if alg, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return Identity{}, fmt.Errorf("%w: header names %q", ErrAlgorithm, alg.Got)
		}
		return Identity{}, fmt.Errorf("%w: %w", ErrMalformedToken, err)
	}
	if len(tok.Headers) != 1 {
		return Identity{}, fmt.Errorf("%w: %d signatures", ErrMalformedToken, len(tok.Headers))
	}
	kid := tok.Headers[0].KeyID
	if kid == "" {
		return Identity{}, fmt.Errorf("%w: no kid in header", ErrMalformedToken)
	}
	key, err := v.keys.key(ctx, kid)
	if err != nil {
		return Identity{}, err
	}
	var c iapClaims
	if err := tok.Claims(key, &c); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return Identity{}, fmt.Errorf("%w (kid %q)", ErrSignature, kid)
		}
		return Identity{}, fmt.Errorf("%w: payload: %w", ErrMalformedToken, err)
	}
	if c.Issuer != Issuer {
		return Identity{}, fmt.Errorf("%w: iss %q, want %q", ErrIssuer, c.Issuer, Issuer)
	}
	if !matchesAny(c.Audience, v.audiences) {
		return Identity{}, fmt.Errorf("%w: aud %q, accepted %q", ErrAudience, []string(c.Audience), v.audiences)
	}
	if c.Expiry == nil {
		return Identity{}, fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if c.IssuedAt == nil {
		return Identity{}, fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	now := v.now()
	if err := c.ValidateWithLeeway(jwt.Expected{Time: now}, v.leeway); err != nil {
		switch {
		case errors.Is(err, jwt.ErrExpired):
			return Identity{}, fmt.Errorf("%w: exp %s, now %s, leeway %v", ErrExpired,
				c.Expiry.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.leeway)
		case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
			return Identity{}, fmt.Errorf("%w: now %s, leeway %v: %w", ErrNotYetValid,
				now.UTC().Format(time.RFC3339), v.leeway, err)
		default:
			return Identity{}, fmt.Errorf("%w: %w", ErrMalformedToken, err)
		}
	}
	sub := strings.TrimPrefix(c.Subject, accountsPrefix)
	if sub == "" {
		return Identity{}, fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	return Identity{
		Email:   strings.TrimPrefix(c.Email, accountsPrefix),
		Subject: sub,
		Hd:      c.Hd,
		Expiry:  c.Expiry.Time(),
	}, nil
}

func matchesAny(got jwt.Audience, accepted []string) bool {
	for _, a := range accepted {
		if got.Contains(a) {
			return true
		}
	}
	return false
}

// reason is the short, stable code logged for a rejection.
func reason(err error) string {
	for _, r := range []struct {
		err  error
		code string
	}{
		{ErrMissingToken, "missing"},
		{ErrMalformedToken, "malformed"},
		{ErrAlgorithm, "algorithm"},
		{ErrUnknownKey, "unknown_kid"},
		{ErrKeysUnavailable, "keys_unavailable"},
		{ErrSignature, "signature"},
		{ErrIssuer, "issuer"},
		{ErrAudience, "audience"},
		{ErrExpired, "expired"},
		{ErrNotYetValid, "not_yet_valid"},
		{ErrMissingClaim, "missing_claim"},
		{errVerifierNotReady, "misconfigured"},
	} {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	return "invalid"
}
