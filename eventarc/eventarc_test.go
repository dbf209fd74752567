package eventarc

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoad(t *testing.T) {
	ts, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	audit := AuditLogTriggers(ts)
	if len(audit) == 0 {
		t.Fatal("no audit-log triggers")
	}
	type key struct{ service, method string }
	seen := map[key]string{}
	runMethod := regexp.MustCompile(`^google\.cloud\.run\.v[12]\.Services\.[A-Za-z]+$`)
	computeMethod := regexp.MustCompile(`^(v1|beta|alpha)\.compute\.[A-Za-z]+\.[A-Za-z]+$`)
	for _, tr := range audit {
		k := key{tr.ServiceName, tr.MethodName}
		if other, dup := seen[k]; dup {
			t.Errorf("triggers %q and %q both fire for %s %s: every event would be delivered twice", other, tr.Name, tr.ServiceName, tr.MethodName)
		}
		seen[k] = tr.Name
		switch tr.ServiceName {
		case "run.googleapis.com":
			if !runMethod.MatchString(tr.MethodName) {
				t.Errorf("trigger %q: %q is not a Cloud Run Services method name", tr.Name, tr.MethodName)
			}
		case "compute.googleapis.com":
			if !computeMethod.MatchString(tr.MethodName) {
				t.Errorf("trigger %q: %q is not a Compute method name (<version>.compute.<collection>.<method>)", tr.Name, tr.MethodName)
			}
		default:
			t.Errorf("trigger %q: unexpected serviceName %q", tr.Name, tr.ServiceName)
		}
	}
	var topics []string
	for _, tr := range ts {
		if tr.EventType == MessagePublished {
			topics = append(topics, tr.Topic)
			if tr.Location != "region" {
				t.Errorf("Pub/Sub trigger %q has location %q: Eventarc has no global Pub/Sub triggers", tr.Name, tr.Location)
			}
		}
	}
	if diff := cmp.Diff([]string{"iapguard-replay"}, topics); diff != "" {
		t.Errorf("messagePublished topics (-want +got):\n%s", diff)
	}
}

// TestTriggerLocations checks every audit-log trigger against Eventarc's
// location rule (Receives): iapguard guards Cloud Run services and load
// balancers in every region and global ones, so each trigger, deployed once,
// must receive the entries of resources in any location. Only "global" does:
// a trigger in the function's region would leave services in every other
// region to the sweep.
func TestTriggerLocations(t *testing.T) {
	ts, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	// The function's region as deployed, another region, and global
	// resources (global backend services).
	const functionRegion = "us-central1"
	resourceLocs := []string{"global", functionRegion, "europe-west1", "asia-northeast1"}
	for _, tr := range AuditLogTriggers(ts) {
		loc := tr.Location
		if loc == "region" {
			loc = functionRegion
		}
		for _, rl := range resourceLocs {
			if !Receives(loc, rl) {
				t.Errorf("trigger %q (%s) in location %q does not receive the entries of resources in %s", tr.Name, tr.MethodName, tr.Location, rl)
			}
		}
	}
	// The rule itself.
	for _, tc := range []struct {
		trigger, resource string
		want              bool
	}{
		{"global", "global", true},
		{"global", "europe-west1", true},
		{"us-central1", "us-central1", true},
		{"us-central1", "europe-west1", false},
		{"us-central1", "global", false},
	} {
		if got := Receives(tc.trigger, tc.resource); got != tc.want {
			t.Errorf("Receives(%q, %q) = %v, want %v", tc.trigger, tc.resource, got, tc.want)
		}
	}
}

// TestOptionalTriggers: the triggers for methods outside Eventarc's
// published audit-log catalog (alpha Compute methods) are optional, and
// only those.
func TestOptionalTriggers(t *testing.T) {
	ts, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range ts {
		alpha := strings.HasPrefix(tr.MethodName, "alpha.")
		if alpha != tr.Optional {
			t.Errorf("trigger %q (%s): optional = %v, want %v (only methods outside the catalog are optional)", tr.Name, tr.MethodName, tr.Optional, alpha)
		}
		if tr.Optional {
			n++
		}
	}
	if n != 9 {
		t.Errorf("%d optional triggers, want the 9 alpha Compute ones", n)
	}
	if _, err := Parse([]byte("triggers:\n  - name: r\n    location: region\n    optional: true\n    eventType: " + MessagePublished + "\n    topic: t\n")); err == nil {
		t.Error("an optional Pub/Sub trigger was accepted")
	}
}

