package event

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// want is the expected outcome of decoding one input.
type want struct {
	targets   []Target
	compute   *ComputeRef
	skip      string // substring of Decision.Skip
	malformed bool
}

func checkDecision(t *testing.T, d Decision, err error, w want) {
	t.Helper()
	if w.malformed {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error = %v, decision %+v; want ErrMalformed", err, d)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if diff := cmp.Diff(w.targets, d.Targets); diff != "" {
		t.Errorf("Targets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(w.compute, d.Compute); diff != "" {
		t.Errorf("Compute (-want +got):\n%s", diff)
	}
	if w.skip == "" && d.Skip != "" {
		t.Errorf("Skip = %q, want none", d.Skip)
	}
	if w.skip != "" && !strings.Contains(d.Skip, w.skip) {
		t.Errorf("Skip = %q, want it to contain %q", d.Skip, w.skip)
	}
	checkInvariant(t, d, err)
}

// checkInvariant: a successful decision sets exactly one of Targets,
// Compute and Skip; an error wraps ErrMalformed.
func checkInvariant(t testing.TB, d Decision, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	n := 0
	if len(d.Targets) > 0 {
		n++
	}
	if d.Compute != nil {
		n++
	}
	if d.Skip != "" {
		n++
	}
	if n != 1 {
		t.Fatalf("decision %+v sets %d of Targets, Compute, Skip; want exactly 1", d, n)
	}
}

// decodeAllPaths decodes a LogEntry as DecodeLogEntry, as an Eventarc
// audit-log event (bare, and with Eventarc's attributes when they can be
// derived), and as a log-sink Pub/Sub message, and checks each against w.
func decodeAllPaths(t *testing.T, entry []byte, w want) {
	t.Helper()
	t.Run("log-entry", func(t *testing.T) {
		d, err := DecodeLogEntry(entry)
		checkDecision(t, d, err, w)
		if err == nil && d.Trigger.Via != ViaLogSink {
			t.Errorf("Via = %q, want %q", d.Trigger.Via, ViaLogSink)
		}
	})
	t.Run("eventarc-bare", func(t *testing.T) {
		d, err := Decode(rawAuditEvent(entry))
		checkDecision(t, d, err, w)
	})
	if ev, err := NewAuditLogEvent(entry); err == nil {
		t.Run("eventarc", func(t *testing.T) {
			d, err := Decode(ev)
			checkDecision(t, d, err, w)
			if err == nil && d.Trigger.Via != ViaEventarc {
				t.Errorf("Via = %q, want %q", d.Trigger.Via, ViaEventarc)
			}
		})
	} else if !w.malformed {
		t.Errorf("NewAuditLogEvent: %v", err)
	}
	t.Run("log-sink", func(t *testing.T) {
		d, err := Decode(pubsubEvent(t, entry))
		checkDecision(t, d, err, w)
		if err == nil && d.Trigger.Via != ViaLogSink {
			t.Errorf("Via = %q, want %q", d.Trigger.Via, ViaLogSink)
		}
	})
}

func svc(project, region, name string) []Target {
	return []Target{{Kind: TargetService, Project: project, Region: region, Service: name}}
}

func TestDecodeCloudRun(t *testing.T) {
	const run = RunServiceName
	v1name := "namespaces/p1/services/hello"
	tests := []struct {
		name  string
		entry obj
		want  want
	}{
		{
			name:  "v1 create, location from resource.labels",
			entry: synthEntry(run, RunV1CreateService, v1name, withLocationLabel("europe-west1")),
			want:  want{targets: svc("p1", "europe-west1", "hello")},
		},
		{
			name: "v1 replace, location from resourceLocation",
			entry: synthEntry(run, RunV1ReplaceService, v1name,
				withPayload("resourceLocation", obj{"currentLocations": []string{"us-east1"}})),
			want: want{targets: svc("p1", "us-east1", "hello")},
		},
		{
			name: "v1 replace, location from request.region",
			entry: synthEntry(run, RunV1ReplaceService, v1name,
				withPayload("request", obj{"@type": "type.googleapis.com/google.cloud.run.v1.ReplaceServiceRequest", "region": "asia-east1"})),
			want: want{targets: svc("p1", "asia-east1", "hello")},
		},
		{
			name: "v1 replace, location from request.name",
			entry: synthEntry(run, RunV1ReplaceService, v1name,
				withPayload("request", obj{"region": 7, "name": "projects/p1/locations/us-west2/services/hello"})),
			want: want{targets: svc("p1", "us-west2", "hello")},
		},
		{
			name: "v1 create, location from the response's location label",
			entry: synthEntry(run, RunV1CreateService, v1name,
				withPayload("request", "not an object"),
				withPayload("response", obj{"metadata": obj{"labels": obj{"cloud.googleapis.com/location": "us-west1"}}})),
			want: want{targets: svc("p1", "us-west1", "hello")},
		},
		{
			name:  "v1 create, labels win over resourceLocation",
			entry: synthEntry(run, RunV1CreateService, v1name, withLocationLabel("europe-west1"), withPayload("resourceLocation", obj{"currentLocations": []string{"us-east1"}})),
			want:  want{targets: svc("p1", "europe-west1", "hello")},
		},
		{
			name:  "v1 create without any location",
			entry: synthEntry(run, RunV1CreateService, v1name),
			want:  want{malformed: true},
		},
		{
			name:  "v1 create, project number namespace",
			entry: synthEntry(run, RunV1CreateService, "namespaces/1028347275902/services/hello", withLocationLabel("us-west1")),
			want:  want{targets: svc("1028347275902", "us-west1", "hello")},
		},
		{
			name:  "v1 setIamPolicy, projects shape",
			entry: synthEntry(run, RunV1SetIamPolicy, "projects/p1/locations/us-central1/services/hello"),
			want:  want{targets: svc("p1", "us-central1", "hello")},
		},
		{
			name:  "v2 create",
			entry: synthEntry(run, RunV2CreateService, "projects/p1/locations/us-central1/services/hello"),
			want:  want{targets: svc("p1", "us-central1", "hello")},
		},
		{
			name:  "v2 update, resourceName wins over labels",
			entry: synthEntry(run, RunV2UpdateService, "projects/p2/locations/europe-west4/services/api", withLocationLabel("us-east1")),
			want:  want{targets: svc("p2", "europe-west4", "api")},
		},
		{
			name:  "v2 setIamPolicy, domain-scoped project",
			entry: synthEntry(run, RunV2SetIamPolicy, "projects/example.com:p3/locations/us-central1/services/hello"),
			want:  want{targets: svc("example.com:p3", "us-central1", "hello")},
		},
		{
			name:  "v2 update with status {}",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello", withPayload("status", obj{})),
			want:  want{targets: svc("p1", "us-central1", "hello")},
		},
		{
			name:  "v2 update with a first-only operation is still acted on",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello", withOp(true, false)),
			want:  want{targets: svc("p1", "us-central1", "hello")},
		},
		{
			name:  "v2 update without protoPayload @type",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello", withoutPayload("@type")),
			want:  want{targets: svc("p1", "us-central1", "hello")},
		},
		{
			name:  "v1 delete",
			entry: synthEntry(run, "google.cloud.run.v1.Services.DeleteService", v1name, withLocationLabel("us-west1")),
			want:  want{skip: "deleted"},
		},
		{
			name:  "v2 delete",
			entry: synthEntry(run, "google.cloud.run.v2.Services.DeleteService", "projects/p1/locations/us-central1/services/hello"),
			want:  want{skip: "deleted"},
		},
		{
			name:  "v2 getIamPolicy (data access)",
			entry: synthEntry(run, "google.cloud.run.v2.Services.GetIamPolicy", "projects/p1/locations/us-central1/services/hello"),
			want:  want{skip: "does not change"},
		},
		{
			name:  "system event /Services.UpdateService",
			entry: synthEntry(run, "/Services.UpdateService", v1name),
			want:  want{skip: "does not change"},
		},
		{
			name:  "v2 jobs create",
			entry: synthEntry(run, "google.cloud.run.v2.Jobs.CreateJob", "projects/p1/locations/us-central1/jobs/j"),
			want:  want{skip: "does not change"},
		},
		{
			name:  "failed call",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello", withStatus(7, "PERMISSION_DENIED")),
			want:  want{skip: "call failed (code 7: PERMISSION_DENIED)"},
		},
		{
			name:  "failed call without resourceName is a skip",
			entry: synthEntry(run, RunV2CreateService, "", withStatus(3, "")),
			want:  want{skip: "call failed (code 3)"},
		},
		{
			name:  "missing resourceName",
			entry: synthEntry(run, RunV2UpdateService, "", withoutPayload("resourceName")),
			want:  want{malformed: true},
		},
		{
			name:  "wildcard project",
			entry: synthEntry(run, RunV2UpdateService, "projects/-/locations/us-central1/services/hello"),
			want:  want{malformed: true},
		},
		{
			name:  "wildcard region",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/-/services/hello"),
			want:  want{malformed: true},
		},
		{
			name:  "empty service segment",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/services/"),
			want:  want{malformed: true},
		},
		{
			name:  "job name for a service method",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/jobs/j"),
			want:  want{malformed: true},
		},
		{
			name:  "extra segments",
			entry: synthEntry(run, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello/revisions/r1"),
			want:  want{malformed: true},
		},
		{
			name:  "namespace shape with a location label that is not a region",
			entry: synthEntry(run, RunV1CreateService, v1name, withLocationLabel("us central")),
			want:  want{malformed: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			decodeAllPaths(t, mustJSON(t, tc.entry), tc.want)
		})
	}
}

func TestDecodeCompute(t *testing.T) {
	const gce = ComputeServiceName
	last := withOp(false, true)
	bs := func(p, n string) *ComputeRef {
		return &ComputeRef{Project: p, Kind: ComputeBackendService, Name: n}
	}
	rbs := func(p, r, n string) *ComputeRef {
		return &ComputeRef{Project: p, Region: r, Kind: ComputeBackendService, Name: n}
	}
	tests := []struct {
		name  string
		entry obj
		want  want
	}{
		{
			name:  "global backend service insert, last",
			entry: synthEntry(gce, "v1.compute.backendServices.insert", "projects/p1/global/backendServices/web", last),
			want:  want{compute: bs("p1", "web")},
		},
		{
			name:  "global backend service patch, beta, project number",
			entry: synthEntry(gce, "beta.compute.backendServices.patch", "projects/12340032/global/backendServices/web", last),
			want:  want{compute: bs("12340032", "web")},
		},
		{
			name:  "global backend service update, alpha",
			entry: synthEntry(gce, "alpha.compute.backendServices.update", "projects/p1/global/backendServices/web", last),
			want:  want{compute: bs("p1", "web")},
		},
		{
			name:  "global backend service setSecurityPolicy",
			entry: synthEntry(gce, "v1.compute.backendServices.setSecurityPolicy", "projects/p1/global/backendServices/web", last),
			want:  want{compute: bs("p1", "web")},
		},
		{
			name:  "regional backend service patch",
			entry: synthEntry(gce, "v1.compute.regionBackendServices.patch", "projects/p1/regions/us-central1/backendServices/web", last),
			want:  want{compute: rbs("p1", "us-central1", "web")},
		},
		{
			name:  "regional backend service setSecurityPolicy, beta",
			entry: synthEntry(gce, "beta.compute.regionBackendServices.setSecurityPolicy", "projects/p1/regions/europe-west1/backendServices/web", last),
			want:  want{compute: rbs("p1", "europe-west1", "web")},
		},
		{
			name:  "serverless NEG insert",
			entry: synthEntry(gce, "v1.compute.regionNetworkEndpointGroups.insert", "projects/p1/regions/us-central1/networkEndpointGroups/neg", last),
			want:  want{compute: &ComputeRef{Project: "p1", Region: "us-central1", Kind: ComputeNetworkEndpointGroup, Name: "neg"}},
		},
		{
			name:  "entry marked both first and last",
			entry: synthEntry(gce, "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", withOp(true, true)),
			want:  want{compute: bs("p1", "web")},
		},
		{
			name:  "full API URL as resourceName",
			entry: synthEntry(gce, "v1.compute.backendServices.patch", "https://www.googleapis.com/compute/v1/projects/p1/global/backendServices/web", last),
			want:  want{compute: bs("p1", "web")},
		},
		{
			name:  "first entry",
			entry: synthEntry(gce, "v1.compute.backendServices.insert", "projects/p1/global/backendServices/web", withOp(true, false)),
			want:  want{skip: "waiting for the operation's last entry"},
		},
		{
			name:  "operation entry neither first nor last",
			entry: synthEntry(gce, "v1.compute.backendServices.insert", "projects/p1/global/backendServices/web", withOp(false, false)),
			want:  want{skip: "not the operation's last entry"},
		},
		{
			name:  "rejected up front: no operation, error status",
			entry: synthEntry(gce, "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", withStatus(7, "PERMISSION_DENIED")),
			want:  want{skip: "call rejected (code 7: PERMISSION_DENIED)"},
		},
		{
			name:  "no operation, success status",
			entry: synthEntry(gce, "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web"),
			want:  want{skip: "no operation"},
		},
		{
			name:  "last entry of a failed operation",
			entry: synthEntry(gce, "v1.compute.regionBackendServices.update", "projects/p1/regions/us-central1/backendServices/web", last, withStatus(8, "QUOTA_EXCEEDED")),
			want:  want{skip: "operation failed (code 8: QUOTA_EXCEEDED)"},
		},
		{
			name:  "first entry of a failed operation without resourceName",
			entry: synthEntry(gce, "v1.compute.backendServices.insert", "", withOp(true, false), withStatus(3, "bad")),
			want:  want{skip: "waiting for the operation's last entry"},
		},
		{
			name:  "backend service delete",
			entry: synthEntry(gce, "v1.compute.backendServices.delete", "projects/p1/global/backendServices/web", last),
			want:  want{skip: "backendService deleted"},
		},
		{
			name:  "NEG delete",
			entry: synthEntry(gce, "v1.compute.regionNetworkEndpointGroups.delete", "projects/p1/regions/us-central1/networkEndpointGroups/neg", last),
			want:  want{skip: "networkEndpointGroup deleted"},
		},
		{
			name:  "backend service setIamPolicy",
			entry: synthEntry(gce, "v1.compute.backendServices.setIamPolicy", "projects/p1/global/backendServices/web"),
			want:  want{skip: "not handled"},
		},
		{
			name:  "zonal NEG insert",
			entry: synthEntry(gce, "v1.compute.networkEndpointGroups.insert", "projects/p1/zones/us-central1-a/networkEndpointGroups/neg", last),
			want:  want{skip: "not handled"},
		},
		{
			name:  "global (internet) NEG insert",
			entry: synthEntry(gce, "v1.compute.globalNetworkEndpointGroups.insert", "projects/p1/global/networkEndpointGroups/neg", last),
			want:  want{skip: "not handled"},
		},
		{
			name:  "unknown API version prefix",
			entry: synthEntry(gce, "gamma.compute.backendServices.insert", "projects/p1/global/backendServices/web", last),
			want:  want{skip: "not handled"},
		},
		{
			name:  "instances insert",
			entry: synthEntry(gce, "v1.compute.instances.insert", "projects/p1/zones/us-central1-a/instances/vm", last),
			want:  want{skip: "not handled"},
		},
		{
			name:  "global method with a regional resourceName",
			entry: synthEntry(gce, "v1.compute.backendServices.insert", "projects/p1/regions/us-central1/backendServices/web", last),
			want:  want{malformed: true},
		},
		{
			name:  "regional method with a global resourceName",
			entry: synthEntry(gce, "v1.compute.regionBackendServices.insert", "projects/p1/global/backendServices/web", last),
			want:  want{malformed: true},
		},
		{
			name:  "NEG method with a backend service name",
			entry: synthEntry(gce, "v1.compute.regionNetworkEndpointGroups.insert", "projects/p1/regions/us-central1/backendServices/web", last),
			want:  want{malformed: true},
		},
		{
			name:  "last entry without resourceName",
			entry: synthEntry(gce, "v1.compute.backendServices.insert", "", last, withoutPayload("resourceName")),
			want:  want{malformed: true},
		},
		{
			name:  "wildcard region",
			entry: synthEntry(gce, "v1.compute.regionBackendServices.patch", "projects/p1/regions/-/backendServices/web", last),
			want:  want{malformed: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			decodeAllPaths(t, mustJSON(t, tc.entry), tc.want)
		})
	}
}

func TestDecodeGenericEntries(t *testing.T) {
	tests := []struct {
		name  string
		entry []byte
		want  want
	}{
		{
			name:  "storage",
			entry: mustJSON(t, synthEntry("storage.googleapis.com", "storage.buckets.create", "projects/_/buckets/b")),
			want:  want{skip: "not a Cloud Run or Compute event"},
		},
		{
			name: "pubsub with free-form request of odd types",
			entry: mustJSON(t, synthEntry("pubsub.googleapis.com", "google.pubsub.v1.Publisher.CreateTopic", "projects/p1/topics/t",
				withPayload("request", []any{1, "x"}), withPayload("response", 5))),
			want: want{skip: "not a Cloud Run or Compute event"},
		},
		{
			name: "not an audit log payload",
			entry: mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello",
				withPayload("@type", "type.googleapis.com/google.appengine.logging.v1.RequestLog"))),
			want: want{skip: "not an audit log entry"},
		},
		{
			name:  "timestamp in a non-RFC 3339 layout is tolerated",
			entry: mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello", withTop("timestamp", "2024-02-02 09:43:54.497796000"))),
			want:  want{targets: svc("p1", "us-central1", "hello")},
		},
		{name: "no protoPayload", entry: []byte(`{"insertId":"x","logName":"projects/p/logs/x"}`), want: want{malformed: true}},
		{name: "null protoPayload", entry: []byte(`{"protoPayload":null}`), want: want{malformed: true}},
		{name: "protoPayload is a string", entry: []byte(`{"protoPayload":"x"}`), want: want{malformed: true}},
		{name: "missing serviceName", entry: mustJSON(t, synthEntry("", RunV2UpdateService, "projects/p1/locations/r/services/s")), want: want{malformed: true}},
		{name: "missing methodName", entry: mustJSON(t, synthEntry(RunServiceName, "", "projects/p1/locations/r/services/s")), want: want{malformed: true}},
		{name: "methodName is a number", entry: mustJSON(t, synthEntry(RunServiceName, "", "x", withPayload("methodName", 5))), want: want{malformed: true}},
		{name: "operation.last is a string", entry: mustJSON(t, synthEntry(ComputeServiceName, "v1.compute.backendServices.insert", "projects/p1/global/backendServices/w", withTop("operation", obj{"last": "true"}))), want: want{malformed: true}},
		{name: "status.code is a string", entry: mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/r/services/s", withPayload("status", obj{"code": "7"}))), want: want{malformed: true}},
		{name: "resource labels are not strings", entry: mustJSON(t, synthEntry(RunServiceName, RunV1CreateService, "namespaces/p1/services/s", withTop("resource", obj{"labels": obj{"location": 1}}))), want: want{malformed: true}},
		{name: "resourceName is an object", entry: mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "", withPayload("resourceName", obj{}))), want: want{malformed: true}},
		{name: "empty input", entry: nil, want: want{malformed: true}},
		{name: "JSON null", entry: []byte(`null`), want: want{malformed: true}},
		{name: "JSON array", entry: []byte(`[{"protoPayload":{}}]`), want: want{malformed: true}},
		{name: "not JSON", entry: []byte(`protoPayload: yes`), want: want{malformed: true}},
		{name: "trailing data", entry: append(mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/r/services/s")), []byte(`{}`)...), want: want{malformed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { decodeAllPaths(t, tc.entry, tc.want) })
	}
}

// Every proper prefix of a valid entry is malformed, never a panic nor a
// decision.
func TestDecodeTruncated(t *testing.T) {
	full := mustJSON(t, synthEntry(ComputeServiceName, "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", withOp(false, true)))
	for i := range len(full) {
		d, err := DecodeLogEntry(full[:i])
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: decision %+v, error %v; want ErrMalformed", i, d, err)
		}
		if _, err := Decode(rawAuditEvent(full[:i])); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes as event: error %v; want ErrMalformed", i, err)
		}
	}
	if _, err := DecodeLogEntry(full); err != nil {
		t.Fatalf("full entry: %v", err)
	}
}

