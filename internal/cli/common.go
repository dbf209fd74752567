package cli

// Shared plumbing of the operator commands (audit, enforce, replay, watch,
// doctor, audience): flags, the environment, clients, error wording, output
// and the progress bar. The commands decide nothing themselves: decoding is
// internal/event's, planning and reconciling pkg/iapsetup's, and the replay
// path runs the function's own handler (functions.Handler).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/spf13/cobra"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Environment variables the operator commands read.
const (
	envEmulatorHost = gcp.EnvEmulatorHost       // every Google client → the emulator
	envPubSubHost   = gcp.EnvPubSubEmulatorHost // Pub/Sub only (defaults to the emulator host)
	envProject      = "GOOGLE_CLOUD_PROJECT"    // default --project
	envGcloudProj   = "CLOUDSDK_CORE_PROJECT"   // default --project (gcloud's)
	envPrincipal    = "IAPGUARD_PRINCIPAL"      // caller named to the emulator in audit entries
	envCredentials  = "GOOGLE_APPLICATION_CREDENTIALS"
	envAccess       = "IAPGUARD_ACCESS_POLICIES" // default --access-policies (as the function reads it)
	envProjects     = "IAPGUARD_PROJECTS"        // default --scope (the function's scope)
	// envDiscovery: how every-region scans find services, as the function
	// reads it: auto (Cloud Asset, per-region fallback), asset, regions.
	envDiscovery = "IAPGUARD_DISCOVERY"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// envKey carries a replacement environment in a context (tests run commands
// in parallel with different emulators; t.Setenv would forbid that).
type envKey struct{}

// withEnv makes the commands run under ctx read their environment from m
// instead of the process environment. The Google client libraries still
// read the process environment for credentials.
func withEnv(ctx context.Context, m map[string]string) context.Context {
	return context.WithValue(ctx, envKey{}, m)
}

func getenv(ctx context.Context, k string) string {
	if m, ok := ctx.Value(envKey{}).(map[string]string); ok {
		return strings.TrimSpace(m[k])
	}
	return strings.TrimSpace(os.Getenv(k))
}

// opFlags are the flags every operator command has.
type opFlags struct {
	project string
	region  string
	output  string
	timeout time.Duration
	// accessFile is the access policy file the function is configured
	// with, so that plans here match the function's.
	accessFile string
}

// regionUse says how a command treats --region.
type regionUse int

const (
	regionOptional regionUse = iota // empty: every region
	regionRequired
)

func (f *opFlags) add(cmd *cobra.Command, ru regionUse, timeout time.Duration) {
	fl := cmd.Flags()
	fl.StringVar(&f.project, "project", "", "Google Cloud project id or number (default $"+envProject+" or $"+envGcloudProj+")")
	switch ru {
	case regionRequired:
		fl.StringVar(&f.region, "region", "", "Cloud Run region of the service (required)")
	default:
		fl.StringVar(&f.region, "region", "", "Cloud Run region (default: every region)")
	}
	fl.StringVarP(&f.output, "output", "o", outputTable, "output format: table or json")
	fl.DurationVar(&f.timeout, "timeout", timeout, "give up after this long (0: no limit)")
	fl.StringVar(&f.accessFile, "access-policies", "", "the function's access policy file, so plans match its own (default $"+envAccess+"; docs/access.md)")
}

// reconcilerOptions returns the reconciler options for the session: scope,
// dry run and the access policies of --access-policies.
func (f *opFlags) reconcilerOptions(scope iapsetup.Scope, dryRun bool) (iapsetup.Options, error) {
	o := iapsetup.Options{Scope: scope, DryRun: dryRun}
	if f.accessFile != "" {
		a, err := iapsetup.LoadAccessPolicies(f.accessFile)
		if err != nil {
			return o, fmt.Errorf("--access-policies: %w", err)
		}
		o.AccessPolicies = a
	}
	return o, nil
}

// defaultProject returns project, else $GOOGLE_CLOUD_PROJECT, else
// $CLOUDSDK_CORE_PROJECT.
func defaultProject(ctx context.Context, project string) string {
	if project == "" {
		project = getenv(ctx, envProject)
	}
	if project == "" {
		project = getenv(ctx, envGcloudProj)
	}
	return project
}

// resolve fills defaults from the environment and validates the flags.
func (f *opFlags) resolve(ctx context.Context, ru regionUse, needProject bool) error {
	f.project = defaultProject(ctx, f.project)
	if f.accessFile == "" {
		f.accessFile = getenv(ctx, envAccess)
	}
	switch {
	case f.output != outputTable && f.output != outputJSON:
		return fmt.Errorf("--output %q: want table or json", f.output)
	case needProject && f.project == "":
		return fmt.Errorf("--project is required (or set %s)", envProject)
	case f.project != "" && !validName(f.project):
		return fmt.Errorf("--project %q is not a project id or number", f.project)
	case ru == regionRequired && f.region == "":
		return errors.New("--region is required")
	case f.region != "" && !validName(f.region):
		return fmt.Errorf("--region %q is not a region", f.region)
	case f.timeout < 0:
		return fmt.Errorf("--timeout %s: want a positive duration or 0", f.timeout)
	}
	return nil
}

// validName accepts concrete resource name segments: no wildcards, slashes
// or spaces. (Project ids may contain ':' and '.', as in example.com:proj.)
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// withTimeout bounds ctx by d (0: no bound).
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// session is what a command talks to Google Cloud (or the emulator) with.
type session struct {
	project  string
	emulator string // host:port, or "" for Google Cloud
	clients  *gcp.Clients
	rec      *iapsetup.Reconciler
	// access are the reconciler's access policies (--access-policies).
	access *iapsetup.AccessPolicies
	// discovery records how each every-region scan found its services.
	discovery []*gcp.Discovered
	// prefound, when not nil, holds the services of projects found by one
	// search over their parent (--all-projects: discoverByParent).
	prefound map[string][]gcp.Found
}

// defaultEmulatorPrincipal is who iapctl's writes are attributed to in the
// emulator's audit log unless IAPGUARD_PRINCIPAL says otherwise (against
// Google the credentials decide).
const defaultEmulatorPrincipal = "operator@example.com"

// emulatorHost returns the emulator address from the environment, checked
// by probeEmulator to be the emulator: an address where nothing listens, or
// something else does, is reported at once, not after the client
// libraries' retries.
func emulatorHost(ctx context.Context) (string, error) {
	host := getenv(ctx, envEmulatorHost)
	if host == "" {
		return "", nil
	}
	if _, _, err := net.SplitHostPort(host); err != nil || strings.Contains(host, "/") {
		return "", fmt.Errorf("%s=%q: want host:port, as `iapctl sandbox` prints it", envEmulatorHost, host)
	}
	if err := probeEmulator(ctx, host, envEmulatorHost); err != nil {
		return "", err
	}
	return host, nil
}

// clientOptions are the internal/gcp options of iapctl's clients: the
// emulator of the environment (checked to be reachable) and the caller
// named to it, or Google Cloud with Application Default Credentials.
func clientOptions(ctx context.Context) (gcp.Options, error) {
	host, err := emulatorHost(ctx)
	if err != nil {
		return gcp.Options{}, err
	}
	principal := getenv(ctx, envPrincipal)
	if principal == "" && host != "" {
		principal = defaultEmulatorPrincipal
	}
	return gcp.Options{EmulatorHost: host, Principal: principal, UserAgent: "iapctl"}, nil
}

// connect builds the clients and a reconciler with ro (its Scope is
// required). Against Google Cloud it uses Application Default Credentials.
func connect(ctx context.Context, project string, ro iapsetup.Options) (*session, error) {
	opts, err := clientOptions(ctx)
	if err != nil {
		return nil, err
	}
	mode := getenv(ctx, envDiscovery)
	switch mode {
	case "", gcp.ModeAuto, gcp.ModeAsset, gcp.ModeRegions:
	default:
		return nil, fmt.Errorf("%s=%q: want %s, %s or %s", envDiscovery, mode, gcp.ModeAuto, gcp.ModeAsset, gcp.ModeRegions)
	}
	clients, err := gcp.NewClients(ctx, opts)
	if err != nil {
		return nil, explain(err, opts.EmulatorHost)
	}
	clients.Discovery.SetOptions(gcp.DiscoveryOptions{Mode: mode})
	rec, err := iapsetup.New(clients.Deps(), ro)
	if err != nil {
		_ = clients.Close()
		return nil, err
	}
	return &session{project: project, emulator: opts.EmulatorHost, clients: clients, rec: rec, access: ro.AccessPolicies}, nil
}

// connect connects for --project with a reconciler of scope, dry run
// (plan only) or not, and the access policies of --access-policies.
func (f *opFlags) connect(ctx context.Context, scope iapsetup.Scope, dryRun bool) (*session, error) {
	ro, err := f.reconcilerOptions(scope, dryRun)
	if err != nil {
		return nil, err
	}
	return connect(ctx, f.project, ro)
}

func (s *session) Close() {
	if s != nil && s.clients != nil {
		_ = s.clients.Close()
	}
}

// where names the API endpoint for error messages.
func (s *session) where() string { return endpointName(s.emulator) }

// endpointName names the emulator at host, or Google Cloud (host "").
func endpointName(host string) string {
	if host != "" {
		return "the emulator at " + host
	}
	return "Google Cloud"
}

// checkProject makes one cheap call so that an unknown project, missing
// permission or unreachable endpoint is reported as such before any work:
// a one-item ListServices in region (needs run.services.list), or, for
// every region, Cloud Run v1 projects.locations.list (needs
// run.locations.list) — Cloud Run v2 refuses the "-" location wildcard.
func (s *session) checkProject(ctx context.Context, region string) error {
	var err error
	var what, perm string
	if region == "" {
		what, perm = "projects/"+s.project+"/locations", "run.locations.list"
		var calls int64
		_, err = s.clients.Discovery.Regions(ctx, s.project, &calls)
	} else {
		what, perm = "projects/"+s.project+"/locations/"+region, "run.services.list"
		_, err = s.clients.Run.ListServices(ctx, &runpb.ListServicesRequest{Parent: what, PageSize: 1}).Next()
	}
	if err == nil || errors.Is(err, iterator.Done) {
		return nil
	}
	switch gcperr.Code(err) {
	case codes.NotFound, codes.PermissionDenied:
		return fmt.Errorf("project %s not found, or you may not list its Cloud Run services (%s) in %s: %s",
			s.project, perm, s.where(), grpcDesc(err))
	case codes.InvalidArgument:
		if region != "" {
			return badRegion(region, s.where(), err)
		}
	}
	return explain(fmt.Errorf("listing %s: %w", what, err), s.emulator)
}

// getService reads a service and words "not found" for people: an unknown
// project and an unknown service are told apart with one more call.
func (s *session) getService(ctx context.Context, ref iapsetup.ServiceRef) (*iapsetup.Service, error) {
	svc, err := s.clients.RunAdapter.GetService(ctx, ref)
	if err == nil {
		return svc, nil
	}
	if gcperr.IsNotFound(err) || gcperr.IsPermissionDenied(err) || gcperr.Code(err) == codes.InvalidArgument {
		if perr := s.checkProject(ctx, ref.Region); perr != nil {
			return nil, perr
		}
		if gcperr.IsNotFound(err) {
			return nil, fmt.Errorf("service %s not found in project %s, region %s", ref.Name, ref.Project, ref.Region)
		}
	}
	return nil, explain(err, s.emulator)
}

// badRegion is the error for a --region the API refused.
func badRegion(region, where string, err error) error {
	return fmt.Errorf("--region %s is not a Cloud Run region %s accepts (want one such as us-central1 or europe-west1; it said: %s)", region, where, grpcDesc(err))
}

// rpcPrefix is how gRPC errors print their code; people get the words of
// codeWords instead.
var rpcPrefix = regexp.MustCompile(`rpc error: code = (\w+) desc = `)

var codeWords = map[string]string{
	"InvalidArgument": "refused as invalid: ", "NotFound": "not found: ", "PermissionDenied": "permission denied: ",
	"Unauthenticated": "not authenticated: ", "ResourceExhausted": "quota exhausted: ", "Unavailable": "unavailable: ",
	"DeadlineExceeded": "deadline exceeded: ", "FailedPrecondition": "failed precondition: ", "Aborted": "aborted: ",
	"AlreadyExists": "already exists: ", "Internal": "internal error: ", "Unknown": "", "Canceled": "cancelled: ",
	"Unimplemented": "not implemented: ", "OutOfRange": "out of range: ", "DataLoss": "data loss: ",
}

// plainRPC rewrites "rpc error: code = X desc = M" as words and M.
func plainRPC(msg string) string {
	return rpcPrefix.ReplaceAllStringFunc(msg, func(m string) string {
		code := rpcPrefix.FindStringSubmatch(m)[1]
		if w, ok := codeWords[code]; ok {
			return w
		}
		return code + ": "
	})
}

// grpcDesc returns the server's message of a gRPC or REST error without
// the "rpc error: code = X desc =" prefix.
func grpcDesc(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		return msg[i+len("desc = "):]
	}
	return msg
}

