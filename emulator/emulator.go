package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/cloudasset"
	"github.com/iapguard/iapguard/emulator/cloudrun"
	"github.com/iapguard/iapguard/emulator/compute"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/emulator/iapapi"
	"github.com/iapguard/iapguard/emulator/logging"
	"github.com/iapguard/iapguard/emulator/logsink"
	"github.com/iapguard/iapguard/emulator/resourcemanager"
	"github.com/iapguard/iapguard/emulator/secretmanager"
	"github.com/iapguard/iapguard/emulator/serviceusage"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/envname"
)

// Environment variables the emulator prints once it is ready. Clients that
// honour them (iapguard's adapters and function, the gRPC Pub/Sub library)
// need nothing else.
const (
	EnvEmulatorHost = envname.EmulatorHost
	EnvPubSubHost   = envname.PubSubEmulatorHost
)

// ControlPrefix is the path under which the emulator serves its own control
// API (stats, faults, health). No Google API uses it.
const ControlPrefix = "/_emulator/v1/"

// Options configures an emulator.
type Options struct {
	// Projects are the emulated projects. Default: one project
	// "demo-project" = 123456789012.
	Projects []core.Project
	// Folders are the emulated Resource Manager folders (default none).
	// Every folders/N that a project or folder names as its parent must be
	// one of them; organisations are implied by the parents that name them.
	Folders []core.Folder
	// Principal is the caller recorded in audit entries when a request does
	// not name one (header X-Emulator-Principal / metadata x-emulator-principal).
	Principal string
	// DeliverTo are URLs that receive the Eventarc stand-in's CloudEvents.
	DeliverTo []string
	// Delivery tunes the Eventarc stand-in (duplicates, reordering, delay,
	// retries). Its Targets field is filled from DeliverTo.
	Delivery delivery.Options
	// Triggers overrides the trigger definitions (default: eventarc.Load()).
	Triggers []eventarc.Trigger
	// TopicTriggers makes the messagePublished triggers among Triggers (the
	// replay trigger) deliver to DeliverTo too, through a push subscription
	// on each trigger's topic in the first project (package logsink). Off,
	// the topics only collect messages.
	TopicTriggers bool
	// NoAuditLogTriggers turns the Eventarc audit-log stand-in off; topic
	// triggers still deliver. With LogSink: the organisation-wide path alone.
	NoAuditLogTriggers bool
	// LogSink, when not nil, runs the aggregated log sink stand-in (package
	// logsink). Its Topic defaults to the replay trigger's topic in the
	// first project. It implies TopicTriggers.
	LogSink *logsink.SinkOptions
	// Push tunes the topic triggers' deliveries; Topic, Subscription and
	// Targets are filled in.
	Push logsink.PushOptions
	// RunLRO selects how Cloud Run operations complete (see cloudrun.Options).
	Run cloudrun.Options
	// Asset tunes Cloud Asset Inventory (index lag, quotas).
	Asset cloudasset.Options
	// Logger receives the emulator's own logs (default: discarded).
	Logger *slog.Logger
	// FaultSeed seeds injected error draws (0: a fixed default seed).
	FaultSeed uint64
	// ServiceAccounts exist from the start: IAM policy writes may name them
	// (core.Accounts lists the accounts that exist without being named).
	ServiceAccounts []string
	// IdentityPropagation is how long a service agent that
	// generateServiceIdentity created stays unknown to IAM policy writes
	// (400 "Service account ... does not exist."), as IAM's eventual
	// consistency makes it on Google. 0: visible at once.
	IdentityPropagation time.Duration
}

// DefaultProject is the project an emulator has when none is configured.
var DefaultProject = core.Project{ID: "demo-project", Number: 123456789012}

