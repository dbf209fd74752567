package gcp

import (
	"errors"
	"testing"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// Names reach the REST clients' {+name} expansion, which keeps ? # : and
// / as they are: only plain paths pass.
func TestCheckRESTName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"projects/demo-project/secrets/iapguard-record-key/versions/latest", true},
		{"projects/123/secrets/k_1/versions/7", true},
		{"folders/123", true},
		{"organizations/1", true},
		{"projects/p/secrets/s/versions/1:access?alt=media", false},
		{"projects/p/secrets/s/versions/1#", false},
		{"projects/p/secrets/s/versions/1/../../t/versions/1", false},
		{"projects/p/secrets/s/versions/%2e%2e", false},
		{"projects//secrets", false},
		{"", false},
		{"folders/1 ", false},
	} {
		err := checkRESTName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("checkRESTName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, iapsetup.ErrPermanent) {
			t.Errorf("checkRESTName(%q) = %v, not permanent", tc.name, err)
		}
	}
	if checkRESTID("123/456") == nil || checkRESTID("demo-project") != nil {
		t.Error("checkRESTID: a '/' must be refused, a plain id accepted")
	}
}
