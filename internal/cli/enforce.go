package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

type enforceFlags struct {
	opFlags
	scopeFlags
	all    bool
	dryRun bool
}

func newEnforceCmd(s *streams) *cobra.Command {
	var f enforceFlags
	cmd := &cobra.Command{
		Use:   "enforce SERVICE | --all [--all-projects]",
		Short: "Reconcile now, with the function's reconciler; --dry-run prints the plan",
		Long: `Reconcile one Cloud Run service (SERVICE, with --region) or every service of
the project (--all; every region unless --region is given) right now, with
the same reconciler the EnforceIAP function runs, using your credentials.
Only services labelled iap=enabled are changed.

--all-projects does --all in every project in --scope (default
$IAPGUARD_PROJECTS, the function's scope), found through Resource Manager;
--all may be left out. A project whose services cannot be listed is
reported and the others go on (exit 1 at the end).

--dry-run prints the plan — each rule's state and every change iapguard
would make — and changes nothing.

Exit status: 0 when every labelled service complies afterwards (with
--dry-run: would need no change), 2 when one does not (a conflict, a
rejected label, or with --dry-run pending changes), 1 on errors.`,
		Example: `  iapctl enforce storefront --project my-project --region europe-west1 --dry-run
  iapctl enforce --all --project my-project
  iapctl enforce --all --all-projects --scope 'team-*' --dry-run`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEnforce(cmd.Context(), s, &f, args)
		},
	}
	f.opFlags.add(cmd, regionOptional, 5*time.Minute)
	f.scopeFlags.add(cmd, "reconcile")
	fl := cmd.Flags()
	fl.BoolVar(&f.all, "all", false, "every service of the project (in --region, if given)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan; change nothing")
	return cmd
}

// enforceReport is enforce's JSON output.
type enforceReport struct {
	Project string `json:"project"` // "" with --all-projects
	// Scope and Projects: with --all-projects, the scope and how each
	// project's scan went.
	Scope    string          `json:"scope,omitempty"`
	Projects []projectResult `json:"projects,omitempty"`
	Region   string          `json:"region"`
	DryRun   bool            `json:"dryRun"`
	Services []serviceReport `json:"services"`
	// Interrupted: the run was interrupted; Services are those done.
	Interrupted bool `json:"interrupted,omitempty"`
}