// Emulator serves every emulated Google API on one address: gRPC (Cloud Run
// Admin v2, long-running operations, Pub/Sub, Cloud Logging, Resource
// Manager v3 Projects, Cloud Asset Inventory v1 SearchAllResources) and REST
// (Compute v1, Service Usage v1beta1, IAP v1, Cloud Run v1
// projects.locations.list, and the control API)
// multiplexed on one port by protocol (HTTP/2 + application/grpc → gRPC).
type Emulator struct {
	Core *core.Core
	Run  *cloudrun.Server
	// Asset serves Cloud Asset Inventory SearchAllResources over the Cloud
	// Run services (package cloudasset).
	Asset        *cloudasset.Server
	Compute      *compute.Server
	ServiceUsage *serviceusage.Server
	IAP          *iapapi.Server
	Logging      *logging.Server
	// ResourceManager serves Resource Manager v3 Projects (GetProject,
	// SearchProjects) and Folders (GetFolder, ListFolders) over the
	// project table.
	ResourceManager *resourcemanager.Server
	// SecretManager serves the Secret Manager v1 calls iapguard makes
	// (AccessSecretVersion: the access-record key) and those that seed it.
	SecretManager *secretmanager.Server
	PubSub        *pstest.Server
	// Delivery is the Eventarc stand-in (nil without DeliverTo, or with
	// NoAuditLogTriggers).
	Delivery *delivery.Deliverer
	// Pushers deliver the topics of messagePublished triggers (with
	// TopicTriggers or LogSink, and DeliverTo).
	Pushers []*logsink.Pusher
	// Sink is the aggregated log sink stand-in (nil without LogSink).
	Sink *logsink.Sink

	// publisher is Pub/Sub's Publisher with Google's limits, served over
	// gRPC and REST (servePubSubREST).
	publisher limitedPublisher

	grpc    *grpc.Server
	httpSrv *http.Server
	ln      net.Listener
	cancel  context.CancelFunc
	once    sync.Once
	done    chan struct{}
}

