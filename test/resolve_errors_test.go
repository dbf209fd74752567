package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"google.golang.org/api/compute/v1"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// A Compute event whose resolution to Cloud Run services fails
// permanently (the backend service's or the NEG's read answers 403) is
// acknowledged with exactly one failed outcome for the resource the event
// named, whose reason says what was being done; the function's log says
// the same, once. Before the fix nothing was published while the log said
// "acknowledged with a failed outcome".
func TestResolveFailureIsReportedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// change makes the user's Compute change, the failure armed for
		// the function's read that follows; it returns the resource the
		// event names and the method of its audit entry.
		change func(e *env, lb demo.LB) (resource, method string)
		doing  string // what the reason must say was being done
		golden string // the golden file of the failed outcome, if any
	}{
		{
			name: "backend service patched",
			change: func(e *env, lb demo.LB) (string, string) {
				bs := e.backend(lb.BackendService)
				failNext(e, "compute.backendServices.get", codes.PermissionDenied)
				op, err := e.cl.Compute.BackendServices.Patch(e.p, lb.BackendService, &compute.BackendService{
					Fingerprint: bs.Fingerprint, Description: "edited by hand",
				}).Context(e.ctx).Do()
				waitGlobal(e, op, err)
				return "projects/" + e.p + "/global/backendServices/" + lb.BackendService, "v1.compute.backendServices.patch"
			},
			doing:  "reading backend service",
			golden: "resolve-permission-denied-failed",
		},
		{
			name: "serverless NEG inserted",
			change: func(e *env, _ demo.LB) (string, string) {
				failNext(e, "compute.regionNetworkEndpointGroups.get", codes.PermissionDenied)
				op, err := e.cl.Compute.RegionNetworkEndpointGroups.Insert(e.p, region, &compute.NetworkEndpointGroup{
					Name: "web-neg-2", NetworkEndpointType: "SERVERLESS",
					CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "web"},
				}).Context(e.ctx).Do()
				waitRegion(e, op, err)
				return "projects/" + e.p + "/regions/" + region + "/networkEndpointGroups/web-neg-2", "v1.compute.regionNetworkEndpointGroups.insert"
			},
			doing: "reading network endpoint group",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs lockedLog
			e := newEnv(t, stack.Options{Emulator: fastRetries, FunctionLog: &logs})
			e.create(demo.ServiceSpec{Name: "web", Public: true})
			lb := e.lb(demo.LBSpec{Service: "web"})
			e.mark()
			logs.reset()
			resource, method := tc.change(e, lb)
			e.settle()

			var failed []string
			var last *outcome.Message
			for _, m := range e.st.Outcomes.All() {
				if m.Outcome == "skipped" && m.Trigger.Method == method && strings.Contains(m.Reason, "operation's last entry") {
					continue // the operation's first entry
				}
				if m.Outcome != "failed" {
					t.Errorf("outcome %s for %s (%s): want only the failed one", m.Outcome, m.Resource.Name, m.Reason)
					continue
				}
				failed = append(failed, m.Trigger.EventID)
				last = m
				if m.Trigger.Method != method || m.Trigger.Principal != stack.UserPrincipal {
					t.Errorf("failed outcome caused by %s of %s, want %s of %s", m.Trigger.Method, m.Trigger.Principal, method, stack.UserPrincipal)
				}
				if m.Resource.Name != resource || m.Resource.Project != e.p || m.Resource.Service != "" {
					t.Errorf("failed outcome resource %+v, want name %s in project %s, no service", m.Resource, resource, e.p)
				}
				if !strings.Contains(m.Reason, tc.doing) || !strings.Contains(m.Reason, resource) || !strings.Contains(m.Reason, "403") {
					t.Errorf("reason %q: want it to name %s, %q and the 403", m.Reason, resource, tc.doing)
				}
			}
			var event string // of the failed outcome
			if len(failed) == 1 {
				event = failed[0]
				if tc.golden != "" {
					golden(t, tc.golden, last)
				}
			} else {
				t.Errorf("failed outcomes %d, want exactly 1", len(failed))
			}
			if ds := e.st.Emu.Delivery.Stats(); ds.Retried != 0 {
				t.Errorf("delivery stats %+v: a permanent failure must not be redelivered", ds)
			}
			// The log: one line for the outcome, and the event's line says
			// it was acknowledged with it.
			lines := logs.lines(t)
			var outcomeLines, ackLines int
			for _, l := range lines {
				switch l["message"] {
				case "outcome failed":
					outcomeLines++
					if l["resource"] != resource || l["eventId"] != event {
						t.Errorf("log line %v: want resource %s, event %s", l, resource, event)
					}
				case "permanent failure; acknowledged with a failed outcome":
					ackLines++
					if l["eventId"] != event {
						t.Errorf("log line %v: want the event of the failed outcome (%q)", l, event)
					}
				case "transient failure; returning an error so Eventarc redelivers":
					t.Errorf("log line %v for a permanent failure", l)
				}
			}
			if outcomeLines != 1 || ackLines != 1 {
				t.Errorf("log lines: %d \"outcome failed\", %d acknowledgements; want 1 and 1:\n%s", outcomeLines, ackLines, logs.String())
			}
		})
	}
}