func TestDecodeTrigger(t *testing.T) {
	entry := mustJSON(t, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello"))
	wantBase := Trigger{
		Type:         AuditLogWritten,
		Method:       RunV2UpdateService,
		Principal:    "alice@example.com",
		ResourceName: "projects/p1/locations/us-central1/services/hello",
		Time:         mustTime(t, "2025-01-02T03:04:05.123456789Z"),
	}
	derivedID := "projects/p1/logs/cloudaudit.googleapis.com%2Factivitysynthetic11735787045123456"
	derivedSource := "//cloudaudit.googleapis.com/projects/p1/logs/activity"

	t.Run("DecodeLogEntry", func(t *testing.T) {
		d, err := DecodeLogEntry(entry)
		if err != nil {
			t.Fatal(err)
		}
		w := wantBase
		w.EventID, w.Source, w.Via = derivedID, derivedSource, ViaLogSink
		if diff := cmp.Diff(w, d.Trigger); diff != "" {
			t.Errorf("Trigger (-want +got):\n%s", diff)
		}
	})
	t.Run("eventarc", func(t *testing.T) {
		d, err := Decode(rawAuditEvent(entry))
		if err != nil {
			t.Fatal(err)
		}
		w := wantBase
		w.EventID, w.Source, w.Via = "ev-1", "//cloudaudit.googleapis.com/projects/p1/logs/activity", ViaEventarc
		if diff := cmp.Diff(w, d.Trigger); diff != "" {
			t.Errorf("Trigger (-want +got):\n%s", diff)
		}
	})
	t.Run("log-sink keys on the entry, not the message", func(t *testing.T) {
		d, err := Decode(pubsubEvent(t, entry))
		if err != nil {
			t.Fatal(err)
		}
		w := wantBase
		w.EventID, w.Source, w.Via = derivedID, derivedSource, ViaLogSink
		if diff := cmp.Diff(w, d.Trigger); diff != "" {
			t.Errorf("Trigger (-want +got):\n%s", diff)
		}
	})
	t.Run("principalSubject when there is no email", func(t *testing.T) {
		e := synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/s",
			withPayload("authenticationInfo", obj{"principalSubject": "principal://iam.googleapis.com/x"}))
		d, err := DecodeLogEntry(mustJSON(t, e))
		if err != nil {
			t.Fatal(err)
		}
		if d.Trigger.Principal != "principal://iam.googleapis.com/x" {
			t.Errorf("Principal = %q", d.Trigger.Principal)
		}
	})
	t.Run("trigger filled on malformed input", func(t *testing.T) {
		d, err := Decode(rawAuditEvent([]byte(`{"protoPayload":`)))
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error = %v", err)
		}
		if d.Trigger.EventID != "ev-1" || d.Trigger.Type != AuditLogWritten {
			t.Errorf("Trigger = %+v, want the event's id and type", d.Trigger)
		}
	})
}

func TestTargetResourceName(t *testing.T) {
	tests := []struct {
		name string
		t    Target
		want string
	}{
		{"service", Target{Kind: TargetService, Project: "p", Region: "r", Service: "s"}, "projects/p/locations/r/services/s"},
		{"project in region", Target{Kind: TargetProject, Project: "p", Region: "r"}, "projects/p/locations/r"},
		{"project", Target{Kind: TargetProject, Project: "p"}, "projects/p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.ResourceName(); got != tc.want {
				t.Errorf("ResourceName() = %q, want %q", got, tc.want)
			}
		})
	}
}