// New builds an emulator; call Start or Serve to listen.
func New(opts Options) (*Emulator, error) {
	if len(opts.Projects) == 0 {
		opts.Projects = []core.Project{DefaultProject}
	}
	c := core.New(opts.Principal, opts.Projects...)
	if err := c.Projects.AddFolders(opts.Folders...); err != nil {
		return nil, fmt.Errorf("emulator folders: %w", err)
	}
	if err := c.Projects.CheckParents(); err != nil {
		return nil, fmt.Errorf("emulator projects: %w", err)
	}
	if opts.Logger != nil {
		c.Log = opts.Logger
	}
	c.Accounts.Add(opts.ServiceAccounts...)
	c.Accounts.SetPropagation(opts.IdentityPropagation)
	if opts.FaultSeed != 0 {
		c.Faults.Seed(opts.FaultSeed)
	}
	e := &Emulator{Core: c, done: make(chan struct{})}
	e.Run = cloudrun.New(c, opts.Run)
	e.Asset = cloudasset.New(c, e.Run, opts.Asset)
	e.Compute = compute.New(c)
	e.ServiceUsage = serviceusage.New(c)
	e.IAP = iapapi.New(c, e.Compute, e.Run)
	e.Logging = logging.New(c)
	e.ResourceManager = resourcemanager.New(c)
	e.SecretManager = secretmanager.New(c)

	// pstest listens on a port of its own that nobody uses; its service
	// implementation is registered on our server so Pub/Sub shares the one
	// address.
	e.PubSub = pstest.NewServerWithAddress("127.0.0.1:0")
	e.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(grpcMaxRecv),
		grpc.ChainUnaryInterceptor(grpcRequestLimit, core.UnaryServerInterceptor(c)),
		grpc.ChainStreamInterceptor(grpcStreamRequestLimit, core.StreamServerInterceptor(c)),
	)
	e.Run.Register(e.grpc)
	e.Asset.Register(e.grpc)
	e.Logging.Register(e.grpc)
	e.ResourceManager.Register(e.grpc)
	e.SecretManager.Register(e.grpc)
	e.publisher = limitedPublisher{&e.PubSub.GServer}
	pubsubpb.RegisterPublisherServer(e.grpc, e.publisher)
	pubsubpb.RegisterSubscriberServer(e.grpc, &e.PubSub.GServer)
	pubsubpb.RegisterSchemaServiceServer(e.grpc, &e.PubSub.GServer)

	triggers := opts.Triggers
	if triggers == nil && (len(opts.DeliverTo) > 0 || opts.LogSink != nil) {
		var err error
		if triggers, err = eventarc.Load(); err != nil {
			return nil, fmt.Errorf("loading trigger definitions: %w", err)
		}
	}
	if len(opts.DeliverTo) > 0 && !opts.NoAuditLogTriggers {
		dopts := opts.Delivery
		dopts.Targets = append([]string(nil), opts.DeliverTo...)
		if dopts.Logger == nil {
			dopts.Logger = c.Log
		}
		e.Delivery = delivery.New(c, triggers, dopts)
	}
	if err := e.newOrgPath(opts, triggers); err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/compute/v1/", e.Compute)
	mux.Handle("/compute/beta/", e.Compute)
	mux.Handle("/v1beta1/", e.ServiceUsage)
	// Under /v1/: IAP, and the REST forms of Cloud Asset's
	// SearchAllResources, Secret Manager's AccessSecretVersion and Pub/Sub's
	// Publish (the discovery-based clients iapguard's function uses).
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, cloudasset.RESTVerb):
			e.Asset.ServeREST(w, r)
		case secretmanager.RESTPath(r.URL.Path):
			e.SecretManager.ServeREST(w, r)
		case pubSubRESTPath(r.URL.Path):
			e.servePubSubREST(w, r)
		default:
			e.IAP.ServeHTTP(w, r)
		}
	})
	// Resource Manager v3's reads over REST.
	mux.HandleFunc(resourcemanager.RESTPrefix, e.ResourceManager.ServeREST)

	mux.HandleFunc(cloudrun.RESTPrefix, e.Run.ServeREST)         // Cloud Run Admin API v2 over REST
	mux.HandleFunc(cloudrun.LocationsPath, e.Run.ServeLocations) // Cloud Run v1 projects.locations.list
	mux.Handle(ControlPrefix, http.StripPrefix(strings.TrimSuffix(ControlPrefix, "/"), e.controlHandler()))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		core.Errorf(codes.NotFound, "The requested URL %s was not found on this server.", r.URL.Path).WriteJSON(w)
	})

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	e.httpSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				e.grpc.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.Log.Handler(), slog.LevelDebug),
	}
	return e, nil
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the
// background until Close.
func (e *Emulator) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	e.ln = ln
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	if e.Delivery != nil {
		e.Delivery.Start(ctx)
	}
	if err := e.startOrgPath(ctx); err != nil {
		ln.Close()
		e.ln = nil // nothing serves: Close must not wait for it
		return err
	}
	go func() {
		defer close(e.done)
		if err := e.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.Core.Log.Error("emulator stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the host:port the emulator listens on.
func (e *Emulator) Addr() string { return e.ln.Addr().String() }

// Env returns the environment a client needs, as NAME=VALUE lines.
func (e *Emulator) Env() []string {
	return []string{EnvEmulatorHost + "=" + e.Addr(), EnvPubSubHost + "=" + e.Addr()}
}

// Close stops serving and the Eventarc stand-in.
func (e *Emulator) Close() error {
	var err error
	e.once.Do(func() {
		if e.cancel != nil {
			e.cancel()
		}
		if e.Delivery != nil {
			e.Delivery.Close()
		}
		if e.Sink != nil {
			e.Sink.Close()
		}
		for _, p := range e.Pushers {
			p.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = e.httpSrv.Shutdown(ctx)
		if err != nil {
			err = e.httpSrv.Close()
		}
		e.grpc.Stop()
		_ = e.PubSub.Close()
		if e.ln != nil {
			<-e.done
		}
	})
	return err
}

// FaultConfig is the JSON body of POST /_emulator/v1/faults.
type FaultConfig struct {
	Reset   bool   `json:"reset,omitempty"`
	Seed    uint64 `json:"seed,omitempty"`
	Latency []struct {
		Method   string `json:"method"`
		Duration string `json:"duration"`
	} `json:"latency,omitempty"`
	Errors []struct {
		Method string  `json:"method"`
		Rate   float64 `json:"rate"`
		Code   string  `json:"code"`
	} `json:"errors,omitempty"`
	FailNext []struct {
		Method string `json:"method"`
		Count  int    `json:"count"`
		Code   string `json:"code"`
	} `json:"failNext,omitempty"`
	Races []struct {
		Method string `json:"method"`
		Count  int    `json:"count"`
	} `json:"races,omitempty"`
	// FailOperations make the next Count Compute mutations matching Method
	// start and then fail (core.Faults.FailOperations).
	FailOperations []struct {
		Method string `json:"method"`
		Count  int    `json:"count"`
		Code   string `json:"code"`
	} `json:"failOperations,omitempty"`
	Quotas []struct {
		API       string `json:"api"`
		Class     string `json:"class"`
		PerMinute int    `json:"perMinute"`
	} `json:"quotas,omitempty"`
	// ComputeQuotaStatus is the HTTP status of an exhausted Compute quota:
	// 403 (Google's documented rateLimitExceeded answer; the default) or
	// 429 (RESOURCE_EXHAUSTED). 0 leaves it as it is.
	ComputeQuotaStatus int `json:"computeQuotaStatus,omitempty"`
}

// Apply installs the configuration on f. It is all or nothing: the rules
// are installed on a scratch core.Faults first, so a rule its setter
// rejects leaves f untouched.
func (fc *FaultConfig) Apply(f *core.Faults) error {
	var actions []func(*core.Faults) error
	add := func(a func(*core.Faults) error) { actions = append(actions, a) }
	if fc.Reset {
		add(func(f *core.Faults) error { f.Reset(); return nil })
	}
	if fc.Seed != 0 {
		add(func(f *core.Faults) error { f.Seed(fc.Seed); return nil })
	}
	for _, l := range fc.Latency {
		d, err := time.ParseDuration(l.Duration)
		if err != nil {
			return fmt.Errorf("latency %q: %w", l.Method, err)
		}
		add(func(f *core.Faults) error { return f.SetLatency(l.Method, d) })
	}
	for _, x := range fc.Errors {
		code, err := ParseCode(x.Code)
		if err != nil {
			return err
		}
		add(func(f *core.Faults) error { return f.SetErrorRate(x.Method, x.Rate, code) })
	}
	for _, x := range fc.FailNext {
		code, err := ParseCode(x.Code)
		if err != nil {
			return err
		}
		add(func(f *core.Faults) error { return f.FailNext(x.Method, x.Count, code) })
	}
	for _, x := range fc.Races {
		add(func(f *core.Faults) error { return f.ForceRaces(x.Method, x.Count) })
	}
	for _, x := range fc.FailOperations {
		code, err := ParseCode(x.Code)
		if err != nil {
			return err
		}
		add(func(f *core.Faults) error { return f.FailOperations(x.Method, x.Count, code) })
	}
	for _, q := range fc.Quotas {
		class := core.Read
		switch q.Class {
		case "read":
		case "write":
			class = core.Write
		default:
			return fmt.Errorf("quota class %q: want read or write", q.Class)
		}
		add(func(f *core.Faults) error { f.SetQuota(q.API, class, q.PerMinute); return nil })
	}
	if st := fc.ComputeQuotaStatus; st != 0 {
		add(func(f *core.Faults) error { return f.SetComputeQuotaStatus(st) })
	}
	for _, target := range []*core.Faults{core.NewFaults(), f} {
		for _, a := range actions {
			if err := a(target); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseCode parses a gRPC code name ("UNAVAILABLE", "RESOURCE_EXHAUSTED").
func ParseCode(s string) (codes.Code, error) {
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(`"` + strings.ToUpper(s) + `"`)); err != nil || c == codes.OK {
		return 0, fmt.Errorf("code %q: not a gRPC error code name", s)
	}
	return c, nil
}

func (e *Emulator) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, e.Core.Stats.Snapshot())
	})
	mux.HandleFunc("DELETE /stats", func(w http.ResponseWriter, r *http.Request) {
		e.Core.Stats.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var fc FaultConfig
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			err = json.Unmarshal(body, &fc)
		}
		if err == nil {
			err = fc.Apply(e.Core.Faults)
		}
		if err != nil {
			core.Errorf(codes.InvalidArgument, "%v", err).WriteJSON(w)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /auditlog", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"entries": e.Core.Audit.Entries()})
	})
	// The emulator's project table, for people and scripts. iapguard's code
	// lists projects through the Resource Manager v3 surface instead
	// (package resourcemanager), as it does on Google Cloud.
	mux.HandleFunc("GET /projects", func(w http.ResponseWriter, r *http.Request) {
		type project struct {
			ID     string `json:"id"`
			Number string `json:"number"`
			Parent string `json:"parent,omitempty"`
		}
		out := []project{}
		for _, p := range e.Core.Projects.All() {
			out = append(out, project{p.ID, p.NumberString(), p.Parent})
		}
		writeJSON(w, map[string]any{"projects": out})
	})
	// The emulator's folders (name and parent), for people and scripts.
	mux.HandleFunc("GET /folders", func(w http.ResponseWriter, r *http.Request) {
		type folder struct {
			Name   string `json:"name"`
			Parent string `json:"parent"`
		}
		out := []folder{}
		for _, f := range e.Core.Projects.Folders() {
			out = append(out, folder{f.Name(), f.Parent})
		}
		writeJSON(w, map[string]any{"folders": out})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		core.Errorf(codes.NotFound, "no control endpoint %s %s", r.Method, r.URL.Path).WriteJSON(w)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// startOrgPath starts the pushers, then the sink: subscriptions first, so
// that nothing the sink routes is missed.
func (e *Emulator) startOrgPath(ctx context.Context) error {
	for _, p := range e.Pushers {
		if err := p.Start(ctx); err != nil {
			return err
		}
	}
	if e.Sink != nil {
		return e.Sink.Start(ctx)
	}
	return nil
}

// newOrgPath builds the log sink and the topic triggers' pushers.
func (e *Emulator) newOrgPath(opts Options, triggers []eventarc.Trigger) error {
	host := opts.Projects[0].ID
	var topics []string
	for _, t := range triggers {
		if t.EventType == eventarc.MessagePublished {
			topics = append(topics, "projects/"+host+"/topics/"+t.Topic)
		}
	}
	if opts.LogSink != nil {
		so := *opts.LogSink
		if so.Topic == "" {
			if len(topics) == 0 {
				return errors.New("log sink: no topic given and no messagePublished trigger to take it from")
			}
			so.Topic = topics[0]
		}
		if so.Triggers == nil {
			so.Triggers = triggers
		}
		if so.Logger == nil {
			so.Logger = e.Core.Log
		}
		sink, err := logsink.NewSink(e.Core, &e.PubSub.GServer, so)
		if err != nil {
			return err
		}
		e.Sink = sink
	}
	if len(opts.DeliverTo) == 0 || !opts.TopicTriggers && opts.LogSink == nil {
		return nil
	}
	for _, topic := range topics {
		po := opts.Push
		po.Topic, po.Subscription, po.Targets = topic, "", opts.DeliverTo
		if po.Logger == nil {
			po.Logger = e.Core.Log
		}
		p, err := logsink.NewPusher(&e.PubSub.GServer, po)
		if err != nil {
			return err
		}
		e.Pushers = append(e.Pushers, p)
	}
	return nil
}
