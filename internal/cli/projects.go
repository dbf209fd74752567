package cli

// --all-projects: the commands that act on every project in a scope
// (audit, enforce --all, replay) enumerate it here, with the same
// expansion the function's scope check uses (pkg/iapsetup/scope.Scope) and the
// projects and folders Resource Manager lists (internal/gcp.ProjectDirectory).
// Folder entries are expanded by walking each listed folder's sub-folders
// (ListFolders) and listing each folder's projects (SearchProjects
// "parent:folders/N"), or, when the scope has patterns too, by the one full
// listing those need, whose projects carry their parents
// (scope.Scope.Projects). The reconciler then gets the scope With the
// projects found (projectsInScope returns it), so its own check makes no
// Resource Manager call.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// projectParallelism bounds the projects scanned at once (each scan runs
// up to 8 reconciles at once: at most 32 in flight).
const projectParallelism = 4

// scopeFlags are --all-projects and --scope.
type scopeFlags struct {
	allProjects bool
	scope       string
}

func (f *scopeFlags) add(cmd *cobra.Command, what string) {
	fl := cmd.Flags()
	fl.BoolVar(&f.allProjects, "all-projects", false, what+" every project in --scope (listed through Resource Manager)")
	fl.StringVar(&f.scope, "scope", "", "with --all-projects: project ids, numbers, patterns such as team-* and folders/N (everything under the folder), comma-separated, or * (default $"+envProjects+", the function's scope; docs/orgwide.md)")
}

// resolve parses the scope of --all-projects: --scope, else
// IAPGUARD_PROJECTS. Without --all-projects it returns the zero Scope.
func (f *scopeFlags) resolve(ctx context.Context) (scope.Scope, error) {
	if !f.allProjects {
		if f.scope != "" {
			return scope.Scope{}, errors.New("--scope needs --all-projects")
		}
		return scope.Scope{}, nil
	}
	raw := cmp.Or(f.scope, getenv(ctx, envProjects))
	if raw == "" {
		return scope.Scope{}, fmt.Errorf("--all-projects needs --scope or %s", envProjects)
	}
	sc, err := scope.Parse(raw)
	if err != nil {
		return scope.Scope{}, fmt.Errorf("--scope: %w", err)
	}
	return sc, nil
}

// projectsInScope lists the projects in scope, sorted, each once: the
// projects Resource Manager's SearchProjects returns (state ACTIVE) whose
// id or number the scope allows, plus the explicit entries it did not
// return (kept as written: the caller may still reach them, and the
// command then reports what is wrong with each). It also returns the scope
// to give the reconciler: scope With those projects, so that projects
// found under folder entries pass its check with no Resource Manager call
// (the reconciler has no Resource Manager client); and what Resource
// Manager said of each project (its parent, when known). Needs
// resourcemanager.projects.get on the projects to be found (SearchProjects
// returns only those), and for folder entries resourcemanager.folders.list
// on each listed folder (roles/browser on the folder has both).
func projectsInScope(ctx context.Context, sc scope.Scope) ([]string, scope.Scope, []scope.ProjectInfo, error) {
	opts, err := clientOptions(ctx)
	if err != nil {
		return nil, sc, nil, err
	}
	dir, err := gcp.NewProjectDirectory(ctx, opts)
	if err != nil {
		return nil, sc, nil, explain(err, opts.EmulatorHost)
	}
	defer dir.Close()
	ps, err := sc.Projects(ctx, dir)
	if err != nil {
		if gcperr.Code(err) == codes.PermissionDenied {
			return nil, sc, nil, fmt.Errorf("listing the projects of scope %s through Resource Manager: %s", sc, grpcDesc(err))
		}
		return nil, sc, nil, explain(err, opts.EmulatorHost)
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Name())
	}
	return out, sc.With(out...), ps, nil
}