// explain rewords the errors people meet first — no credentials, nothing
// listening, timeouts, rejected credentials — and keeps the rest.
func explain(err error, emulator string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find default credentials"):
		return fmt.Errorf("no Google Cloud credentials: run `gcloud auth application-default login` or set %s to a key file (to use the local emulator instead, set %s)",
			envCredentials, envEmulatorHost)
	case errors.Is(err, context.DeadlineExceeded) || gcperr.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("timed out waiting for %s (raise --timeout?): %v", endpointName(emulator), err)
	case gcperr.Code(err) == codes.Unavailable && emulator != "":
		return fmt.Errorf("cannot reach the emulator at %s (%s): %v; is `iapctl sandbox` still running?", emulator, envEmulatorHost, err)
	case gcperr.Code(err) == codes.Unauthenticated:
		return fmt.Errorf("credentials rejected by Google Cloud (run `gcloud auth application-default login`): %v", err)
	}
	return err
}

// oneLine makes err printable on one line: Main prints "iapctl: " + err.
func oneLine(err error) error {
	if err == nil {
		return nil
	}
	msg := plainRPC(strings.Join(strings.Fields(err.Error()), " "))
	return errors.New(msg)
}

// fail ends a command with exit status 1 and err on one line.
func fail(err error) error { return withCode(ExitError, oneLine(err)) }

