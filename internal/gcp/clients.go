// Package gcp adapts the official Google Cloud Go clients to the small
// interfaces pkg/iapsetup consumes: Cloud Run Admin API v2 (REST,
// google.golang.org/api/run/v2), Compute Engine v1 (REST,
// google.golang.org/api/compute/v1), Service Usage v1beta1 (REST,
// google.golang.org/api/serviceusage/v1beta1) and Identity-Aware Proxy v1
// (REST, google.golang.org/api/iap/v1); for discovery, the record key and
// folder scopes, Cloud Asset Inventory v1, Secret Manager v1 and Resource
// Manager v3 through their discovery-based REST clients
// (google.golang.org/api/cloudasset/v1, secretmanager/v1,
// cloudresourcemanager/v3). Every client the function uses is a
// discovery-based REST client: unlike the gRPC clients, they register no
// protobuf descriptors at process start (docs/performance.md;
// TestEnforcerLinksNoGeneratedAPIClient in functions holds it).
//
// Build the clients once per process with NewClients and reuse them. Every
// adapter method documents the IAM permission it needs; errors keep the
// client error in their chain (%w) so internal/gcperr can classify them.
// Every call is paced by a client-side limiter per API and quota class
// that learns the quota from RESOURCE_EXHAUSTED answers, and throttled
// calls are retried a bounded number of times (ratelimit.go).
//
// # Emulator
//
// When Options.EmulatorHost or the environment variable
// IAPGUARD_EMULATOR_HOST (host:port) is set, every client talks to that
// address the way the Pub/Sub client honours PUBSUB_EMULATOR_HOST: gRPC
// with insecure transport credentials, REST over plain http, and no
// authentication at all. Options.Principal is then sent as the emulator's
// caller-identity header (X-Emulator-Principal, gRPC metadata
// x-emulator-principal) so the emulator's audit entries name iapguard as
// the writer.
package gcp

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	cloudasset "google.golang.org/api/cloudasset/v1"
	compute "google.golang.org/api/compute/v1"
	iap "google.golang.org/api/iap/v1"
	"google.golang.org/api/option"
	runv1 "google.golang.org/api/run/v1"
	runv2 "google.golang.org/api/run/v2"
	secretmanager "google.golang.org/api/secretmanager/v1"
	serviceusage "google.golang.org/api/serviceusage/v1beta1"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// Limiter paces calls to one API: Wait blocks until a call may be made or
// ctx ends (*rate.Limiter from golang.org/x/time/rate and *AdaptiveLimiter
// satisfy it). A Limiter that is also an Observer is told how each call
// ended (see ratelimit.go).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Options configure NewClients.
type Options struct {
	// EmulatorHost is host:port of the emulator; empty: the environment
	// variable IAPGUARD_EMULATOR_HOST; both empty: Google Cloud with
	// Application Default Credentials.
	EmulatorHost string
	// Principal is the caller identity sent to the emulator (ignored
	// against Google, where the credentials decide).
	Principal string
	// UserAgent is appended to the clients' user agent.
	UserAgent string
	// OperationTimeout bounds each wait for a long-running operation (Cloud
	// Run update, Compute patch, Service Usage identity). Default 2 minutes.
	OperationTimeout time.Duration
	// PollInterval is the first pause between polls of Service Usage
	// operations that are not done at once (doubling up to 10 s).
	// Default 500 ms.
	PollInterval time.Duration
	// RunLimiter, ComputeLimiter, ServiceUsageLimiter and IAPLimiter
	// optionally pace all calls of one API (reads and writes alike). An API
	// without one gets two AdaptiveLimiters, one per quota (reads, writes),
	// tuned by RateLimits.
	RunLimiter, ComputeLimiter, ServiceUsageLimiter, IAPLimiter Limiter
	// AssetLimiter paces Cloud Asset Inventory searches (default: Google's
	// documented 400 SearchAllResources per minute per consumer project,
	// cloud.google.com/asset-inventory/docs/quota, with a burst of 400).
	AssetLimiter Limiter
	// RateLimits tunes the default adaptive limiters (zero: defaults).
	RateLimits AdaptiveConfig
	// ThrottleRetries bounds the retries of a call answered
	// RESOURCE_EXHAUSTED / 429 (default 6, pausing about 13 s at most in
	// all; negative: none).
	ThrottleRetries int
	// RecordKey is the Secret Manager secret version whose payload signs
	// the access records (projects/P/secrets/S/versions/V, V a number or
	// latest); empty: no Secret Manager client, records unsigned.
	RecordKey string
	// ClientOptions are added to every client (production: credentials,
	// quota project, ...). Not used with the emulator.
	ClientOptions []option.ClientOption
}

