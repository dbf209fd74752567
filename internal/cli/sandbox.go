package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/spf13/cobra"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

type sandboxFlags struct {
	once    bool
	drift   bool
	region  string
	addr    string
	timeout time.Duration
	verbose bool
	dryRun  bool
}

func newSandboxCmd(s *streams) *cobra.Command {
	var f sandboxFlags
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run iapguard end to end on the embedded emulator with a demo project",
		Long: `Run the whole system locally: the Google Cloud emulator, the EnforceIAP
function over HTTP, the Eventarc stand-in and an outcomes subscriber. A demo
project is then built with the official Google clients:

  storefront  labelled, public, ingress all, behind an external HTTPS load balancer
  reports     labelled, public, no load balancer (Cloud Run's built-in IAP)
  assets      labelled, behind a Cloud CDN backend (a conflict: IAP is incompatible with CDN)
  marketing   not labelled (left alone)
  ledger      labelled, ingress internal-only (stricter ingress is kept)

Events and outcomes are shown as they happen. Then a teammate "drifts" two
services (backend IAP turned off, a public invoker added back) and iapguard
repairs them. A compliance table ends the run.

With --once the command exits 0 when every service reached its expected
state, 2 otherwise. Without it the sandbox keeps running until Ctrl-C and
prints the environment for using iapctl against it from another terminal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSandbox(cmd.Context(), s, f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.once, "once", false, "exit when the demo has converged: 0 if every service reached its expected state, 2 otherwise")
	fl.BoolVar(&f.drift, "drift", true, "after converging, simulate drift and show iapguard repairing it")
	fl.StringVar(&f.region, "region", "us-central1", "region of the demo services")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:0", "address of the embedded emulator")
	fl.DurationVar(&f.timeout, "timeout", 60*time.Second, "how long to wait for convergence")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "also show every audit-log entry and skipped outcome")
	fl.BoolVar(&f.dryRun, "dry-run", false, "run the function with IAPGUARD_DRY_RUN=true (nothing is changed; expect remediated outcomes)")
	return cmd
}

// sandboxView prints events and outcomes as they happen.
type sandboxView struct {
	mu      sync.Mutex
	out     io.Writer
	start   time.Time
	verbose bool
	// creates reports whether a service is one the demo is still building;
	// notYetHidden counts the "not found" outcomes hidden for such.
	creates      func(service string) bool
	notYetHidden int
}

func (v *sandboxView) printf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(v.out, "%7.3fs  ", time.Since(v.start).Seconds())
	fmt.Fprintf(v.out, format, args...)
	fmt.Fprintln(v.out)
}

func (v *sandboxView) onEntry(e *core.LogEntry) {
	p := e.ProtoPayload
	if p == nil {
		return
	}
	if !v.verbose && e.Operation != nil && e.Operation.First {
		return
	}
	m := p.MethodName
	if parts := strings.Split(m, "."); len(parts) >= 2 {
		m = parts[len(parts)-2] + "." + parts[len(parts)-1]
	}
	who := p.AuthenticationInfo.PrincipalEmail
	if strings.HasPrefix(who, "iapguard@") {
		who = "iapguard"
	}
	v.printf("audit    %-34s %-48s by %s", m, shortName(p.ResourceName), who)
}

func (v *sandboxView) onOutcome(m *outcome.Message) {
	if !v.verbose && m.Outcome == outcome.Skipped && m.Resource.Service == "" {
		return
	}
	if !v.verbose && m.Outcome == outcome.Skipped && v.notYet(m) {
		// An event about a demo service the build has not finished
		// creating yet: the function finds nothing, and its event for the
		// creation follows.
		v.mu.Lock()
		v.notYetHidden++
		v.mu.Unlock()
		return
	}
	detail := gcloudIngress(m.Reason)
	if len(m.Changes) > 0 {
		var cs []string
		for _, c := range m.Changes {
			if strings.HasPrefix(c.Field, "annotations[") {
				continue // iapguard's own bookkeeping
			}
			cs = append(cs, changeShort(c))
		}
		detail = strings.Join(cs, ", ")
	}
	name := cmp.Or(m.Resource.Service, shortName(m.Resource.Name))
	kind := string(m.Outcome)
	if m.DryRun {
		kind += " (dry run)"
	}
	v.printf("outcome  %-21s %-12s %s", kind, name, cutAtWord(detail, 110))
}

// notYet reports whether m says "not found" about a demo service while the
// demo is still being built (the demo deletes nothing, so the service is
// one not created yet).
func (v *sandboxView) notYet(m *outcome.Message) bool {
	if v.creates == nil || !strings.Contains(m.Reason, "not found") {
		return false
	}
	return v.creates(m.Resource.Service)
}

// cutAtWord shortens s to at most n runes, at a word boundary, marking the
// cut with "…".
func cutAtWord(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	cut := string(r[:n-1])
	if i := strings.LastIndexAny(cut, " ,;"); i > n/2 {
		cut = strings.TrimRight(cut[:i], " ,;")
	}
	return cut + " …"
}

// changeShort renders a change for one terminal line.
func changeShort(c outcome.Change) string {
	if strings.HasPrefix(c.Field, "iamPolicy[") {
		role := strings.TrimSuffix(strings.TrimPrefix(c.Field, "iamPolicy["), "]")
		role = strings.TrimPrefix(role, "roles/run.")
		if c.After == "" {
			return role + " -" + memberShort(c.Before)
		}
		return role + " +" + memberShort(c.After)
	}
	return c.Field + "=" + gcloudIngress(c.After)
}

func memberShort(m string) string {
	if strings.Contains(m, "@gcp-sa-iap.iam.gserviceaccount.com") {
		return "iap-agent"
	}
	return m
}

func shortName(n string) string {
	if i := strings.Index(n, "/locations/"); i >= 0 {
		return n[i+len("/locations/"):]
	}
	if i := strings.Index(n, "/global/"); i >= 0 {
		return n[i+1:]
	}
	if i := strings.Index(n, "/regions/"); i >= 0 {
		return n[i+1:]
	}
	return n
}

func runSandbox(ctx context.Context, s *streams, f sandboxFlags) error {
	view := &sandboxView{out: s.out, start: time.Now(), verbose: f.verbose}
	// TopicTriggers: replay messages published to the replay topic
	// (iapctl replay --via-topic) reach the function, as in a deployment.
	st, err := stack.Start(ctx, stack.Options{EmulatorAddr: f.addr, DryRun: f.dryRun, OnOutcome: view.onOutcome, Emulator: emulator.Options{TopicTriggers: true}})
	if err != nil {
		return withCode(ExitError, fmt.Errorf("starting the sandbox: %w", err))
	}
	defer st.Close()
	stop := st.Emu.Core.Audit.Listen(view.onEntry)
	defer stop()
	fmt.Fprintf(s.out, "iapguard sandbox: emulator on %s, EnforceIAP at %s, project %s (%d)\n\n",
		st.Emu.Addr(), st.FunctionURL, st.Project.ID, st.Project.Number)

	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	clients, err := demo.Dial(cctx, st.Emu.Addr())
	if err != nil {
		return withCode(ExitError, err)
	}
	defer clients.Close()
	sc := demo.DefaultScenario()
	demoServices := map[string]bool{}
	for _, e := range sc.Expect {
		demoServices[e.Service] = true
	}
	var building atomic.Bool // until the build's events have settled
	building.Store(true)
	view.creates = func(svc string) bool { return building.Load() && demoServices[svc] }
	fmt.Fprintln(s.out, "— building the demo project as developer@example.com —")
	if err := clients.Build(cctx, st.Project.ID, f.region, sc); err != nil {
		return withCode(ExitError, fmt.Errorf("building the demo project: %w", err))
	}
	if err := st.Settle(cctx, 400*time.Millisecond); err != nil {
		return withCode(ExitError, err)
	}
	building.Store(false)
	if f.drift && !f.dryRun {
		fmt.Fprintln(s.out, "\n— drift: a teammate turns storefront's backend IAP off and makes reports public again —")
		if err := clients.SetBackendIAP(cctx, st.Project.ID, "storefront-backend", false); err != nil {
			return withCode(ExitError, err)
		}
		if err := makePublic(cctx, clients, st.Project.ID, f.region, "reports"); err != nil {
			return withCode(ExitError, err)
		}
		if err := st.Settle(cctx, 400*time.Millisecond); err != nil {
			return withCode(ExitError, err)
		}
	}
	stop()

	ok, err := sandboxTable(cctx, s.out, st, clients, f, sc)
	if err != nil {
		return withCode(ExitError, err)
	}
	printSandboxStats(s.out, st)
	if view.notYetHidden > 0 {
		fmt.Fprintf(s.out, "(%d skipped outcome(s) for demo services not created yet when their event was handled are hidden; -v shows them)\n", view.notYetHidden)
	}
	if f.once {
		if !ok {
			return withCode(ExitNonCompliant, fmt.Errorf("the demo did not converge to its expected state"))
		}
		return nil
	}
	fmt.Fprintln(s.out, "\nThe sandbox keeps running; use iapctl against it from another terminal with:")
	for _, l := range st.Env() {
		fmt.Fprintln(s.out, "  export "+l)
	}
	fmt.Fprintln(s.out, "  export GOOGLE_CLOUD_PROJECT="+st.Project.ID)
	fmt.Fprintln(s.out, "Press Ctrl-C to stop.")
	<-ctx.Done()
	return nil
}

// makePublic adds allUsers back to roles/run.invoker, as
// `gcloud run services add-iam-policy-binding --member=allUsers` does.
// The policy is read as version 3 so that conditional bindings survive the
// write (a version-1 read returns them without their conditions), and
// allUsers joins the unconditional binding only.
func makePublic(ctx context.Context, c *demo.Clients, project, region, service string) error {
	name := fmt.Sprintf("projects/%s/locations/%s/services/%s", project, region, service)
	p, err := c.Run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name, Options: policyV3})
	if err != nil {
		return fmt.Errorf("reading IAM policy of %s: %w", service, err)
	}
	added := false
	for _, b := range p.Bindings {
		if b.Role == "roles/run.invoker" && b.Condition == nil {
			b.Members = append(b.Members, "allUsers")
			added = true
		}
	}
	if !added {
		p.Bindings = append(p.Bindings, &iampb.Binding{Role: "roles/run.invoker", Members: []string{"allUsers"}})
	}
	if _, err := c.Run.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: p}); err != nil {
		return fmt.Errorf("making %s public: %w", service, err)
	}
	return nil
}

// sandboxTable prints the final compliance table from live state and a
// dry-run reconcile of each service, and reports whether every service is
// where the scenario expects it.
func sandboxTable(ctx context.Context, w io.Writer, st *stack.Stack, c *demo.Clients, f sandboxFlags, sc demo.Scenario) (bool, error) {
	if f.dryRun {
		fmt.Fprintln(w, "\n— compliance (live state; the function ran in dry-run mode and changed nothing, so PLAN NOW, a dry-run reconcile now, still shows what a real run would do) —")
	} else {
		fmt.Fprintln(w, "\n— compliance (live state; PLAN NOW is a dry-run reconcile now, which must plan no change) —")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tLABEL\tLAST OUTCOME\tPLAN NOW\tMODE\tINGRESS\tIAP\tPUBLIC\tEXPECTED\t")
	all := true
	for _, e := range sc.Expect {
		ref := iapsetup.ServiceRef{Project: st.Project.ID, Region: f.region, Name: e.Service}
		name := ref.String()
		svc, err := c.Run.GetService(ctx, &runpb.GetServiceRequest{Name: name})
		if err != nil {
			return false, fmt.Errorf("reading %s: %w", e.Service, err)
		}
		pol, err := c.Run.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name, Options: policyV3})
		if err != nil {
			return false, fmt.Errorf("reading IAM policy of %s: %w", e.Service, err)
		}
		plan, err := st.Fn.Reconciler.Reconcile(ctx, ref, iapsetup.WithDryRun(true))
		if err != nil {
			return false, fmt.Errorf("planning %s: %w", e.Service, err)
		}
		last, lastShown := "-", "-"
		if m := st.Outcomes.Latest(e.Service); m != nil {
			last, lastShown = string(m.Outcome), string(m.Outcome)
			if m.DryRun {
				lastShown += " (dry run)"
			}
		}
		want := e.Outcome
		if f.dryRun && want == "compliant" {
			want = "remediated"
		}
		planNow := string(plan.Outcome)
		// In dry-run mode nothing changes, so a dry-run plan now still
		// says remediated; otherwise the plan must agree with the outcome.
		good := last == want && planNow == want
		mark := "✓ " + want
		if !good {
			mark = "✗ want " + want
			all = false
		}
		label := dash(svc.GetLabels()["iap"])
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", e.Service, label, lastShown, planNow, dash(string(plan.Mode)),
			gcloudIngress(svc.GetIngress().String()), iapState(ctx, c, st.Project.ID, svc, plan), yesNo(isPublic(pol)), mark)
	}
	tw.Flush()
	return all, nil
}

// policyV3 asks for policies in version 3, so conditional bindings come
// back with their conditions (a lower version returns them without, under
// a ROLE_withcond_HASH role).
var policyV3 = &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}

// isPublic reports whether anybody may invoke the service, conditionally
// or not.
func isPublic(p *iampb.Policy) bool {
	for _, b := range p.GetBindings() {
		if b.Role != "roles/run.invoker" {
			continue
		}
		for _, m := range b.Members {
			if m == "allUsers" || m == "allAuthenticatedUsers" {
				return true
			}
		}
	}
	return false
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// iapState summarises where IAP is on: the service's built-in IAP and the
// fronting backends named in the plan's backend-iap steps.
func iapState(ctx context.Context, c *demo.Clients, project string, svc *runpb.Service, plan *iapsetup.Result) string {
	var parts []string
	if svc.GetIapEnabled() {
		parts = append(parts, "cloud-run")
	}
	var backends []string
	for _, step := range plan.Steps {
		if step.Name != outcome.StepBackendIAP || step.Resource == "" {
			continue
		}
		name := step.Resource[strings.LastIndex(step.Resource, "/")+1:]
		if bs, err := c.Compute.BackendServices.Get(project, name).Context(ctx).Do(); err == nil && bs.Iap != nil && bs.Iap.Enabled {
			backends = append(backends, name)
		} else {
			backends = append(backends, name+"(off)")
		}
	}
	sort.Strings(backends)
	parts = append(parts, backends...)
	if len(parts) == 0 {
		return "off"
	}
	return strings.Join(parts, ",")
}

func printSandboxStats(w io.Writer, st *stack.Stack) {
	ds := st.Emu.Delivery.Stats()
	msgs := st.Outcomes.All()
	counts := map[outcome.Kind]int{}
	for _, m := range msgs {
		counts[m.Outcome]++
	}
	var kinds []string
	for _, k := range outcome.Kinds() {
		if counts[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, counts[k]))
		}
	}
	fmt.Fprintf(w, "\nevents delivered %d (attempts %d), outcomes %d (%s)\n", ds.Delivered, ds.Attempts, len(msgs), strings.Join(kinds, ", "))
}