// pubsubClient returns a Pub/Sub client for project: the emulator when
// PUBSUB_EMULATOR_HOST or IAPGUARD_EMULATOR_HOST is set (in that order),
// Google Cloud with Application Default Credentials otherwise.
func pubsubClient(ctx context.Context, project string) (*pubsub.Client, string, error) {
	host := getenv(ctx, envPubSubHost)
	if host == "" || host == getenv(ctx, envEmulatorHost) {
		var err error
		if host, err = emulatorHost(ctx); err != nil {
			return nil, "", err
		}
	} else {
		// A Pub/Sub emulator of its own (gcloud's, say): it must at least
		// be a gRPC server in plain text.
		if _, _, err := net.SplitHostPort(host); err != nil || strings.Contains(host, "/") {
			return nil, "", fmt.Errorf("%s=%q: want host:port, as `iapctl sandbox` prints it", envPubSubHost, host)
		}
		if err := probeGRPC(ctx, host, envPubSubHost, "a Pub/Sub emulator",
			"point it at the emulator (`iapctl sandbox` prints the address) or unset it"); err != nil {
			return nil, "", err
		}
	}
	var opts []option.ClientOption
	if host != "" {
		opts = gcp.EmulatorGRPCOptions(host, "")
	}
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, host, explain(fmt.Errorf("creating Pub/Sub client: %w", err), host)
	}
	return c, host, nil
}