func runEnforce(ctx context.Context, s *streams, f *enforceFlags, args []string) error {
	sc, err := f.scopeFlags.resolve(ctx)
	if err != nil {
		return fail(err)
	}
	if f.allProjects {
		if len(args) > 0 {
			return fail(errors.New("give a SERVICE or --all-projects, not both"))
		}
		return runEnforceAll(ctx, s, f, sc)
	}
	switch {
	case len(args) == 1 && f.all:
		return fail(errors.New("give a SERVICE or --all, not both"))
	case len(args) == 0 && !f.all:
		return fail(errors.New("give a SERVICE (with --region) or --all"))
	}
	ru := regionOptional
	if len(args) == 1 {
		ru = regionRequired
		if !validName(args[0]) {
			return fail(fmt.Errorf("service %q is not a Cloud Run service name", args[0]))
		}
	}
	if err := f.opFlags.resolve(ctx, ru, true); err != nil {
		return fail(err)
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	sess, err := f.connect(ctx, scope.New(f.project), f.dryRun)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()

	rep := enforceReport{Project: f.project, Region: f.region, DryRun: f.dryRun}
	var ie *interruptedError
	if f.all {
		prog := newProgressBar(s.err, true, "services")
		rep.Services, err = scanServices(ctx, sess, f.region, f.dryRun, prog)
		prog.finish()
		if err != nil && !errors.As(err, &ie) {
			return fail(err)
		}
		rep.Services = orEmpty(rep.Services)
	} else {
		ref := iapsetup.ServiceRef{Project: f.project, Region: f.region, Name: args[0]}
		svc, err := sess.clients.RunAdapter.GetService(ctx, ref)
		if err != nil {
			if interrupted(ctx) {
				return withCode(ExitInterrupted, &interruptedError{unit: "service(s)", notStarted: 1})
			}
			return fail(sess.serviceError(ctx, ref, err))
		}
		// Once started, the reconcile finishes despite an interrupt
		// (finishContext), so the service is not left partly changed.
		work, stopWork := finishContext(ctx)
		res, rerr := sess.rec.Reconcile(work, ref, iapsetup.WithDryRun(f.dryRun), iapsetup.WithAccessCheck())
		stopWork()
		if rerr != nil && isCtxErr(rerr) {
			if interrupted(ctx) {
				return withCode(ExitInterrupted, &interruptedError{unit: "service(s)", abandoned: 1})
			}
			return fail(explain(rerr, sess.emulator))
		}
		rep.Services = []serviceReport{newServiceReport(ref, svc, viewOfResult(res), rerr)}
	}
	rep.Interrupted = ie != nil
	return finishScan(s, f.output, rep, func(w io.Writer) { writePlans(w, rep) }, ie, nil, rep.Services)
}

// runEnforceAll is enforce --all-projects: --all in every project in
// scope (scanScope).
func runEnforceAll(ctx context.Context, s *streams, f *enforceFlags, sc scope.Scope) error {
	reports, results, err := scanScope(ctx, &f.opFlags, sc, f.dryRun, newProgressBar(s.err, true, "services"))
	var ie *interruptedError
	if err != nil && !errors.As(err, &ie) {
		return fail(err)
	}
	rep := enforceReport{Scope: sc.String(), Projects: results, Region: f.region, DryRun: f.dryRun, Services: orEmpty(reports), Interrupted: ie != nil}
	return finishScan(s, f.output, rep, func(w io.Writer) { writePlans(w, rep) }, ie, results, rep.Services)
}

// writePlans prints each service's outcome, rules and changes.
func writePlans(w io.Writer, rep enforceReport) {
	counts := map[string]int{}
	var order []string
	for i, r := range rep.Services {
		if i > 0 {
			fmt.Fprintln(w)
		}
		state := r.State
		if r.DryRun && r.State == "non-compliant" {
			state = "non-compliant: would be remediated"
		}
		if counts[r.State] == 0 {
			order = append(order, r.State)
		}
		counts[r.State]++
		fmt.Fprintf(w, "%s (%s)  %s", r.Service, r.Name, state)
		if r.DryRun {
			fmt.Fprint(w, "  [dry run: nothing changed]")
		}
		fmt.Fprintln(w)
		if r.Mode != "" {
			fmt.Fprintf(w, "  mode: %s\n", r.Mode)
		}
		if r.Reason != "" {
			fmt.Fprintf(w, "  reason: %s\n", gcloudIngress(r.Reason))
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
		if len(r.Rules) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for _, rr := range r.Rules {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", ruleCell(outcome.StepResult(rr.Status), r.DryRun), rr.Rule, gcloudIngress(rr.Message))
			}
			tw.Flush()
		}
		if len(r.Changes) > 0 {
			verb := "changes made:"
			if r.DryRun {
				verb = "changes planned:"
			}
			fmt.Fprintf(w, "  %s\n", verb)
			for _, c := range r.Changes {
				fmt.Fprintf(w, "    %s  %s\n", shortResource(c.Resource), changeTextFields(c.Field, c.Before, c.After))
			}
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", gcloudIngress(warn))
		}
	}
	var parts []string
	for _, st := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
	}
	if rep.Interrupted {
		parts = append(parts, "interrupted: only the services done are listed")
	}
	fmt.Fprintf(w, "\n%d service(s): %s\n", len(rep.Services), strings.Join(parts, ", "))
	if rep.Scope != "" {
		fmt.Fprintf(w, "%d project(s) in scope %s\n", len(rep.Projects), rep.Scope)
	}
	for _, p := range rep.Projects {
		if p.Error != "" {
			fmt.Fprintf(w, "  project %s: not scanned: %s\n", p.Project, p.Error)
		}
	}
}
