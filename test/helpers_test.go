// Package test holds iapguard's end-to-end tests: the emulator, the
// EnforceIAP function over real HTTP (served as functions-framework-go
// serves it), the Eventarc stand-in, and a Pub/Sub subscriber — with state
// built through the official Google clients.
package test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/compute/v1"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

var update = flag.Bool("update", false, "rewrite golden files")

const region = "us-central1"

// env is one running stack plus official clients acting as a user.
type env struct {
	t   *testing.T
	ctx context.Context
	st  *stack.Stack
	cl  *demo.Clients
	p   string
	// auditMark is the audit-log length at the last mark().
	auditMark int
	statsMark core.Snapshot
	fnMark    map[string]int64
}

func newEnv(t *testing.T, opts stack.Options) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return newEnvWithin(t, ctx, opts)
}

// newEnvWithin is newEnv bounded by ctx instead of a minute (the soak's own
// deadline).
func newEnvWithin(t *testing.T, ctx context.Context, opts stack.Options) *env {
	t.Helper()
	if opts.RecordKeyData == nil {
		// A fixed key: signed access records in golden outcomes are stable.
		opts.RecordKeyData = []byte("iapguard test access-record key!")
	}
	st, err := stack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cl, err := demo.Dial(ctx, st.Emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &env{t: t, ctx: ctx, st: st, cl: cl, p: st.Project.ID}
}

func (e *env) settle() {
	e.t.Helper()
	if err := e.st.Settle(e.ctx, 150*time.Millisecond); err != nil {
		e.t.Fatal(err)
	}
	if bad := e.st.Outcomes.Invalid(); len(bad) > 0 {
		e.t.Fatalf("invalid outcome messages: %v", bad)
	}
}

// mark remembers the audit log and counters, and forgets outcomes, so the
// next assertions see only what follows.
func (e *env) mark() {
	e.settle()
	e.auditMark = len(e.st.Emu.Core.Audit.Entries())
	e.statsMark = e.st.Emu.Core.Stats.Snapshot()
	e.fnMark = e.st.Emu.Core.Stats.ByPrincipal(stack.FunctionPrincipal)
	e.st.Outcomes.Reset()
}

func (e *env) name(svc string) string {
	return "projects/" + e.p + "/locations/" + region + "/services/" + svc
}

func (e *env) create(s demo.ServiceSpec) {
	e.t.Helper()
	if _, err := e.cl.CreateService(e.ctx, e.p, region, s); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) lb(s demo.LBSpec) demo.LB {
	e.t.Helper()
	lb, err := e.cl.BuildLoadBalancer(e.ctx, e.p, region, s)
	if err != nil {
		e.t.Fatal(err)
	}
	return lb
}

func (e *env) label(svc string, labels map[string]string) {
	e.t.Helper()
	if err := e.cl.SetLabels(e.ctx, e.p, region, svc, labels); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) service(svc string) *runpb.Service {
	e.t.Helper()
	s, err := e.cl.Run.GetService(e.ctx, &runpb.GetServiceRequest{Name: e.name(svc)})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) policy(svc string) map[string][]string {
	e.t.Helper()
	p, err := e.cl.Run.GetIamPolicy(e.ctx, &iampb.GetIamPolicyRequest{Resource: e.name(svc)})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, b := range p.Bindings {
		ms := append([]string(nil), b.Members...)
		sort.Strings(ms)
		out[b.Role] = ms
	}
	return out
}

func (e *env) backend(name string) *compute.BackendService {
	e.t.Helper()
	b, err := e.cl.Compute.BackendServices.Get(e.p, name).Context(e.ctx).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// byUser returns the outcome for svc caused by the user's own change (not
// by an event of iapguard's writes), which is deterministic to compare.
func (e *env) byUser(svc string) *outcome.Message {
	e.t.Helper()
	var got *outcome.Message
	for _, m := range e.st.Outcomes.ForService(svc) {
		if m.Trigger.Principal == stack.UserPrincipal {
			if got != nil {
				e.t.Fatalf("two outcomes for %s caused by the user: %s and %s", svc, got.Trigger.Method, m.Trigger.Method)
			}
			got = m
		}
	}
	if got == nil {
		e.t.Fatalf("no outcome for %s caused by the user", svc)
	}
	return got
}

// kinds returns the outcome kinds received for svc since mark(), in order.
func (e *env) kinds(svc string) []string {
	var out []string
	for _, m := range e.st.Outcomes.ForService(svc) {
		out = append(out, string(m.Outcome))
	}
	return out
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// iapguardWrites counts, since mark(), the mutations iapguard made (audit
// entries naming its principal; a Compute operation counts once, by its
// first entry; provisioning the service agent is not counted).
func (e *env) iapguardWrites() map[string]int {
	out := map[string]int{}
	for _, en := range e.st.Emu.Core.Audit.Entries()[e.auditMark:] {
		p := en.ProtoPayload
		if p.AuthenticationInfo == nil || p.AuthenticationInfo.PrincipalEmail != stack.FunctionPrincipal {
			continue
		}
		if en.Operation != nil && en.Operation.Last || strings.Contains(p.MethodName, "GenerateServiceIdentity") {
			continue
		}
		if p.Status != nil && p.Status.Code != 0 {
			continue // a refused call, logged as failed: it changed nothing
		}
		out[p.MethodName]++
	}
	return out
}

// fnCalls returns the Google API calls the function made since mark()
// (Pub/Sub publishing excluded), and their total.
func (e *env) fnCalls() (map[string]int64, int64) {
	out := map[string]int64{}
	var total int64
	for k, v := range e.st.Emu.Core.Stats.ByPrincipal(stack.FunctionPrincipal) {
		if d := v - e.fnMark[k]; d != 0 && !strings.HasPrefix(k, "google.pubsub.") {
			out[k] = d
			total += d
		}
	}
	return out, total
}

// calls returns the API calls made since mark(), without Pub/Sub.
func (e *env) calls() map[string]int64 {
	d := e.st.Emu.Core.Stats.Snapshot().Sub(e.statsMark)
	out := map[string]int64{}
	for k, v := range d.Calls {
		if !strings.HasPrefix(k, "google.pubsub.") {
			out[k] = v
		}
	}
	return out
}

const agent = "serviceAccount:service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"

// backendIDRE matches the backend service id in IAP resource names.
var backendIDRE = regexp.MustCompile(`(/iap_web/compute(?:-[a-z0-9-]+)?/services/)[0-9]+`)

// golden compares m (volatile fields normalised) with testdata/NAME.golden.json.
func golden(t *testing.T, name string, m *outcome.Message) {
	t.Helper()
	c := *m
	c.Trigger.EventID, c.Trigger.Time, c.Time, c.DurationMs = "EVENT-ID", time.Time{}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// The emulator gives backend services random ids; IAP resource names
	// (access steps) carry them.
	b = backendIDRE.ReplaceAll(b, []byte("${1}BACKEND-ID"))
	b = append(b, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./test -update to create it): %v", err)
	}
	if d := cmp.Diff(string(want), string(b)); d != "" {
		t.Errorf("outcome %s mismatch (-golden +got):\n%s", name, d)
	}
}