// scanScope is audit's and enforce's --all-projects: it lists the projects
// in scope and scans each (scanProjects) with one set of clients and one
// reconciler whose scope is the same scope. prog counts services.
func scanScope(ctx context.Context, f *opFlags, sc scope.Scope, dryRun bool, prog *progressBar) ([]serviceReport, []projectResult, error) {
	if f.project != "" {
		return nil, nil, errors.New("give --project or --all-projects, not both")
	}
	if err := f.resolve(ctx, regionOptional, false); err != nil {
		return nil, nil, err
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	projects, recScope, infos, err := projectsInScope(ctx, sc)
	if err != nil {
		return nil, nil, err
	}
	sess, err := f.connect(ctx, recScope, dryRun)
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close()
	if f.region == "" {
		sess.prefound = discoverByParent(ctx, sess, infos)
	}
	reports, results, ie := scanProjects(ctx, sess, projects, f.region, dryRun, prog)
	prog.finish()
	if reports == nil {
		reports = []serviceReport{}
	}
	if ie != nil {
		return reports, results, ie
	}
	if ctx.Err() != nil {
		return nil, nil, explain(ctx.Err(), sess.emulator)
	}
	return reports, results, nil
}

// projectResult is how one project's scan went (JSON: the projects member
// of audit and enforce output with --all-projects).
type projectResult struct {
	Project  string `json:"project"`
	Services int    `json:"services"`
	// Error is why the project could not be scanned (its services could not
	// be listed); its services are then missing from the output.
	Error string `json:"error,omitempty"`
}

// scanProjects runs scanServices in each project, at most
// projectParallelism at once, sharing sess's clients and reconciler (both
// safe for concurrent use; the function shares them the same way). A project
// whose services cannot be listed is recorded in its result and the
// others go on. Reports are in project order, then region, then name. On
// an interrupt no further project is started and the projects' counts are
// summed into one *interruptedError (the results then list only the
// projects started).
func scanProjects(ctx context.Context, sess *session, projects []string, region string, dryRun bool, prog *progressBar) ([]serviceReport, []projectResult, *interruptedError) {
	per := make([][]serviceReport, len(projects))
	results := make([]projectResult, len(projects))
	started := make([]bool, len(projects))
	var mu sync.Mutex
	var sum *interruptedError
	var g errgroup.Group
	g.SetLimit(projectParallelism)
	for i, p := range projects {
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			started[i] = true
			ps := *sess
			ps.project = p
			reports, err := scanServices(ctx, &ps, region, dryRun, prog)
			results[i] = projectResult{Project: p, Services: len(reports)}
			var ie *interruptedError
			switch {
			case errors.As(err, &ie):
				mu.Lock()
				if sum == nil {
					sum = &interruptedError{unit: ie.unit}
				}
				sum.done += ie.done
				sum.notStarted += ie.notStarted
				sum.abandoned += ie.abandoned
				mu.Unlock()
			case err != nil && isCtxErr(err) && ctx.Err() != nil:
				// out of time: reported by the caller
			case err != nil:
				results[i].Error = oneLine(err).Error()
			}
			per[i] = reports
			return nil
		})
	}
	_ = g.Wait()
	var all []serviceReport
	var res []projectResult
	notStarted := 0
	for i, r := range per {
		if !started[i] {
			notStarted++
			continue
		}
		all = append(all, r...)
		res = append(res, results[i])
	}
	if interrupted(ctx) {
		if sum == nil {
			sum = &interruptedError{unit: "service(s)"}
		}
		sum.done = len(all) // with the projects finished before the interrupt
		sum.projectsNotStarted = notStarted
		return all, res, sum
	}
	return all, res, nil
}

// finishScan prints rep (JSON, or table) and ends an audit or enforce run:
// interrupted (ie), else exit 1 when a project in results could not be
// scanned or a service could not be checked, else 2 when a labelled
// service is not compliant (auditExit).
func finishScan(s *streams, output string, rep any, table func(io.Writer), ie *interruptedError, results []projectResult, services []serviceReport) error {
	if err := writeOutput(s.out, output, rep, table); err != nil {
		return fail(err)
	}
	if ie != nil {
		return withCode(ExitInterrupted, ie)
	}
	if err := projectFailures(results); err != nil {
		return fail(err)
	}
	return auditExit(services)
}

// projectFailures is the error for the projects that could not be
// scanned, or nil.
func projectFailures(results []projectResult) error {
	var failed []projectResult
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].Project < failed[j].Project })
	return fmt.Errorf("%d of %d project(s) could not be scanned; first: %s: %s", len(failed), len(results), failed[0].Project, failed[0].Error)
}

// discoverByParent finds the services of many projects with few Cloud
// Asset searches (issue #18): one search per parent (folder or
// organisation) that holds at least two of the projects, one per project
// otherwise. It returns the services found per project id, for
// scanServices to use instead of a search of its own; nil when Cloud Asset
// is not used (IAPGUARD_DISCOVERY=regions) or a search failed, and then
// each project is discovered on its own (with the per-region fallback).
// A parent's search may return services of projects outside the scope:
// they are ignored.
func discoverByParent(ctx context.Context, sess *session, infos []scope.ProjectInfo) map[string][]gcp.Found {
	if sess.clients.Discovery.Mode() == gcp.ModeRegions {
		return nil
	}
	byParent := map[string][]string{}
	for _, p := range infos {
		if p.ID == "" {
			continue
		}
		parent := cmp.Or(p.Parent, "projects/"+p.ID)
		byParent[parent] = append(byParent[parent], p.ID)
	}
	out := map[string][]gcp.Found{}
	for parent, ids := range byParent {
		sc := parent
		if len(ids) == 1 {
			sc = "projects/" + ids[0]
		}
		d, err := sess.clients.Discovery.Discover(ctx, sc, false)
		if err != nil || d.Path != gcp.PathAsset {
			return nil
		}
		sess.discovery = append(sess.discovery, d)
		for _, id := range ids {
			out[id] = []gcp.Found{}
		}
		for _, f := range d.Services {
			if fs, ok := out[f.Ref.Project]; ok {
				out[f.Ref.Project] = append(fs, f)
			}
		}
	}
	return out
}
