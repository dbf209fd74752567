package cloudrun

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator/core"
)

func TestValidateLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		ok     bool
	}{
		{"simple", map[string]string{"iap": "enabled"}, true},
		{"empty value", map[string]string{"iap": ""}, true},
		{"underscores, dashes, digits", map[string]string{"a_b-1": "x_y-2"}, true},
		{"international", map[string]string{"équipe": "données"}, true},
		{"63-char key", map[string]string{"k" + strings.Repeat("a", 62): "v"}, true},
		{"64-char key", map[string]string{"k" + strings.Repeat("a", 63): "v"}, false},
		{"key starts with digit", map[string]string{"1a": "v"}, false},
		{"key starts with dash", map[string]string{"-a": "v"}, false},
		{"empty key", map[string]string{"": "v"}, false},
		{"uppercase value", map[string]string{"a": "V"}, false},
		{"dot in value", map[string]string{"a": "1.2"}, false},
		{"slash in key", map[string]string{"iapguard.dev/x": "v"}, false},
		{"reserved namespace", map[string]string{"run.googleapis.com/x": "v"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateLabels("service.labels", tt.labels)
			if (err == nil) != tt.ok {
				t.Fatalf("validateLabels(%v) = %v, want ok=%v", tt.labels, err, tt.ok)
			}
			if err != nil && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "service.labels")) {
				t.Errorf("error %v: want INVALID_ARGUMENT naming service.labels", err)
			}
		})
	}
}

func TestValidateAnnotations(t *testing.T) {
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"plain name", "managed", true},
		{"own prefix", "iapguard.dev/managed", true},
		{"mixed case name", "example.com/SomeKey_1.x", true},
		{"run namespace", "run.googleapis.com/ingress", false},
		{"cloud namespace", "cloud.googleapis.com/location", false},
		{"knative serving", "serving.knative.dev/creator", false},
		{"knative autoscaling", "autoscaling.knative.dev/maxScale", false},
		{"look-alike prefix is fine", "myrun.googleapis.com/x", true},
		{"empty name", "iapguard.dev/", false},
		{"uppercase prefix", "IAPGUARD.dev/x", false},
		{"two slashes", "a/b/c", false},
		{"name too long", strings.Repeat("n", 64), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateAnnotations("service.annotations", map[string]string{tt.key: "v"})
			if (err == nil) != tt.ok {
				t.Fatalf("validateAnnotations(%q) = %v, want ok=%v", tt.key, err, tt.ok)
			}
		})
	}
	t.Run("total size", func(t *testing.T) {
		err := validateAnnotations("service.annotations", map[string]string{"big": strings.Repeat("x", maxAnnotationBytes)})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("oversized annotations: %v, want INVALID_ARGUMENT", err)
		}
	})
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		path string
		want []string
		ok   bool
	}{
		{"labels", []string{"labels"}, true},
		{"template.scaling.min_instance_count", []string{"template", "scaling", "min_instance_count"}, true},
		{"annotations.`iapguard.dev/managed`", []string{"annotations", "iapguard.dev/managed"}, true},
		{"labels..x", nil, false},
		{"annotations.`open", nil, false},
		{"", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := splitPath(tt.path)
			if ok != tt.ok {
				t.Fatalf("splitPath(%q) ok = %v, want %v", tt.path, ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); ok && diff != "" {
				t.Errorf("splitPath(%q) mismatch (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		wantMode  string
		wantDelay time.Duration
		ok        bool
	}{
		{"default", Options{}, LROOnFirstPoll, 0, true},
		{"on-first-poll", Options{LRO: "on-first-poll"}, LROOnFirstPoll, 0, true},
		{"immediate", Options{LRO: "immediate"}, LROImmediate, 0, true},
		{"delay", Options{LRO: "delay", Delay: time.Second}, LRODelay, time.Second, true},
		{"duration", Options{LRO: "2s"}, LRODelay, 2 * time.Second, true},
		{"delay without duration", Options{LRO: "delay"}, "", 0, false},
		{"negative duration", Options{LRO: "-1s"}, "", 0, false},
		{"unknown", Options{LRO: "eventually"}, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			mode, delay, _ := tt.opts.mode()
			if mode != tt.wantMode || delay != tt.wantDelay {
				t.Errorf("mode() = %q, %v; want %q, %v", mode, delay, tt.wantMode, tt.wantDelay)
			}
		})
	}
	t.Run("invalid falls back to on-first-poll", func(t *testing.T) {
		s := New(core.New(""), Options{LRO: "eventually"})
		if s.mode != LROOnFirstPoll {
			t.Errorf("mode = %q, want %q", s.mode, LROOnFirstPoll)
		}
	})
}

func TestSeedHelpers(t *testing.T) {
	c := core.New("", core.Project{ID: testProject, Number: testNumber})
	s := New(c, Options{LRO: LRODelay, Delay: time.Hour})
	got, err := s.Seed(testNumberStr, testRegion, "seeded", minimalService())
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if got.GetName() != svcName(testProject, "seeded") || got.GetReconciling() || got.GetLatestReadyRevision() == "" {
		t.Errorf("seeded service name %q reconciling %v ready %q; want project-id name, settled", got.GetName(), got.GetReconciling(), got.GetLatestReadyRevision())
	}
	if !s.ServiceExists(testProject, testRegion, "seeded") {
		t.Error("ServiceExists = false after Seed")
	}
	if n := len(c.Audit.Entries()); n != 0 {
		t.Errorf("Seed wrote %d audit entries", n)
	}
	if _, err := s.Seed(testProject, testRegion, "bad", &runpb.Service{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Seed without template: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := s.Seed("ghost", testRegion, "x", minimalService()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Seed in unknown project: %v, want PERMISSION_DENIED", err)
	}
	p, err := s.SeedIAMPolicy(testProject, testRegion, "seeded", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invoker, Members: []string{"allUsers"}}}})
	if err != nil {
		t.Fatalf("SeedIAMPolicy: %v", err)
	}
	stored, ok := s.IAMPolicy(testProject, testRegion, "seeded")
	if !ok || string(stored.GetEtag()) != string(p.GetEtag()) || len(stored.GetBindings()) != 1 {
		t.Errorf("IAMPolicy = %v, %v; want the seeded policy", stored, ok)
	}
	if _, err := s.SeedIAMPolicy(testProject, testRegion, "ghost", &iampb.Policy{}); status.Code(err) != codes.NotFound {
		t.Errorf("SeedIAMPolicy on a missing service: %v, want NOT_FOUND", err)
	}
	if _, ok := s.Service(testProject, testRegion, "ghost"); ok {
		t.Error("Service found a missing service")
	}
}
