package cli

// Shared plumbing of the operator commands (audit, enforce, replay, watch,
// doctor, audience): the environment, flags, clients and the session.
// The commands decide nothing themselves: decoding is internal/event's,
// planning and reconciling pkg/iapsetup's, and the replay path runs the
// function's own handler (functions.Handler). Error wording is in
// errors.go, output and the progress bar in output.go, the service report
// in report.go, doctor's and audience's inspection in inspect.go.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/spf13/cobra"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/gcperr"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// Environment variables the operator commands read: the function's own
// names (functions.Env*) where iapctl reads what the function reads.
const (
	envEmulatorHost = gcp.EnvEmulatorHost       // every Google client → the emulator
	envPubSubHost   = gcp.EnvPubSubEmulatorHost // Pub/Sub only (defaults to the emulator host)
	envProject      = functions.EnvProject      // default --project
	envGcloudProj   = "CLOUDSDK_CORE_PROJECT"   // default --project (gcloud's)
	envPrincipal    = functions.EnvPrincipal    // caller named to the emulator in audit entries
	envCredentials  = "GOOGLE_APPLICATION_CREDENTIALS"
	envAccess       = functions.EnvAccessPolicies // default --access-policies
	envProjects     = functions.EnvProjects       // default --scope (the function's scope)
	envDiscovery    = functions.EnvDiscovery      // how every-region scans find services
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// envKey carries a replacement environment in a context (tests run commands
// in parallel with different emulators; t.Setenv would forbid that).
type envKey struct{}

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

// defaultProject returns project, else $GOOGLE_CLOUD_PROJECT, else
// $CLOUDSDK_CORE_PROJECT.
func defaultProject(ctx context.Context, project string) string {
	return cmp.Or(project, getenv(ctx, envProject), getenv(ctx, envGcloudProj))
}

// resolve fills defaults from the environment and validates the flags.
func (f *opFlags) resolve(ctx context.Context, ru regionUse, needProject bool) error {
	f.project = defaultProject(ctx, f.project)
	f.accessFile = cmp.Or(f.accessFile, getenv(ctx, envAccess))
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
	access *access.Policies
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

// probedKey holds, in a command's context (Main), the *sync.Map of the
// emulator addresses it has already probed: a command probes once however
// many clients it builds.
type probedKey struct{}

// emulatorHost returns the emulator address from the environment, checked
// by probeEmulator to be the emulator (once per command): an address where
// nothing listens, or something else does, is reported at once, not after
// the client libraries' retries.
func emulatorHost(ctx context.Context) (string, error) {
	host := getenv(ctx, envEmulatorHost)
	if host == "" {
		return "", nil
	}
	if _, _, err := net.SplitHostPort(host); err != nil || strings.Contains(host, "/") {
		return "", fmt.Errorf("%s=%q: want host:port, as `iapctl sandbox` prints it", envEmulatorHost, host)
	}
	probed, ok := ctx.Value(probedKey{}).(*sync.Map)
	if !ok {
		probed = new(sync.Map) // not under Main: probe every time
	}
	if _, ok := probed.Load(host); ok {
		return host, nil
	}
	if err := probeEmulator(ctx, host, envEmulatorHost); err != nil {
		return "", err
	}
	probed.Store(host, true)
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
func (f *opFlags) connect(ctx context.Context, sc scope.Scope, dryRun bool) (*session, error) {
	ro := iapsetup.Options{Scope: sc, DryRun: dryRun}
	if f.accessFile != "" {
		a, err := access.Load(f.accessFile)
		if err != nil {
			return nil, fmt.Errorf("--access-policies: %w", err)
		}
		ro.AccessPolicies = a
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
		_, err = s.clients.Run.Projects.Locations.Services.List(what).PageSize(1).Context(ctx).Do()
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

// serviceError words a failed read of the service ref for people: an
// unknown project and an unknown service are told apart with one more call.
func (s *session) serviceError(ctx context.Context, ref iapsetup.ServiceRef, err error) error {
	if gcperr.IsNotFound(err) || gcperr.IsPermissionDenied(err) || gcperr.Code(err) == codes.InvalidArgument {
		if perr := s.checkProject(ctx, ref.Region); perr != nil {
			return perr
		}
		if gcperr.IsNotFound(err) {
			return fmt.Errorf("service %s not found in project %s, region %s", ref.Name, ref.Project, ref.Region)
		}
	}
	return explain(err, s.emulator)
}

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
