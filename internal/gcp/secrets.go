package gcp

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
)

// RecordKeyAdapter reads the key that signs iapguard's access records
// (iapsetup.RecordKeys) from Secret Manager: AccessSecretVersion, which
// needs secretmanager.versions.access on the secret (roles/
// secretmanager.secretAccessor). Grant it on that one secret, to the
// function's service account only: whoever can read the key can forge
// records.
type RecordKeyAdapter struct {
	c *secretmanager.Client
	// version is the signing version: projects/P/secrets/S/versions/V
	// (V a number or latest).
	version string
	pace    *pacer
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordKey implements iapsetup.RecordKeys: the payload of version ("" the
// configured signing version) and the version's resolved name.
func (a *RecordKeyAdapter) RecordKey(ctx context.Context, version string) (string, []byte, error) {
	if version == "" {
		version = a.version
	}
	resp, err := paced(ctx, a.pace, readCall, func() (*secretmanagerpb.AccessSecretVersionResponse, error) {
		return a.c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: version})
	})
	if err != nil {
		return "", nil, fmt.Errorf("accessing secret version %s: %w", version, err)
	}
	data := resp.GetPayload().GetData()
	if c := resp.GetPayload().DataCrc32C; c != nil && *c != int64(crc32.Checksum(data, castagnoli)) {
		return "", nil, fmt.Errorf("accessing secret version %s: %w", version, errors.New("payload checksum mismatch (data corrupted in transit)"))
	}
	return resp.GetName(), data, nil
}
