package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"

	"github.com/iapguard/iapguard/pkg/outcome"
)

type auditFlags struct {
	opFlags
	scopeFlags
	noProgress bool
}

func newAuditCmd(s *streams) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Scan a project read-only: every Cloud Run service, its label, each rule's state, fronting backends, bypasses",
		Long: `Scan every Cloud Run service of a project (all regions, or --region) and show,
for each: its iap label, the state of each rule (agent, invoker binding, IAM
authentication, ingress, IAP), the backend services that front it and the
ways around IAP that are still open.

The state comes from a dry-run reconcile — the function's own planning code —
so "fix" means "iapguard would change this". Nothing is changed: the dry
run validates a planned Cloud Run update with validate_only, which stores
nothing, and looks the IAP service agent up with generateServiceIdentity,
which creates it only if it is missing (as the function does).

--all-projects scans every project in --scope (default $IAPGUARD_PROJECTS,
the function's scope: ids, numbers, patterns such as team-*, or *), found
through Resource Manager; the table gains a PROJECT column when there is
more than one. A project whose services cannot be listed is reported and
the others are still scanned.

Exit status: 0 when every labelled service complies, 2 when a labelled
service does not (so CI can gate on it), 1 when the scan failed (with
--all-projects: when a project or a service could not be scanned).`,
		Example: `  iapctl audit --project my-project
  iapctl audit --project my-project --region europe-west1 --output json
  iapctl audit --all-projects --scope 'team-*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAudit(cmd.Context(), s, &f)
		},
	}
	f.opFlags.add(cmd, regionOptional, 5*time.Minute)
	f.scopeFlags.add(cmd, "scan")
	cmd.Flags().BoolVar(&f.noProgress, "no-progress", false, "never draw the progress bar (it is drawn only when stderr is a terminal)")
	return cmd
}

// auditReport is audit's JSON output.
type auditReport struct {
	Project string `json:"project"` // "" with --all-projects
	// Scope and Projects: with --all-projects, the scope and how each
	// project's scan went.
	Scope    string          `json:"scope,omitempty"`
	Projects []projectResult `json:"projects,omitempty"`
	Region   string          `json:"region"` // "" : every region
	Services []serviceReport `json:"services"`
	Summary  auditSummary    `json:"summary"`
	// Interrupted: the scan was interrupted; Services are those done.
	Interrupted bool `json:"interrupted,omitempty"`
}

// orEmpty makes a nil list an empty one (JSON [] rather than null).
func orEmpty(r []serviceReport) []serviceReport {
	if r == nil {
		return []serviceReport{}
	}
	return r
}

type auditSummary struct {
	Services     int `json:"services"`
	Labelled     int `json:"labelled"`
	Compliant    int `json:"compliant"`
	NonCompliant int `json:"nonCompliant"`
	Unmanaged    int `json:"unmanaged"`
	Errors       int `json:"errors"`
}

func runAudit(ctx context.Context, s *streams, f *auditFlags) error {
	sc, err := f.scopeFlags.resolve(ctx)
	if err != nil {
		return fail(err)
	}
	if f.allProjects {
		return runAuditAll(ctx, s, f, sc)
	}
	if err := f.opFlags.resolve(ctx, regionOptional, true); err != nil {
		return fail(err)
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	sess, err := f.connect(ctx, scope.New(f.project), true)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	prog := newProgressBar(s.err, !f.noProgress, "services")
	reports, err := scanServices(ctx, sess, f.region, true, prog)
	prog.finish()
	var ie *interruptedError
	if err != nil && !errors.As(err, &ie) {
		return fail(err)
	}
	rep := auditReport{Project: f.project, Region: f.region, Services: orEmpty(reports), Summary: summarize(reports), Interrupted: ie != nil}
	return finishScan(s, f.output, rep, func(w io.Writer) { writeAuditTable(w, rep) }, ie, nil, reports)
}

// runAuditAll is audit --all-projects: every project in scope (scanScope).
func runAuditAll(ctx context.Context, s *streams, f *auditFlags, sc scope.Scope) error {
	reports, results, err := scanScope(ctx, &f.opFlags, sc, true, newProgressBar(s.err, !f.noProgress, "services"))
	var ie *interruptedError
	if err != nil && !errors.As(err, &ie) {
		return fail(err)
	}
	rep := auditReport{Scope: sc.String(), Projects: results, Region: f.region, Services: orEmpty(reports), Summary: summarize(reports), Interrupted: ie != nil}
	return finishScan(s, f.output, rep, func(w io.Writer) { writeAuditTable(w, rep) }, ie, results, reports)
}

// summarize counts reports by state.
func summarize(reports []serviceReport) auditSummary {
	var sm auditSummary
	for i := range reports {
		r := &reports[i]
		sm.Services++
		switch {
		case r.Error != "":
			sm.Errors++
		case !r.Labelled:
			sm.Unmanaged++
		case r.Compliant:
			sm.Compliant++
		default:
			sm.NonCompliant++
		}
		if r.Labelled {
			sm.Labelled++
		}
	}
	return sm
}

// auditExit: 1 when a service could not be audited, 2 when a labelled
// service is not compliant.
func auditExit(reports []serviceReport) error {
	var errs []string
	bad := 0
	for _, r := range reports {
		if r.Error != "" {
			errs = append(errs, r.Service+": "+r.Error)
		}
		if r.needsAttention() {
			bad++
		}
	}
	switch {
	case len(errs) > 0:
		return fail(fmt.Errorf("%d service(s) could not be checked; first: %s", len(errs), errs[0]))
	case bad > 0:
		return withCode(ExitNonCompliant, nil)
	}
	return nil
}

// writeAuditTable prints the table, the summary and what needs attention;
// with --all-projects and more than one project, a PROJECT column comes
// first and services are named PROJECT/SERVICE below the summary.
func writeAuditTable(w io.Writer, rep auditReport) {
	multi := len(rep.Projects) > 1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"SERVICE", "REGION", "LABEL", "STATE", "MODE"}
	if multi {
		head = append([]string{"PROJECT"}, head...)
	}
	for _, c := range ruleColumns {
		head = append(head, c.head)
	}
	head = append(head, "BACKENDS", "BYPASSES")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rep.Services {
		var backends []string
		for _, b := range r.Backends {
			backends = append(backends, shortBackend(b))
		}
		row := []string{r.Service, r.Region, dash(r.Label), r.State, dash(r.Mode)}
		if multi {
			row = append([]string{r.Project}, row...)
		}
		row = append(row, r.ruleCells()...)
		row = append(row, dash(strings.Join(backends, ",")), dash(strings.Join(r.Bypasses, ",")))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	where := "all regions"
	if rep.Region != "" {
		where = rep.Region
	}
	sm := rep.Summary
	what := "project " + rep.Project
	switch {
	case rep.Scope != "" && len(rep.Projects) == 1:
		what = "project " + rep.Projects[0].Project
	case rep.Scope != "":
		what = fmt.Sprintf("%d projects in scope %s", len(rep.Projects), rep.Scope)
	}
	if rep.Interrupted {
		where += " (interrupted: only the services done are counted)"
	}
	fmt.Fprintf(w, "\n%s, %s: %d services, %d labelled: %d compliant, %d not compliant; %d unmanaged",
		what, where, sm.Services, sm.Labelled, sm.Compliant, sm.NonCompliant, sm.Unmanaged)
	if sm.Errors > 0 {
		fmt.Fprintf(w, "; %d could not be checked", sm.Errors)
	}
	fmt.Fprintln(w)
	for _, p := range rep.Projects {
		if p.Error != "" {
			fmt.Fprintf(w, "  project %s: not scanned: %s\n", p.Project, p.Error)
		}
	}
	for _, r := range rep.Services {
		if r.needsAttention() {
			why := r.Reason
			if r.Error != "" {
				why = r.Error
			}
			if why == "" {
				var fix []string
				for _, rr := range r.Rules {
					if rr.Status == string(outcome.StepChanged) {
						fix = append(fix, rr.Rule)
					}
				}
				why = "iapguard would fix " + strings.Join(fix, ", ")
			}
			name := r.Service
			if multi {
				name = r.Project + "/" + r.Service
			}
			fmt.Fprintf(w, "  %s: %s: %s\n", name, r.State, why)
		}
	}
}

// serviceParallelism bounds the reconciles one scan runs at once.
const serviceParallelism = 8

// scanServices lists the services of the session's project in region
// ("" every region: discovered through Cloud Asset Inventory, or per region
// when Cloud Asset is off or not permitted — Cloud Run v2 refuses the "-"
// wildcard) and reconciles each labelled one with the function's
// reconciler: from its listed copy when Cloud Run listed it (one service
// read each, the listing), else from a fresh read (Cloud Asset's index lags
// behind changes; its labels only select what to read). The others are
// reported from the copy alone (iapsetup.Unenforced). prog counts
// services. Reports are sorted by region, then name. A failed reconcile is
// recorded in its report; the error is for a failed listing, the deadline,
// or an interrupt: then no new reconcile starts, those under way finish
// (finishContext), and the error is an *interruptedError with the reports
// of the services done.
func scanServices(ctx context.Context, sess *session, region string, dryRun bool, prog *progressBar) ([]serviceReport, error) {
	var svcs []*iapsetup.Service
	listed := map[*iapsetup.Service]bool{}
	var err error
	if region != "" {
		svcs, err = sess.clients.RunAdapter.ListServices(ctx, sess.project, region)
		for _, s := range svcs {
			listed[s] = true
		}
	} else {
		var d *gcp.Discovered
		if fs, ok := sess.prefound[sess.project]; ok {
			d = &gcp.Discovered{Services: fs, Path: gcp.PathAsset}
		} else {
			d, err = sess.clients.Discovery.Discover(ctx, "projects/"+sess.project, false)
			if d != nil {
				sess.discovery = append(sess.discovery, d)
			}
		}
		if d != nil {
			for _, f := range d.Services {
				if f.Listed != nil {
					svcs = append(svcs, f.Listed)
					listed[f.Listed] = true
					continue
				}
				svcs = append(svcs, &iapsetup.Service{Ref: f.Ref, Labels: f.Labels})
			}
		}
	}
	if err != nil {
		if interrupted(ctx) {
			return nil, &interruptedError{unit: "service(s)", more: " (interrupted while listing the services of project " + sess.project + ")"}
		}
		if perr := sess.checkProject(ctx, region); perr != nil {
			return nil, perr
		}
		return nil, explain(err, sess.emulator)
	}
	sort.Slice(svcs, func(i, j int) bool {
		a, b := svcs[i].Ref, svcs[j].Ref
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		return a.Name < b.Name
	})
	prog.start(len(svcs))
	hooks := hooksOf(ctx)
	limit := serviceParallelism
	if hooks.parallelism > 0 {
		limit = hooks.parallelism
	}
	work, stopWork := finishContext(ctx)
	defer stopWork()
	reports := make([]serviceReport, len(svcs))
	done := make([]bool, len(svcs))
	var mu sync.Mutex
	var ctxErr error
	abandoned := 0
	var g errgroup.Group
	g.SetLimit(limit)
	for i, svc := range svcs {
		if ctx.Err() != nil {
			break // interrupted or out of time: start nothing more
		}
		if res := iapsetup.Unenforced(svc); res != nil {
			res.DryRun = dryRun
			reports[i], done[i] = newServiceReport(svc.Ref, svc, viewOfResult(res), nil), true
			prog.add(1)
			continue
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil // interrupted while waiting for a slot: not started
			}
			if hooks.starting != nil {
				hooks.starting(svc.Ref)
			}
			var from *iapsetup.Service
			if listed[svc] {
				from = svc
			}
			res, err := sess.rec.Reconcile(work, svc.Ref, iapsetup.Listed(from), iapsetup.WithDryRun(dryRun), iapsetup.WithAccessCheck())
			mu.Lock()
			defer mu.Unlock()
			if err != nil && isCtxErr(err) {
				if interrupted(ctx) {
					abandoned++
				} else {
					ctxErr = err
				}
				return nil
			}
			reports[i], done[i] = newServiceReport(svc.Ref, svc, viewOfResult(res), err), true
			prog.add(1)
			return nil
		})
	}
	_ = g.Wait()
	if ctxErr != nil || (ctx.Err() != nil && !interrupted(ctx)) {
		if ctxErr == nil {
			ctxErr = ctx.Err()
		}
		return nil, explain(ctxErr, sess.emulator)
	}
	if interrupted(ctx) {
		var out []serviceReport
		for i := range reports {
			if done[i] {
				out = append(out, reports[i])
			}
		}
		return out, &interruptedError{unit: "service(s)", done: len(out), abandoned: abandoned, notStarted: len(svcs) - len(out) - abandoned}
	}
	return reports, nil
}