func TestParseErrors(t *testing.T) {
	const audit = "eventType: google.cloud.audit.log.v1.written\n    serviceName: run.googleapis.com\n    methodName: m\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"not YAML", "triggers: [", "parsing trigger definitions"},
		{"wrong shape", "triggers: {a: 1}", "parsing trigger definitions"},
		{"no name", "triggers:\n  - location: region\n    " + audit, "name is required"},
		{"duplicate name", "triggers:\n  - name: a\n    location: region\n    " + audit + "  - name: a\n    location: region\n    " + audit, `"a": duplicate name`},
		{"unsupported event type", "triggers:\n  - name: a\n    location: region\n    eventType: google.cloud.storage.object.v1.finalized\n", "unsupported eventType"},
		{"no event type", "triggers:\n  - name: a\n    location: region\n", "unsupported eventType"},
		{"audit without methodName", "triggers:\n  - name: a\n    location: region\n    eventType: google.cloud.audit.log.v1.written\n    serviceName: run.googleapis.com\n", "need serviceName and methodName"},
		{"audit without serviceName", "triggers:\n  - name: a\n    location: region\n    eventType: google.cloud.audit.log.v1.written\n    methodName: m\n", "need serviceName and methodName"},
		{"pubsub without topic", "triggers:\n  - name: a\n    location: region\n    eventType: google.cloud.pubsub.topic.v1.messagePublished\n", "need a topic"},
		{"bad location", "triggers:\n  - name: a\n    location: us-central1\n    " + audit, `location must be "global" or "region"`},
		{"missing location", "triggers:\n  - name: a\n    " + audit, `location must be "global" or "region"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error containing %q", ts, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestParse(t *testing.T) {
	in := `triggers:
  - name: a
    location: global
    eventType: google.cloud.audit.log.v1.written
    serviceName: compute.googleapis.com
    methodName: v1.compute.backendServices.patch
    resourceNamePattern: projects/p/global/backendServices/*
  - name: b
    location: region
    eventType: google.cloud.pubsub.topic.v1.messagePublished
    topic: t
`
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Trigger{
		{Name: "a", Location: "global", EventType: AuditLogWritten, ServiceName: "compute.googleapis.com", MethodName: "v1.compute.backendServices.patch", ResourceNamePattern: "projects/p/global/backendServices/*"},
		{Name: "b", Location: "region", EventType: MessagePublished, Topic: "t"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[:1], AuditLogTriggers(got)); diff != "" {
		t.Errorf("AuditLogTriggers (-want +got):\n%s", diff)
	}
	empty, err := Parse([]byte("triggers: []"))
	if err != nil || len(empty) != 0 {
		t.Errorf("Parse(empty list) = %v, %v", empty, err)
	}
}

func TestMatchPathPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"projects/p/global/backendServices/web", "projects/p/global/backendServices/web", true},
		{"projects/p/global/backendServices/web", "projects/p/global/backendServices/web2", false},
		{"projects/*/global/backendServices/*", "projects/p/global/backendServices/web", true},
		{"projects/*/global/backendServices/*", "projects/p/regions/r/backendServices/web", false},
		{"projects/*/locations/*/services/*", "projects/p/locations/us-central1/services/s", true},
		{"projects/*/locations/*/services/*", "projects/p/locations/us-central1/services", false},
		{"projects/*/locations/*/services/*", "projects/p/locations/us-central1/services/s/extra", false},
		{"projects/_/buckets/**/r*.txt", "projects/_/buckets/b/objects/random.txt", true},
		{"projects/_/buckets/**/r*.txt", "projects/_/buckets/b/objects/data.txt", false},
		{"projects/**", "projects/p/global/backendServices/web", true},
		{"projects/**", "projects", true},
		{"**", "anything/at/all", true},
		{"**/services/*", "namespaces/p/services/s", true},
		{"**/services/*", "projects/p/locations/r/services/s", true},
		{"**/services/*", "projects/p/locations/r/jobs/j", false},
		{"projects/p/**/web", "projects/p/web", true},
		{"*", "a/b", false},
		{"namespaces/*/services/hello-*", "namespaces/p/services/hello-world", true},
		{"namespaces/*/services/hello-*", "namespaces/p/services/bye", false},
		{"projects/p", "projects/p/", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+"~"+tc.name, func(t *testing.T) {
			if got := MatchPathPattern(tc.pattern, tc.name); got != tc.want {
				t.Errorf("MatchPathPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
			}
		})
	}
}

func TestMatchesAuditLog(t *testing.T) {
	plain := Trigger{Name: "a", Location: "global", EventType: AuditLogWritten, ServiceName: "compute.googleapis.com", MethodName: "v1.compute.backendServices.patch"}
	pattern := plain
	pattern.ResourceNamePattern = "projects/p1/global/backendServices/*"
	pubsub := Trigger{Name: "r", Location: "region", EventType: MessagePublished, Topic: "t"}
	tests := []struct {
		name                     string
		tr                       Trigger
		service, method, resName string
		want                     bool
	}{
		{"match", plain, "compute.googleapis.com", "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", true},
		{"other method", plain, "compute.googleapis.com", "v1.compute.backendServices.update", "projects/p1/global/backendServices/web", false},
		{"method differs in case", plain, "compute.googleapis.com", "v1.compute.backendservices.patch", "projects/p1/global/backendServices/web", false},
		{"other service", plain, "run.googleapis.com", "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", false},
		{"pattern match", pattern, "compute.googleapis.com", "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", true},
		{"pattern mismatch", pattern, "compute.googleapis.com", "v1.compute.backendServices.patch", "projects/p2/global/backendServices/web", false},
		{"pubsub trigger never matches audit entries", pubsub, "", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tr.MatchesAuditLog(tc.service, tc.method, tc.resName); got != tc.want {
				t.Errorf("MatchesAuditLog = %v, want %v", got, tc.want)
			}
		})
	}
}
