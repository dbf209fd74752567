package iapauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

const (
	// defaultKeyTTL applies when the key endpoint sends no max-age.
	defaultKeyTTL = time.Hour
	// maxKeyTTL caps a max-age so rotated-out keys do not live for days.
	maxKeyTTL = 24 * time.Hour
	// maxStale is how long past its expiry a cached key is still trusted
	// while the key endpoint cannot be reached. IAP rotates keys slowly
	// and publishes new ones before use; a short outage of gstatic.com
	// should not take every IAP-protected service down with it.
	maxStale = 24 * time.Hour
	// fetchTimeout bounds one key fetch, independently of the request that
	// triggered it (other requests may be waiting for the same fetch).
	fetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds the key set body (IAP's is about 1 KiB).
	maxJWKSBytes = 1 << 20
)

// errTooSoon means a fetch was wanted but the rate limit forbids it.
var errTooSoon = errors.New("key set fetched too recently")

// keyCache holds IAP's public keys by key id. Fetches are deduplicated
// (singleflight) and rate limited: at most one attempt per minInterval,
// whatever triggered it (expired cache, unknown kid, earlier failure).
type keyCache struct {
	url         string
	client      *http.Client
	now         func() time.Time
	minInterval time.Duration
	log         *slog.Logger
	group       singleflight.Group

	mu          sync.Mutex
	keys        map[string]*ecdsa.PublicKey // nil until the first successful fetch
	expires     time.Time
	lastAttempt time.Time
	lastErr     error
}

// key returns the public key for kid, fetching the key set when the cache is
// empty or expired, or when kid is unknown (rate limited).
func (c *keyCache) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	c.mu.Lock()
	k, known := c.keys[kid]
	expires := c.expires
	c.mu.Unlock()
	if known && c.now().Before(expires) {
		return k, nil
	}

	err := c.refresh(ctx)

	now := c.now()
	c.mu.Lock()
	k, known = c.keys[kid]
	fresh := now.Before(c.expires)
	usable := now.Before(c.expires.Add(maxStale))
	lastErr := c.lastErr
	c.mu.Unlock()
	switch {
	case known && usable:
		// Fresh, or the refresh failed and the key is at most maxStale
		// past its expiry.
		return k, nil
	case err == nil || (errors.Is(err, errTooSoon) && (fresh || lastErr == nil)):
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	case errors.Is(err, errTooSoon):
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, lastErr)
	default:
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
}

// refresh fetches the key set unless a fetch happened less than minInterval
// ago (errTooSoon). Concurrent callers share one fetch; each stops waiting
// when its own ctx ends.
func (c *keyCache) refresh(ctx context.Context) error {
	ch := c.group.DoChan("jwks", func() (any, error) {
		c.mu.Lock()
		now := c.now()
		if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < c.minInterval {
			c.mu.Unlock()
			return nil, errTooSoon
		}
		c.lastAttempt = now
		c.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		keys, ttl, err := c.fetch(fctx)

		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil {
			c.lastErr = err
			c.log.Error("iapauth: fetching IAP signing keys", "url", c.url, "error", err)
			return nil, err
		}
		c.keys, c.expires, c.lastErr = keys, c.now().Add(ttl), nil
		return nil, nil
	})
	select {
	case <-ctx.Done():
		return ctx.Err()
	case r := <-ch:
		return r.Err
	}
}

func (c *keyCache) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("build key set request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("get key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return nil, 0, fmt.Errorf("get key set: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read key set: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("read key set: larger than %d bytes", maxJWKSBytes)
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, 0, err
	}
	if skipped > 0 {
		c.log.Debug("iapauth: ignored keys that are not ES256 signing keys", "count", skipped)
	}
	return keys, keyTTL(resp.Header, c.minInterval), nil
}

// parseJWKS keeps the P-256 public signing keys of a JWK set, by kid. Keys of
// other types or algorithms, private keys and keys without a kid are skipped
// and counted; a set with no usable key is an error.
func parseJWKS(body []byte) (map[string]*ecdsa.PublicKey, int, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, 0, fmt.Errorf("decode key set: %w", err)
	}
	keys := make(map[string]*ecdsa.PublicKey, len(set.Keys))
	skipped := 0
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			skipped++
			continue
		}
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() || k.KeyID == "" ||
			(k.Algorithm != "" && k.Algorithm != string(jose.ES256)) ||
			(k.Use != "" && k.Use != "sig") {
			skipped++
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			skipped++
			continue
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("decode key set: no ES256 signing key among %d keys", len(set.Keys))
	}
	return keys, skipped, nil
}

// keyTTL derives the cache lifetime from Cache-Control max-age (minus Age),
// clamped to [floor, maxKeyTTL]; defaultKeyTTL when there is no max-age.
func keyTTL(h http.Header, floor time.Duration) time.Duration {
	ttl := defaultKeyTTL
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				ttl = 0
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
					ttl = time.Duration(min(n, int64(maxKeyTTL/time.Second))) * time.Second
				}
			}
		}
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
		ttl -= time.Duration(min(age, int64(maxKeyTTL/time.Second))) * time.Second
	}
	return min(max(ttl, floor), maxKeyTTL)
}
