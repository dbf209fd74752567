// Package functions is iapguard's Cloud Run function: EnforceIAP, registered
// with functions-framework-go as an HTTP function that reads the Eventarc
// CloudEvent itself (binary or structured content mode; HTTPHandler). It is
// thin — decode the event (internal/event), reconcile (pkg/iapsetup),
// publish the outcome (pkg/outcome), classify the error — and holds no
// business logic.
//
// It is deliberately not a CloudEvent function (functions.CloudEvent): the
// framework serves those through the CloudEvents SDK's HTTP receive handler,
// which can leave a delivery stalled under concurrent requests
// (cloudevents/sdk-go issues 1224 and 1332; docs/security.md G-3).
//
// Configuration comes from the environment (see Config and
// docs/configuration.md). Clients are built once per instance, on the first
// event.
//
// Required IAM for the function's service account: the custom role printed
// by `iapctl deploy role` on every project in IAPGUARD_PROJECTS, and
// roles/pubsub.publisher on the outcomes topic.
package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"google.golang.org/api/option"
	pubsub "google.golang.org/api/pubsub/v1"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/pkg/iapsetup"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// FunctionName is the registered function (the deploy --entry-point).
const FunctionName = "EnforceIAP"

func init() {
	functions.HTTP(FunctionName, EnforceIAP)
	if os.Getenv("K_SERVICE") != "" || os.Getenv("FUNCTION_TARGET") != "" {
		// Serving on Cloud Run (functions): say at start whether the
		// configuration is usable, not on the first event.
		_ = ReportConfig()
	}
}

// misconfigLog is where configuration errors are logged: JSON with Cloud
// Logging's field names on stdout, whatever IAPGUARD_LOG_LEVEL says (the
// level may be the mistake).
var misconfigLog = logx.New(os.Stdout, slog.LevelDebug)

// fromEnv is the process's configuration, read and validated once: the
// start-up report and the instance built on the first event share it.
var fromEnv = sync.OnceValues(func() (Config, error) { return ConfigFromEnv(os.Getenv) })

var reportConfig = sync.OnceValue(func() error {
	cfg, err := fromEnv()
	return logConfig(misconfigLog, cfg, err)
})

// ReportConfig validates the environment once per process and logs the
// result as one JSON entry on stdout (logConfig); the instance built on the
// first event uses the same reading. The function calls it
// at start when it runs on Cloud Run (K_SERVICE or FUNCTION_TARGET is set);
// functions/cmd/enforcer calls it before serving. A misconfigured function
// still serves: every event is answered 500, so Eventarc keeps it until the
// configuration is fixed.
func ReportConfig() error { return reportConfig() }

// logConfig logs ConfigFromEnv's result as one entry to log and returns
// err: INFO "EnforceIAP configured" with the settings that matter, or one
// ERROR entry naming every problem (field "problems").
func logConfig(log *slog.Logger, cfg Config, err error) error {
	if err != nil {
		logConfigError(log, err, "EnforceIAP is misconfigured; every event will be answered 500 (and kept by Eventarc) until it is fixed")
		return err
	}
	log.Info("EnforceIAP configured", "project", cfg.Project, "projects", cfg.Projects, "outcomesTopic", cfg.OutcomesTopic,
		"dryRun", cfg.DryRun, "timeout", cfg.Timeout.String(), "maxEventAge", cfg.MaxEventAge.String(),
		"maxConcurrent", cfg.MaxConcurrent, "emulator", cfg.EmulatorHost != "")
	return nil
}

// logConfigError logs err as one ERROR entry: msg, then every problem of a
// *ConfigError (or the error) in "problems".
func logConfigError(log *slog.Logger, err error, msg string) {
	problems := []string{err.Error()}
	var ce *ConfigError
	if errors.As(err, &ce) {
		problems = ce.Problems
	}
	log.Error(msg+": "+strings.Join(problems, "; "), "problems", problems)
}

// enforceIAP serves the instance's handler, built on the first request,
// once, from the configuration read at start (fromEnv).
var enforceIAP = LazyHTTPHandler(sync.OnceValues(func() (*Handler, error) {
	cfg, err := fromEnv()
	if err != nil {
		return nil, err
	}
	inst, err := NewInstanceFromConfig(context.Background(), cfg, logx.New(os.Stdout, cfg.LogLevel))
	if err != nil {
		return nil, err
	}
	return inst.Handler, nil
}))

// EnforceIAP is the function: an HTTP function receiving Eventarc's
// CloudEvents (LazyHTTPHandler describes the answers). The first request
// builds the handler from the environment; a configuration error is logged
// and answered with HTTP 500 on every event (Eventarc keeps the events
// until the function is fixed).
func EnforceIAP(w http.ResponseWriter, r *http.Request) {
	enforceIAP.ServeHTTP(w, r)
}

// Instance is one function instance's long-lived state: the clients, the
// reconciler and the handler over them.
type Instance struct {
	Clients *gcp.Clients
	// Directory reads the ancestry of projects for the scope's folder
	// entries (nil without folder entries).
	Directory  *gcp.ProjectDirectory
	Reconciler *iapsetup.Reconciler
	// PubSub is the REST Pub/Sub client (google.golang.org/api/pubsub/v1)
	// the outcome and replay publishers share (NewPubSubService).
	PubSub  *pubsub.Service
	Handler *Handler

	pubsubCloseIdle func()
}