// A transient failure of the same read returns an error: Eventarc
// redelivers the event, nothing failed is published, and the redelivery
// resolves the backend service.
func TestTransientResolveFailureIsRedelivered(t *testing.T) {
	t.Parallel()
	var logs lockedLog
	e := newEnv(t, stack.Options{Emulator: fastRetries, FunctionLog: &logs})
	e.create(demo.ServiceSpec{Name: "web", Public: true})
	lb := e.lb(demo.LBSpec{Service: "web"})
	e.mark()
	logs.reset()
	bs := e.backend(lb.BackendService)
	failNext(e, "compute.backendServices.get", codes.Unavailable)
	op, err := e.cl.Compute.BackendServices.Patch(e.p, lb.BackendService, &compute.BackendService{
		Fingerprint: bs.Fingerprint, Description: "edited by hand",
	}).Context(e.ctx).Do()
	waitGlobal(e, op, err)
	e.settle()
	for _, m := range e.st.Outcomes.All() {
		if m.Outcome == "failed" {
			t.Errorf("a transient resolve failure published a failed outcome: %s", m.Reason)
		}
	}
	if ds := e.st.Emu.Delivery.Stats(); ds.Retried == 0 {
		t.Errorf("delivery stats %+v: want a redelivery after the transient failure", ds)
	}
	// The redelivery resolved the backend: the (unlabelled) service's outcome.
	if ks := e.kinds("web"); count(ks, "skipped") != 1 {
		t.Errorf("outcomes for web = %v, want one skipped after the redelivery", ks)
	}
	var transient int
	for _, l := range logs.lines(t) {
		switch l["message"] {
		case "transient failure; returning an error so Eventarc redelivers":
			transient++
		case "permanent failure; acknowledged with a failed outcome", "outcome failed":
			t.Errorf("log line %v for a transient failure", l)
		}
	}
	if transient != 1 {
		t.Errorf("transient failure log lines = %d, want 1:\n%s", transient, logs.String())
	}
}

func failNext(e *env, method string, code codes.Code) {
	e.t.Helper()
	if err := e.st.Emu.Core.Faults.FailNext(method, 1, code); err != nil {
		e.t.Fatal(err)
	}
}

// waitGlobal and waitRegion wait for the user's Compute operation.
func waitGlobal(e *env, op *compute.Operation, err error) {
	e.t.Helper()
	waitOp(e, op, err, func(name string) (*compute.Operation, error) {
		return e.cl.Compute.GlobalOperations.Wait(e.p, name).Context(e.ctx).Do()
	})
}

func waitRegion(e *env, op *compute.Operation, err error) {
	e.t.Helper()
	waitOp(e, op, err, func(name string) (*compute.Operation, error) {
		return e.cl.Compute.RegionOperations.Wait(e.p, region, name).Context(e.ctx).Do()
	})
}

func waitOp(e *env, op *compute.Operation, err error, wait func(name string) (*compute.Operation, error)) {
	e.t.Helper()
	for err == nil && op.Status != "DONE" {
		op, err = wait(op.Name)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if op.Error != nil {
		e.t.Fatalf("operation %s failed: %+v", op.Name, op.Error.Errors[0])
	}
}

// lockedLog collects the function's JSON log lines while it runs.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// lines decodes the lines logged so far.
func (l *lockedLog) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
