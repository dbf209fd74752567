package gcp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// TestRecordKeyOnlyFromTheSigningSecret: a record or marker names its key
// version, and service editors write those annotations. A version of any
// other secret (say one the editor created and let iapguard read) must be
// refused without a call, or a record signed with it would verify; the
// signing secret's own versions, in the configured or in Secret Manager's
// project-number form, are read.
func TestRecordKeyOnlyFromTheSigningSecret(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{Client: func(o *gcp.Options) { o.RecordKey = emulatortest.RecordKey }})
	foreign := strings.Repeat("k", 32)
	if _, err := e.SecretManager.Put(emulatortest.Project, "editors-own-key", []byte(foreign)); err != nil {
		t.Fatal(err)
	}
	a := e.Clients.RecordKeyAdapter
	ctx := t.Context()
	name, _, err := a.RecordKey(ctx, "")
	if err != nil {
		t.Fatalf("signing version: %v", err)
	}
	if _, _, err := a.RecordKey(ctx, name); err != nil {
		t.Errorf("own version %s refused: %v", name, err)
	}
	before := e.Snapshot()
	for _, v := range []string{
		"projects/123456789012/secrets/editors-own-key/versions/1",
		"projects/" + emulatortest.Project + "/secrets/editors-own-key/versions/latest",
		"projects/123456789012/secrets/iapguard-record-key/versions/1/../../editors-own-key/versions/1",
		"projects/other/secrets/iapguard-record-key/versions/1",
	} {
		_, key, err := a.RecordKey(ctx, v)
		if !errors.Is(err, iapsetup.ErrPermanent) {
			t.Errorf("RecordKey(%s) = %q, %v; want a permanent refusal", v, key, err)
		}
	}
	if d := e.Snapshot().Sub(before); len(d.Calls) != 0 {
		t.Errorf("refusals made calls: %v", d.Calls)
	}
}
