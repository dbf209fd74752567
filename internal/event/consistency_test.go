package event

import (
	"strings"
	"testing"

	"github.com/iapguard/iapguard/eventarc"
)

// synthResourceName returns a resourceName shaped the way Google logs it
// for method, and whether the shape is known.
func synthResourceName(method string) (string, bool) {
	switch method {
	case RunV1CreateService, RunV1ReplaceService:
		return "namespaces/p1/services/hello", true
	case RunV1SetIamPolicy, RunV2CreateService, RunV2UpdateService, RunV2SetIamPolicy:
		return "projects/p1/locations/us-central1/services/hello", true
	}
	cm, ok := parseComputeMethod(method)
	if !ok {
		return "", false
	}
	switch cm.Collection {
	case "backendServices":
		return "projects/p1/global/backendServices/web", true
	case "regionBackendServices":
		return "projects/p1/regions/us-central1/backendServices/web", true
	case "regionNetworkEndpointGroups":
		return "projects/p1/regions/us-central1/networkEndpointGroups/neg", true
	}
	return "", false
}

func loadTriggers(t *testing.T) []eventarc.Trigger {
	t.Helper()
	ts, err := eventarc.Load()
	if err != nil {
		t.Fatalf("eventarc.Load: %v", err)
	}
	if len(eventarc.AuditLogTriggers(ts)) == 0 {
		t.Fatal("no audit-log triggers defined")
	}
	return ts
}

// Every audit-log trigger delivers entries the decoder acts on: a
// successful final entry for its method decodes to a target or a Compute
// ref, and the trigger's location fits where that resource lives (global
// Compute resources need a global trigger, regional ones a regional one).
func TestEveryTriggerIsDecoded(t *testing.T) {
	for _, tr := range eventarc.AuditLogTriggers(loadTriggers(t)) {
		t.Run(tr.Name, func(t *testing.T) {
			rn, ok := synthResourceName(tr.MethodName)
			if !ok {
				t.Fatalf("trigger method %q is not one the decoder acts on", tr.MethodName)
			}
			if tr.ResourceNamePattern != "" && !eventarc.MatchPathPattern(tr.ResourceNamePattern, rn) {
				t.Fatalf("resourceNamePattern %q does not match the resourceName Google logs for %s (%s)", tr.ResourceNamePattern, tr.MethodName, rn)
			}
			if !tr.MatchesAuditLog(tr.ServiceName, tr.MethodName, rn) {
				t.Fatalf("trigger does not match its own method")
			}
			entry := synthEntry(tr.ServiceName, tr.MethodName, rn, withOp(false, true), withLocationLabel("us-central1"))
			ev, err := NewAuditLogEvent(mustJSON(t, entry))
			if err != nil {
				t.Fatal(err)
			}
			d, err := Decode(ev)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			// Eventarc's location rule (eventarc.Receives): the trigger,
			// deployed once beside a function in another region, must
			// receive the entry of this resource wherever it lives.
			trigLoc := tr.Location
			if trigLoc == "region" {
				trigLoc = "europe-west4" // the function's region, not the resource's
			}
			var resLoc string
			switch {
			case len(d.Targets) == 1:
				resLoc = d.Targets[0].Region
			case d.Compute != nil && d.Compute.Region == "":
				resLoc = "global"
			case d.Compute != nil:
				resLoc = d.Compute.Region
			}
			switch {
			case resLoc != "":
				if !eventarc.Receives(trigLoc, resLoc) {
					t.Errorf("trigger in location %q does not receive the entries of a resource in %q", tr.Location, resLoc)
				}
			default:
				t.Errorf("decision %+v: the decoder ignores what this trigger delivers", d)
			}
		})
	}
}

// Every method the decoder acts on has a trigger with the right
// serviceName, so no handled change goes unnoticed.
func TestEveryHandledMethodHasATrigger(t *testing.T) {
	audit := eventarc.AuditLogTriggers(loadTriggers(t))
	for _, m := range HandledMethods() {
		t.Run(m, func(t *testing.T) {
			rn, ok := synthResourceName(m)
			if !ok {
				t.Fatalf("no resourceName shape for handled method %q", m)
			}
			svc := ServiceNameOf(m)
			for _, tr := range audit {
				if tr.MatchesAuditLog(svc, m, rn) {
					return
				}
			}
			t.Errorf("no trigger in eventarc/triggers.yaml fires for %s %s", svc, m)
		})
	}
}

func TestHandledMethods(t *testing.T) {
	ms := HandledMethods()
	if len(ms) != 6+3*9 {
		t.Errorf("HandledMethods has %d entries, want %d (6 Cloud Run, 9 Compute for each of v1, beta, alpha)", len(ms), 6+3*9)
	}
	for _, m := range ms {
		if ServiceNameOf(m) == "" {
			t.Errorf("ServiceNameOf(%q) is empty", m)
		}
		if strings.Contains(m, "delete") || strings.Contains(m, "Delete") {
			t.Errorf("HandledMethods contains a delete: %q", m)
		}
	}
	ms[0] = "mutated"
	if HandledMethods()[0] == "mutated" {
		t.Error("HandledMethods returns its internal slice")
	}
	if got := ServiceNameOf("v1.compute.instances.insert"); got != "" {
		t.Errorf("ServiceNameOf(instances.insert) = %q, want empty", got)
	}
}