// topicName returns projects/P/topics/T for a topic id or full name.
func topicName(project, topic string) (string, error) {
	if strings.HasPrefix(topic, "projects/") {
		parts := strings.Split(topic, "/")
		if len(parts) != 4 || parts[2] != "topics" || !validName(parts[1]) || parts[3] == "" {
			return "", fmt.Errorf("--topic %q: want a topic id or projects/P/topics/T", topic)
		}
		return topic, nil
	}
	if topic == "" || strings.Contains(topic, "/") {
		return "", fmt.Errorf("--topic %q: want a topic id or projects/P/topics/T", topic)
	}
	if project == "" {
		return "", fmt.Errorf("--project is required to name topic %q (or pass projects/P/topics/%s)", topic, topic)
	}
	return "projects/" + project + "/topics/" + topic, nil
}

// ---- output ------------------------------------------------------------------

// writeOutput writes v as JSON when format is json, else calls table.
func writeOutput(w io.Writer, format string, v any, table func(io.Writer)) error {
	if format == outputJSON {
		return writeJSON(w, v)
	}
	table(w)
	return nil
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// dash renders an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortBackend renders a backend service path as "global/NAME" or
// "REGION/NAME".
func shortBackend(path string) string {
	ref, err := iapsetup.ParseBackendRef(path)
	if err != nil {
		return path
	}
	if ref.Region == "" {
		return "global/" + ref.Name
	}
	return ref.Region + "/" + ref.Name
}

// shortResource renders a resource name without its project prefix.
func shortResource(name string) string {
	for _, sep := range []string{"/locations/", "/global/", "/regions/"} {
		if i := strings.Index(name, sep); i >= 0 {
			rest := name[i+len(sep):]
			if sep == "/locations/" {
				return strings.Replace(rest, "/services/", "/", 1)
			}
			if sep == "/regions/" {
				return rest
			}
			return "global/" + rest
		}
	}
	return name
}

// changeText renders one change for a person.
func changeText(c outcome.Change) string { return changeTextFields(c.Field, c.Before, c.After) }

// ingressWords spells Cloud Run's ingress values as gcloud does
// (--ingress=all|internal|internal-and-cloud-load-balancing): text output
// uses these; JSON output keeps the API's values, as the outcome schema
// does.
var ingressWords = strings.NewReplacer(
	"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "internal-and-cloud-load-balancing",
	"INGRESS_TRAFFIC_INTERNAL_ONLY", "internal",
	"INGRESS_TRAFFIC_ALL", "all",
	"INGRESS_TRAFFIC_NONE", "none",
	"INGRESS_TRAFFIC_UNSPECIFIED", "unspecified",
)

// gcloudIngress rewrites the API's ingress values in s in gcloud's words.
func gcloudIngress(s string) string { return ingressWords.Replace(s) }

// changeTextFields renders a change: "F + ADDED", "F - REMOVED" or
// "F: BEFORE → AFTER" (ingress values in gcloud's words).
func changeTextFields(field, before, after string) string {
	if field == "ingress" {
		before, after = gcloudIngress(before), gcloudIngress(after)
	}
	switch {
	case before == "":
		return field + " + " + after
	case after == "":
		return field + " - " + before
	}
	return field + ": " + before + " → " + after
}

// outcomeLine renders an outcome message as one line (watch, replay),
// stamped with the outcome's time, or with byTrigger the time of the
// change that caused it (when known).
func outcomeLine(m *outcome.Message, byTrigger bool) string {
	res := m.Resource.Service
	if res != "" && m.Resource.Region != "" {
		res = m.Resource.Region + "/" + res
	}
	if res == "" {
		res = shortResource(m.Resource.Name)
	}
	trig := m.Trigger.Method
	if i := strings.LastIndex(trig, ".Services."); i >= 0 {
		trig = trig[i+len(".Services."):]
	} else if parts := strings.Split(trig, "."); len(parts) > 2 && (parts[0] == "v1" || parts[0] == "beta" || parts[0] == "alpha") {
		trig = strings.Join(parts[2:], ".")
	}
	if m.Trigger.Principal != "" {
		trig += " by " + m.Trigger.Principal
	}
	var cs []string
	for _, c := range m.Changes {
		cs = append(cs, changeText(c))
	}
	detail := strings.Join(cs, "; ")
	if m.Reason != "" {
		detail = m.Reason
		if len(cs) > 0 {
			detail += "; changes: " + strings.Join(cs, "; ")
		}
	}
	if detail == "" {
		detail = "no change"
	}
	kind := string(m.Outcome)
	if m.DryRun {
		kind += " (dry run)"
	}
	t := m.Time
	if byTrigger && !m.Trigger.Time.IsZero() {
		t = m.Trigger.Time
	}
	when := "-"
	if !t.IsZero() {
		when = t.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s  %-21s %-28s %-40s %s", when, kind, res, dash(trig), detail)
}

// outcomeNonCompliant reports whether an outcome means a service is (or,
// for a dry run, still is) not compliant.
func outcomeNonCompliant(m *outcome.Message) bool {
	switch m.Outcome {
	case outcome.Conflict, outcome.Failed:
		return true
	case outcome.Rejected:
		return m.Resource.Service != ""
	case outcome.Remediated:
		return m.DryRun
	}
	return false
}

// ---- progress ----------------------------------------------------------------

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws "[=====     ] 3/10 services" on a terminal, redrawn
// in place; it draws nothing when w is not a terminal.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	total int
	done  int
	what  string
}

func newProgressBar(w io.Writer, enabled bool, what string) *progressBar {
	return &progressBar{w: w, on: enabled && isTerminal(w), what: what}
}

// start adds total to the work to do (once per project when several
// projects are scanned).
func (p *progressBar) start(total int) {
	p.mu.Lock()
	p.total += total
	p.mu.Unlock()
	p.draw()
}

func (p *progressBar) add(n int) {
	p.mu.Lock()
	p.done += n
	p.mu.Unlock()
	p.draw()
}

func (p *progressBar) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || p.total == 0 {
		return
	}
	const width = 30
	fill := width * p.done / p.total
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.done, p.total, p.what)
}

