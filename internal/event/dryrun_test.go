package event

import (
	"strings"
	"testing"
)

// TestValidateOnlyIgnored: an audit entry for a validate-only request (what
// a dry-running function sends) changes nothing and is never acted on,
// whatever else it says; a real update with validateOnly false is.
func TestValidateOnlyIgnored(t *testing.T) {
	const rn = "projects/p1/locations/us-central1/services/hello"
	for _, tc := range []struct {
		name     string
		method   string
		resource string
		request  any
		wantSkip bool
	}{
		{"v2 validateOnly", RunV2UpdateService, rn, obj{"validateOnly": true, "service": obj{"name": rn}}, true},
		{"v2 validate_only", RunV2UpdateService, rn, obj{"validate_only": true}, true},
		{"v2 create validateOnly", RunV2CreateService, rn, obj{"validateOnly": true}, true},
		{"v1 dryRun", RunV1ReplaceService, "namespaces/p1/services/hello", obj{"dryRun": "all", "region": "us-central1"}, true},
		{"v2 real update", RunV2UpdateService, rn, obj{"validateOnly": false, "service": obj{"name": rn}}, false},
		{"v2 no request", RunV2UpdateService, rn, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []func(obj){withLocationLabel("us-central1")}
			if tc.request != nil {
				opts = append(opts, withPayload("request", tc.request))
			}
			d, err := DecodeLogEntry(mustJSON(t, synthEntry(RunServiceName, tc.method, tc.resource, opts...)))
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Skip == ValidateOnlySkip; got != tc.wantSkip {
				t.Errorf("skip = %q (targets %v), want validate-only skip %v", d.Skip, d.Targets, tc.wantSkip)
			}
			if tc.wantSkip && len(d.Targets) != 0 {
				t.Errorf("validate-only entry has targets %v", d.Targets)
			}
		})
	}
}

// TestSkipOwnDryRun: in dry run, an entry naming the function's own
// identity comes from its own validate-only call, even when Google logs no
// request: ignored, so the function cannot trigger itself.
func TestSkipOwnDryRun(t *testing.T) {
	const self = "iapguard-enforcer@host.iam.gserviceaccount.com"
	entry := synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello",
		func(e obj) { pp(e)["authenticationInfo"] = obj{"principalEmail": self} })
	d, err := DecodeLogEntry(mustJSON(t, entry))
	if err != nil || d.Skip != "" || len(d.Targets) != 1 {
		t.Fatalf("decoded %+v, %v; want one target", d, err)
	}
	if got := SkipOwnDryRun(d, true, "other@x", self); !strings.Contains(got.Skip, "own dry-run call") || len(got.Targets) != 0 || got.Compute != nil {
		t.Errorf("own entry in dry run not ignored: %+v", got)
	}
	if got := SkipOwnDryRun(d, false, self); got.Skip != "" || len(got.Targets) != 1 {
		t.Errorf("own entry ignored outside dry run (live writes come back as events and are checked): %+v", got)
	}
	alice := d
	alice.Trigger.Principal = "alice@example.com"
	if got := SkipOwnDryRun(alice, true, self); got.Skip != "" {
		t.Errorf("someone else's change ignored in dry run: %+v", got)
	}
}
