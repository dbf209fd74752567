package logging

import (
	"strings"
	"testing"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
)

func synthetic() *core.LogEntry {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	return &core.LogEntry{
		ProtoPayload: &core.AuditPayload{
			Type:               "type.googleapis.com/google.cloud.audit.AuditLog",
			AuthenticationInfo: &core.AuthenticationInfo{PrincipalEmail: "alice@example.com"},
			ServiceName:        "run.googleapis.com",
			MethodName:         "google.cloud.run.v2.Services.UpdateService",
			ResourceName:       "projects/demo-project/locations/us-central1/services/hello",
			Request:            map[string]any{"@type": "type.googleapis.com/google.cloud.run.v2.UpdateServiceRequest", "allowMissing": false},
		},
		InsertID:         "synthetic-abc",
		Resource:         core.MonitoredResource{Type: "cloud_run_revision", Labels: map[string]string{"service_name": "hello", "location": "us-central1"}},
		Timestamp:        ts,
		Severity:         "NOTICE",
		Labels:           map[string]string{"compute.googleapis.com/root_trigger_id": "trig-1"},
		LogName:          "projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity",
		Operation:        &core.EntryOperation{ID: "op-1", Producer: "run.googleapis.com", Last: true},
		ReceiveTimestamp: ts.Add(time.Second),
	}
}

func TestFilterMatches(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		want   bool
	}{
		{"empty", "", true},
		{"method equals", `protoPayload.methodName="google.cloud.run.v2.Services.UpdateService"`, true},
		{"method differs", `protoPayload.methodName="google.cloud.run.v2.Services.CreateService"`, false},
		{"equality ignores case", `protoPayload.serviceName="RUN.googleapis.com"`, true},
		{"not equal", `protoPayload.serviceName!="compute.googleapis.com"`, true},
		{"resource type bare value", `resource.type=cloud_run_revision`, true},
		{"log name", `logName="projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity"`, true},
		{"has substring", `protoPayload.resourceName:"services/hel"`, true},
		{"has is case-insensitive", `protoPayload.resourceName:"SERVICES/HELLO"`, true},
		{"has misses", `protoPayload.resourceName:"backendServices"`, false},
		{"timestamp >= before", `timestamp >= "2025-03-04T05:06:07Z"`, true},
		{"timestamp > exact", `timestamp > "2025-03-04T05:06:07.123456789Z"`, false},
		{"timestamp <= exact", `timestamp<="2025-03-04T05:06:07.123456789Z"`, true},
		{"timestamp < before", `timestamp < "2025-03-04T05:06:07Z"`, false},
		{"timestamp = other zone", `timestamp = "2025-03-04T06:06:07.123456789+01:00"`, true},
		{"receiveTimestamp", `receiveTimestamp > "2025-03-04T05:06:08Z"`, true},
		{"severity ordering", `severity >= NOTICE`, true},
		{"severity ordering above", `severity>=ERROR`, false},
		{"severity equality", `severity = "notice"`, true},
		{"and", `protoPayload.serviceName="run.googleapis.com" AND resource.type="cloud_run_revision"`, true},
		{"implicit and", `protoPayload.serviceName="run.googleapis.com" resource.type="gce_backend_service"`, false},
		{"or", `protoPayload.methodName="x" OR protoPayload.methodName="google.cloud.run.v2.Services.UpdateService"`, true},
		{"not", `NOT protoPayload.methodName="x"`, true},
		{"minus", `-protoPayload.methodName="google.cloud.run.v2.Services.UpdateService"`, false},
		{"parentheses", `(protoPayload.methodName="x" OR protoPayload.methodName="y") AND severity=NOTICE`, false},
		{"or binds tighter than and", `protoPayload.methodName="x" OR severity=NOTICE AND resource.type="nope"`, false},
		{"not with parentheses", `NOT (protoPayload.methodName="x" OR severity=ERROR)`, true},
		{"resource label", `resource.labels.service_name="hello"`, true},
		{"quoted label key", `labels."compute.googleapis.com/root_trigger_id"="trig-1"`, true},
		{"nested payload", `protoPayload.authenticationInfo.principalEmail="alice@example.com"`, true},
		{"bool field", `operation.last=true`, true},
		{"absent bool field", `operation.first=true`, false},
		{"request bool", `protoPayload.request.allowMissing=false`, true},
		{"presence", `operation.id:*`, true},
		{"absence", `NOT protoPayload.status:*`, true},
		{"missing field never equals", `protoPayload.status.code=0`, false},
		{"missing field not equal", `protoPayload.status.code!=0`, true},
		{"default logadmin clause", `protoPayload.serviceName="run.googleapis.com" AND timestamp >= "2025-03-03T05:06:07Z"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseFilter(tt.filter)
			if err != nil {
				t.Fatalf("parseFilter(%q): %v", tt.filter, err)
			}
			if got := f.eval(&entryView{e: synthetic()}); got != tt.want {
				t.Errorf("filter %q matched = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

func TestFilterRejects(t *testing.T) {
	tests := []struct {
		name    string
		filter  string
		wantErr string
	}{
		{"global restriction string", `"hello"`, "global restriction"},
		{"global restriction word", `hello`, "global restriction"},
		{"regex", `protoPayload.methodName=~"Update.*"`, "not supported"},
		{"negated regex", `protoPayload.methodName!~"Update.*"`, "not supported"},
		{"value list", `resource.type=("a" OR "b")`, "value lists"},
		{"function", `SEARCH("hello")`, "function SEARCH"},
		{"unknown top-level field", `method="x"`, "unknown field"},
		{"ordering on string", `protoPayload.methodName > "a"`, "not supported"},
		{"bad time", `timestamp >= "yesterday"`, "RFC 3339"},
		{"unknown severity", `severity >= LOUD`, "unknown severity"},
		{"unbalanced", `(severity=ERROR`, "missing ')'"},
		{"dangling and", `severity=ERROR AND`, "expected a field"},
		{"lowercase and", `severity=ERROR and resource.type="x"`, "global restriction"},
		{"missing value", `severity=`, "expected a value"},
		{"unterminated string", `logName="abc`, "unterminated"},
		{"double equals", `severity==ERROR`, "not supported"},
		{"stray paren", `severity=ERROR)`, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFilter(tt.filter)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseFilter(%q) error = %v, want one containing %q", tt.filter, err, tt.wantErr)
			}
		})
	}
}