// NewInstanceFromConfig builds an instance from cfg.
func NewInstanceFromConfig(ctx context.Context, cfg Config, log *slog.Logger) (*Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.AccessPolicies == nil && cfg.AccessPoliciesFile != "" {
		a, err := access.Load(cfg.AccessPoliciesFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvAccessPolicies, err)
		}
		cfg.AccessPolicies = a
	}
	if cfg.AccessPolicies != nil {
		log.Info("access policies loaded", "file", cfg.AccessPolicies.Source, "policies", cfg.AccessPolicies.Names())
	}
	gopts := gcp.Options{EmulatorHost: cfg.EmulatorHost, Principal: emulatorPrincipal(cfg), UserAgent: "iapguard", RecordKey: cfg.RecordKey}
	clients, err := gcp.NewClients(ctx, gopts)
	if err != nil {
		return nil, fmt.Errorf("building Google clients: %w", err)
	}
	inst := &Instance{Clients: clients}
	fail := func(err error) (*Instance, error) { _ = inst.Close(); return nil, err }
	sc := scope.New(cfg.Projects...)
	if sc.HasFolders() || sc.All() {
		// Folder entries: the scope check reads ancestries through Resource
		// Manager (resourcemanager.projects.get, resourcemanager.folders.get).
		if inst.Directory, err = gcp.NewProjectDirectory(ctx, gopts); err != nil {
			return fail(fmt.Errorf("building Resource Manager client for the scope's folders: %w", err))
		}
		if sc.HasFolders() {
			sc = sc.WithAncestry(inst.Directory, scope.AncestryOptions{})
		}
	}
	// Sweeps and whole-project replays: Cloud Asset search, per-region
	// listing as the fallback (folders and organisations enumerated through
	// Resource Manager when the directory exists).
	dopts := gcp.DiscoveryOptions{Mode: cfg.Discovery}
	if inst.Directory != nil {
		dopts.Projects = gcp.NewProjectsUnder(inst.Directory)
	}
	clients.Discovery.SetOptions(dopts)
	inst.Reconciler, err = iapsetup.New(clients.Deps(), iapsetup.Options{
		Scope:          sc,
		DryRun:         cfg.DryRun,
		Logger:         log,
		AccessPolicies: cfg.AccessPolicies,
	})
	if err != nil {
		return fail(err)
	}
	if inst.PubSub, inst.pubsubCloseIdle, err = NewPubSubService(ctx, cfg.EmulatorHost, os.Getenv); err != nil {
		return fail(fmt.Errorf("building Pub/Sub client: %w", err))
	}
	inst.Handler = NewHandler(cfg, inst.Reconciler, outcome.NewPublisher(inst.PubSub, cfg.Project, cfg.OutcomesTopic), log)
	inst.Handler.SetDiscovery(clients.Discovery, NewTopicReplayPublisher(inst.PubSub, cfg.Project, cfg.ReplayTopic))
	return inst, nil
}

// Close closes the clients (the publishers hold nothing back; the REST
// Pub/Sub client has no connection of its own to close against Google,
// only idle ones against an emulator).
func (i *Instance) Close() error {
	errs := []error{i.Clients.Close()}
	if i.pubsubCloseIdle != nil {
		i.pubsubCloseIdle()
	}
	if i.Directory != nil {
		errs = append(errs, i.Directory.Close())
	}
	return errors.Join(errs...)
}

// NewPubSubService builds the REST Pub/Sub client (google.golang.org/api/pubsub/v1)
// the function publishes outcomes and replay messages with:
//   - PUBSUB_EMULATOR_HOST (EnvPubSubHost, host:port) set: the emulator
//     there, http://HOST/ without credentials (Google's Pub/Sub emulator
//     serves REST on its one port, as iapguard's emulator does). The
//     generated gRPC client honoured the variable by itself; the REST
//     client does not, so the function does.
//   - else emulatorHost (IAPGUARD_EMULATOR_HOST) set: iapguard's emulator
//     there, as internal/gcp's REST clients reach it.
//   - else Pub/Sub itself with Application Default Credentials.
//
// closeIdle releases the emulator connections the client keeps idle (nil
// against Google). getenv reads the environment (os.Getenv).
func NewPubSubService(ctx context.Context, emulatorHost string, getenv func(string) string) (s *pubsub.Service, closeIdle func(), err error) {
	var opts []option.ClientOption
	switch host := strings.TrimSpace(getenv(EnvPubSubHost)); {
	case host != "":
		// Plain HTTP/1.1 (the emulator may not speak HTTP/2 without TLS),
		// on a transport of its own so Close releases only its connections,
		// keeping enough of them idle for concurrent publishes.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		closeIdle = tr.CloseIdleConnections
		opts = gcp.EmulatorRESTOptions(host, "", &http.Client{Transport: tr})
	case emulatorHost != "":
		var hc *http.Client
		hc, closeIdle = gcp.EmulatorHTTPClient("")
		opts = gcp.EmulatorRESTOptions(emulatorHost, "", hc)
	}
	if s, err = pubsub.NewService(ctx, opts...); err != nil {
		if closeIdle != nil {
			closeIdle()
		}
		return nil, nil, err
	}
	return s, closeIdle, nil
}