// finish clears the bar.
func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on && p.total > 0 {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// ---- plan rendering ------------------------------------------------------------

// planView is what the commands show of a reconcile result or a plan.
type planView struct {
	Outcome  iapsetup.Outcome
	Mode     iapsetup.Mode
	Reason   string
	Steps    []iapsetup.Step
	Changes  []iapsetup.Change
	Warnings []string
	DryRun   bool
}

func viewOfResult(r *iapsetup.Result) planView {
	return planView{r.Outcome, r.Mode, r.Reason, r.Steps, r.Changes, r.Warnings, r.DryRun}
}

func viewOfPlan(p *iapsetup.Plan) planView {
	return planView{p.Outcome, p.Mode, p.Reason, p.Steps, p.Changes, p.Warnings, p.DryRun}
}

// serviceReport is one service in audit and enforce output. Its JSON field
// names are a documented interface (docs/iapctl.md).
type serviceReport struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	Region  string `json:"region"`
	Service string `json:"service"`
	// Label is the value of the iap label ("" when absent).
	Label string `json:"label"`
	// Labelled: the label asks iapguard to act (any value but "disabled").
	Labelled bool `json:"labelled"`
	// Outcome of the reconcile (of the plan, for a dry run).
	Outcome string `json:"outcome"`
	// State: compliant, remediated, non-compliant, conflict, rejected,
	// failed, unmanaged, opted-out.
	State     string         `json:"state"`
	Compliant bool           `json:"compliant"`
	DryRun    bool           `json:"dryRun"`
	Mode      string         `json:"mode,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Backends  []string       `json:"backends"`
	Bypasses  []string       `json:"bypasses"`
	Rules     []ruleReport   `json:"rules"`
	Changes   []changeReport `json:"changes"`
	Warnings  []string       `json:"warnings"`
	// Error is set when the reconcile could not finish.
	Error string `json:"error,omitempty"`
}

type ruleReport struct {
	Rule     string `json:"rule"`
	Status   string `json:"status"`
	Resource string `json:"resource,omitempty"`
	Message  string `json:"message"`
}

type changeReport struct {
	Resource string `json:"resource"`
	Field    string `json:"field"`
	Before   string `json:"before"`
	After    string `json:"after"`
}

// newServiceReport describes ref (listed or read as svc, which may be nil)
// and what the reconcile or plan v says about it.
func newServiceReport(ref iapsetup.ServiceRef, svc *iapsetup.Service, v planView, rerr error) serviceReport {
	r := serviceReport{
		Name: ref.ResourceName(), Project: ref.Project, Region: ref.Region, Service: ref.Name,
		Outcome: string(v.Outcome), DryRun: v.DryRun, Mode: string(v.Mode), Reason: v.Reason,
		Backends: []string{}, Bypasses: []string{}, Rules: []ruleReport{}, Changes: []changeReport{}, Warnings: []string{},
	}
	if svc != nil {
		d := iapsetup.DesiredFor(svc)
		r.Label = d.Label
		r.Labelled = d.Intent != iapsetup.Unmanaged
	}
	if rerr != nil {
		r.Error = oneLine(rerr).Error()
	}
	switch v.Outcome {
	case iapsetup.OutcomeCompliant:
		r.State, r.Compliant = "compliant", true
	case iapsetup.OutcomeRemediated:
		r.State, r.Compliant = "remediated", true
		if v.DryRun {
			r.State, r.Compliant = "non-compliant", false
		}
	case iapsetup.OutcomeSkipped:
		r.State = "unmanaged"
	default:
		r.State = string(v.Outcome)
	}
	for _, s := range v.Steps {
		r.Rules = append(r.Rules, ruleReport{Rule: string(s.Name), Status: string(s.Status), Resource: s.Resource, Message: s.Message})
		if s.Name == iapsetup.StepBackendIAP && s.Resource != "" && !slices.Contains(r.Backends, s.Resource) {
			r.Backends = append(r.Backends, s.Resource)
		}
	}
	for _, c := range v.Changes {
		r.Changes = append(r.Changes, changeReport{Resource: c.Resource, Field: c.Field, Before: c.Before, After: c.After})
	}
	r.Warnings = append(r.Warnings, v.Warnings...)
	r.Bypasses = bypasses(v)
	return r
}

// needsAttention reports whether a labelled service is not compliant, or
// its reconcile did not finish.
func (r *serviceReport) needsAttention() bool {
	return (r.Labelled && !r.Compliant) || r.Error != ""
}

// bypasses lists the ways around IAP that the plan closes (or, for a
// conflict, cannot close), as short tokens:
//
//	public:MEMBER            MEMBER holds roles/run.invoker (the run.app URL is open)
//	invoker-iam-check-off    invokerIamDisabled: no IAM check on the run.app URL
//	ingress-all              ingress all although a load balancer fronts the service
//	no-iap:BACKEND           a fronting backend service without IAP (global/NAME or REGION/NAME)
//	cdn:BACKEND              Cloud CDN on a fronting backend: IAP cannot be enabled there, or
//	                         cached responses skip Cloud Run's built-in IAP
//	run.app-no-iap           no load balancer and Cloud Run's built-in IAP off
func bypasses(v planView) []string {
	out := []string{}
	for _, c := range v.Changes {
		switch {
		case strings.HasPrefix(c.Field, "iamPolicy[") && c.After == "" && c.Before != "":
			out = append(out, "public:"+c.Before)
		case c.Field == "invokerIamDisabled":
			out = append(out, "invoker-iam-check-off")
		case c.Field == "ingress":
			out = append(out, "ingress-all")
		}
	}
	for _, s := range v.Steps {
		switch {
		case s.Name == iapsetup.StepBackendIAP && s.Status == iapsetup.StatusChanged:
			out = append(out, "no-iap:"+shortBackend(s.Resource))
		case s.Name == iapsetup.StepBackendIAP && s.Status == iapsetup.StatusConflict:
			out = append(out, "cdn:"+shortBackend(s.Resource))
		case s.Name == iapsetup.StepDirectIAP && (s.Status == iapsetup.StatusChanged || s.Status == iapsetup.StatusConflict):
			out = append(out, "run.app-no-iap")
		}
	}
	return out
}

// ruleCell is the table cell of a step status; applied tells a planned
// change ("fix") from a made one ("fixed").
func ruleCell(st iapsetup.Status, dryRun bool) string {
	switch st {
	case iapsetup.StatusOK:
		return "ok"
	case iapsetup.StatusChanged:
		if dryRun {
			return "fix"
		}
		return "fixed"
	case iapsetup.StatusConflict:
		return "conflict"
	case iapsetup.StatusWarning:
		return "warn"
	case iapsetup.StatusFailed:
		return "fail"
	case iapsetup.StatusRejected:
		return "rejected"
	}
	return "-"
}

// statusRank orders step statuses, worst last.
func statusRank(s string) int {
	return slices.Index([]string{"", "skipped", "ok", "warning", "changed", "rejected", "conflict", "failed"}, s)
}

// ruleColumns are the audit table's rule columns and the steps they show.
var ruleColumns = []struct {
	head  string
	steps []iapsetup.StepName
}{
	{"AGENT", []iapsetup.StepName{iapsetup.StepAgentIdentity}},
	{"INVOKER", []iapsetup.StepName{iapsetup.StepInvokerBinding}},
	{"IAM", []iapsetup.StepName{iapsetup.StepIAMAuth}},
	{"INGRESS", []iapsetup.StepName{iapsetup.StepIngress}},
	{"IAP", []iapsetup.StepName{iapsetup.StepBackendIAP, iapsetup.StepDirectIAP}},
	{"ACCESS", []iapsetup.StepName{iapsetup.StepAccess}},
}

// ruleCells returns the rule columns of r: the worst status of each
// column's steps.
func (r *serviceReport) ruleCells() []string {
	var cells []string
	for _, col := range ruleColumns {
		worst := ""
		for _, rr := range r.Rules {
			if slices.Contains(col.steps, iapsetup.StepName(rr.Rule)) && statusRank(rr.Status) > statusRank(worst) {
				worst = rr.Status
			}
		}
		cells = append(cells, ruleCell(iapsetup.Status(worst), r.DryRun))
	}
	return cells
}

// ---- live state for doctor and audience ------------------------------------------

// inspection is a service's live state and the plan iapguard would follow
// if the service were labelled iap=enabled: the reconciler's own dry run
// (iapsetup.Reconciler.Diagnose), so doctor and audience cannot drift from
// what the function does.
type inspection struct {
	Ref      iapsetup.ServiceRef
	Service  *iapsetup.Service
	Desired  iapsetup.Desired // from the real labels
	Observed *iapsetup.Observed
	Plan     *iapsetup.Plan
	// AgentErr is why the IAP service agent is unknown (nil: known).
	AgentErr error
	// Fronting are the backend services the plan found in front of the
	// service (via serverless NEGs naming it), sorted by path.
	Fronting []iapsetup.BackendService
	// FrontendErr holds failed HTTPS-frontend checks by backend path.
	FrontendErr map[string]error
	// ProjectNumber is read from the IAP service agent ("" unknown).
	ProjectNumber string
}

// inspectService resolves the flags (--region is required) and inspects
// service of --project (session.inspect); withAccess: with the access
// policies of --access-policies, else none (and the file is not read).
func (f *opFlags) inspectService(ctx context.Context, service string, withAccess bool) (*inspection, error) {
	if !validName(service) {
		return nil, fmt.Errorf("service %q is not a Cloud Run service name", service)
	}
	if err := f.resolve(ctx, regionRequired, true); err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	var sess *session
	var err error
	if withAccess {
		sess, err = f.connect(ctx, iapsetup.ProjectScope(f.project), true)
	} else {
		sess, err = connect(ctx, f.project, iapsetup.Options{Scope: iapsetup.ProjectScope(f.project), DryRun: true})
	}
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	return sess.inspect(ctx, iapsetup.ServiceRef{Project: f.project, Region: f.region, Name: service})
}

// inspect diagnoses ref with the reconciler's dry run (Diagnose: its own
// observation, as if the service were labelled iap=enabled, with the
// who-can-pass check) and words the failed reads for people. It makes no
// write except the one the reconciler also makes: Service Usage
// generateServiceIdentity, which creates the IAP service agent if it is
// missing (idempotent). Needs run.services.get,
// run.services.getIamPolicy, serviceusage.services.use,
// compute.networkEndpointGroups.list, compute.backendServices.list,
// compute.targetHttpsProxies.list, compute.globalForwardingRules.list and
// iap.webServices.getIamPolicy.
func (s *session) inspect(ctx context.Context, ref iapsetup.ServiceRef) (*inspection, error) {
	dg, err := s.rec.Diagnose(ctx, ref)
	if err != nil {
		if gcperr.IsNotFound(err) || gcperr.IsPermissionDenied(err) || gcperr.Code(err) == codes.InvalidArgument {
			if perr := s.checkProject(ctx, ref.Region); perr != nil {
				return nil, perr
			}
			if gcperr.IsNotFound(err) {
				return nil, fmt.Errorf("service %s not found in project %s, region %s", ref.Name, ref.Project, ref.Region)
			}
		}
		return nil, explain(err, s.emulator)
	}
	if dg.AgentErr != nil && (errors.Is(dg.AgentErr, context.DeadlineExceeded) || errors.Is(dg.AgentErr, context.Canceled)) {
		return nil, explain(dg.AgentErr, s.emulator)
	}
	return &inspection{
		Ref: ref, Service: dg.Observed.Service, Desired: dg.Desired, Observed: dg.Observed, Plan: dg.Plan,
		AgentErr: dg.AgentErr, Fronting: dg.Fronting, FrontendErr: dg.FrontendErrs, ProjectNumber: dg.ProjectNumber,
	}, nil
}

// projectNumber returns the project number: the project itself when it is
// numeric, else the number in the IAP service agent's email.
func (in *inspection) projectNumber() (int64, error) {
	if n, err := strconv.ParseInt(in.Ref.Project, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	if n, err := strconv.ParseInt(in.ProjectNumber, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	if in.AgentErr != nil {
		return 0, fmt.Errorf("finding the number of project %s through its IAP service agent: %w", in.Ref.Project, in.AgentErr)
	}
	return 0, fmt.Errorf("finding the number of project %s: the IAP service agent %q names none; pass the project number as --project", in.Ref.Project, in.Observed.Agent)
}
