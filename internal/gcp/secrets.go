package gcp

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync"

	secretmanager "google.golang.org/api/secretmanager/v1"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// RecordKeyAdapter reads the key that signs iapguard's access records
// (iapsetup.RecordKeys) from Secret Manager (v1 REST,
// google.golang.org/api/secretmanager/v1): AccessSecretVersion, which
// needs secretmanager.versions.access on the secret (roles/
// secretmanager.secretAccessor). Grant it on that one secret, to the
// function's service account only: whoever can read the key can forge
// records.
type RecordKeyAdapter struct {
	c *secretmanager.Service
	// version is the signing version: projects/P/secrets/S/versions/V
	// (V a number or latest).
	version string
	pace    *pacer

	mu sync.Mutex
	// secrets are the name prefixes ("projects/P/secrets/S/versions/") of
	// the configured signing secret: as configured, and as Secret Manager
	// names it (with the project number), learnt from the first read.
	secrets []string
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordKey implements iapsetup.RecordKeys: the payload of version ("" the
// configured signing version) and the version's resolved name.
//
// A version named by a record or marker is read only if it belongs to the
// configured signing secret: a service editor writes those annotations and
// could otherwise name a secret of their own that iapguard may read, and
// sign a forged record with it. Any other version is refused without a
// call (iapsetup.ErrPermanent).
func (a *RecordKeyAdapter) RecordKey(ctx context.Context, version string) (_ string, _ []byte, err error) {
	defer classify(&err)
	if version != "" && version != a.version {
		if err := a.checkOwnSecret(ctx, version); err != nil {
			return "", nil, err
		}
	}
	version = cmp.Or(version, a.version)
	if err := checkRESTName(version); err != nil {
		return "", nil, err
	}
	resp, err := paced(ctx, a.pace, readCall, func() (*secretmanager.AccessSecretVersionResponse, error) {
		return a.c.Projects.Secrets.Versions.Access(version).Context(ctx).Do()
	})
	if err != nil {
		return "", nil, fmt.Errorf("accessing secret version %s: %w", version, err)
	}
	if resp.Payload == nil {
		return "", nil, fmt.Errorf("accessing secret version %s: %w", version, errors.New("the answer has no payload"))
	}
	// proto3 JSON bytes: standard base64 (URL-safe accepted too, as
	// protojson does).
	data, err := base64.StdEncoding.DecodeString(resp.Payload.Data)
	if err != nil {
		if data, err = base64.URLEncoding.DecodeString(resp.Payload.Data); err != nil {
			return "", nil, fmt.Errorf("accessing secret version %s: decoding the payload: %w", version, err)
		}
	}
	// dataCrc32c is optional; the JSON client cannot tell it absent from
	// 0, so a payload whose checksum is 0 goes unchecked.
	if c := resp.Payload.DataCrc32c; c != 0 && c != int64(crc32.Checksum(data, castagnoli)) {
		return "", nil, fmt.Errorf("accessing secret version %s: %w", version, errors.New("payload checksum mismatch (data corrupted in transit)"))
	}
	a.learn(resp.Name)
	return resp.Name, data, nil
}

// secretPrefix is "projects/P/secrets/S/versions/" of a version name.
func secretPrefix(version string) string {
	if i := strings.LastIndex(version, "/versions/"); i >= 0 {
		return version[:i+len("/versions/")]
	}
	return version + "/versions/"
}

// learn remembers the prefix of a version Secret Manager named.
func (a *RecordKeyAdapter) learn(name string) {
	if name == "" {
		return
	}
	p := secretPrefix(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.Contains(a.secrets, p) {
		a.secrets = append(a.secrets, p)
	}
}

// checkOwnSecret refuses a version outside the configured signing secret;
// it reads the signing version once first if Secret Manager's own name of
// that secret (project number form) is not known yet.
func (a *RecordKeyAdapter) checkOwnSecret(ctx context.Context, version string) error {
	a.mu.Lock()
	learnt := len(a.secrets) > 0
	a.mu.Unlock()
	if !learnt {
		if _, _, err := a.RecordKey(ctx, ""); err != nil {
			return err
		}
	}
	if a.isOwn(version) {
		return nil
	}
	return fmt.Errorf("secret version %s is not a version of the configured access-record key %s: %w", version, a.version, iapsetup.ErrPermanent)
}

// isOwn reports whether version is a version of the signing secret.
func (a *RecordKeyAdapter) isOwn(version string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range append([]string{secretPrefix(a.version)}, a.secrets...) {
		if strings.HasPrefix(version, p) && !strings.Contains(version[len(p):], "/") {
			return true
		}
	}
	return false
}