// Clients holds the official clients and the adapters over them.
type Clients struct {
	Run          *runv2.Service
	Compute      *compute.Service
	ServiceUsage *serviceusage.APIService
	IAP          *iap.Service

	// Adapters implementing pkg/iapsetup's interfaces.
	RunAdapter      *RunAdapter
	ComputeAdapter  *ComputeAdapter
	IdentityAdapter *IdentityAdapter
	IAPAdapter      *IAPAdapter
	// RecordKeyAdapter is nil without Options.RecordKey.
	RecordKeyAdapter *RecordKeyAdapter

	// Asset is the Cloud Asset Inventory v1 REST client and RunV1 the
	// Cloud Run Admin API v1 REST client (locations only); Discovery uses
	// both.
	Asset     *cloudasset.Service
	RunV1     *runv1.APIService
	Discovery *Discovery

	closeIdle func()
}

// NewClients builds every client once.
func NewClients(ctx context.Context, opts Options) (_ *Clients, err error) {
	ep, err := endpointsFor(opts)
	if err != nil {
		return nil, err
	}
	if opts.OperationTimeout <= 0 {
		opts.OperationTimeout = 2 * time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	opts.ThrottleRetries = cmp.Or(opts.ThrottleRetries, 6)
	// Cloud Run v2 and v1, Service Usage, IAP, Cloud Asset and Secret
	// Manager are served at the endpoint's root, Compute under its path.
	rc, err := runv2.NewService(ctx, ep.root...)
	if err != nil {
		return nil, fmt.Errorf("creating Cloud Run client: %w", err)
	}
	cs, err := compute.NewService(ctx, ep.compute...)
	if err != nil {
		return nil, fmt.Errorf("creating Compute client: %w", err)
	}
	su, err := serviceusage.NewService(ctx, ep.root...)
	if err != nil {
		return nil, fmt.Errorf("creating Service Usage client: %w", err)
	}
	ic, err := iap.NewService(ctx, ep.root...)
	if err != nil {
		return nil, fmt.Errorf("creating IAP client: %w", err)
	}
	// Cloud Asset (and Secret Manager below) through their
	// discovery-based REST clients: the function calls one method of each,
	// and the gRPC clients' generated packages cost about 0.5 ms of every
	// process start in protobuf registration (docs/performance.md).
	ac, err := cloudasset.NewService(ctx, ep.root...)
	if err != nil {
		return nil, fmt.Errorf("creating Cloud Asset Inventory client: %w", err)
	}
	// Run v1 is REST on run.googleapis.com (the client's default endpoint).
	r1, err := runv1.NewService(ctx, ep.root...)
	if err != nil {
		return nil, fmt.Errorf("creating Cloud Run v1 client: %w", err)
	}
	c := &Clients{Run: rc, Compute: cs, ServiceUsage: su, IAP: ic, Asset: ac, RunV1: r1, closeIdle: ep.closeIdle}
	pace := func(l Limiter) *pacer { return newPacer(l, opts.RateLimits, opts.ThrottleRetries) }
	c.RunAdapter = &RunAdapter{c: rc, opTimeout: opts.OperationTimeout, pace: pace(opts.RunLimiter)}
	c.ComputeAdapter = &ComputeAdapter{c: cs, opTimeout: opts.OperationTimeout, pace: pace(opts.ComputeLimiter)}
	c.IdentityAdapter = &IdentityAdapter{c: su, opTimeout: opts.OperationTimeout, poll: opts.PollInterval, pace: pace(opts.ServiceUsageLimiter)}
	c.IAPAdapter = &IAPAdapter{c: ic, pace: pace(opts.IAPLimiter)}
	al := opts.AssetLimiter
	if al == nil {
		// 400 per minute: the bucket holds a minute's worth, as the quota
		// allows them within any minute.
		al = rate.NewLimiter(rate.Limit(400.0/60), 400)
	}
	c.Discovery = &Discovery{asset: ac, v1: r1, run: c.RunAdapter, pace: pace(al), runP: c.RunAdapter.pace}
	if opts.RecordKey != "" {
		sm, err := secretmanager.NewService(ctx, ep.root...)
		if err != nil {
			return nil, fmt.Errorf("creating Secret Manager client: %w", err)
		}
		c.RecordKeyAdapter = &RecordKeyAdapter{c: sm, version: opts.RecordKey, pace: pace(nil)}
	}
	return c, nil
}

// Deps returns the adapters as pkg/iapsetup dependencies.
func (c *Clients) Deps() iapsetup.Deps {
	return iapsetup.Deps{
		CloudRun: c.RunAdapter,
		Compute:  c.ComputeAdapter,
		Identity: c.IdentityAdapter,
		IAP:      c.IAPAdapter,
		// A typed nil would not compare equal to nil in iapsetup.
		RecordKeys: recordKeys(c.RecordKeyAdapter),
	}
}

func recordKeys(a *RecordKeyAdapter) iapsetup.RecordKeys {
	if a == nil {
		return nil
	}
	return a
}

// Close releases, for the emulator, the REST clients' idle connections
// (the REST clients hold nothing else).
func (c *Clients) Close() error {
	if c != nil && c.closeIdle != nil {
		c.closeIdle()
	}
	return nil
}

func wait(ctx context.Context, l Limiter) error {
	if l == nil {
		return nil
	}
	if err := l.Wait(ctx); err != nil {
		return fmt.Errorf("waiting for the client-side rate limiter: %w", err)
	}
	return nil
}
