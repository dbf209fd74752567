package cloudrun

import (
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/core"
)

// LRO completion modes (Options.LRO).
const (
	// LROOnFirstPoll answers Create/Update/Delete with done=false; the first
	// GetOperation or WaitOperation of the operation returns done=true.
	LROOnFirstPoll = "on-first-poll"
	// LROImmediate answers Create/Update/Delete with done=true.
	LROImmediate = "immediate"
	// LRODelay completes operations once Options.Delay has passed; until then
	// the service shows reconciling=true.
	LRODelay = "delay"
)

// Options configures the Cloud Run surface.
type Options struct {
	// LRO: how long-running operations complete: "on-first-poll" (default: the
	// first response is done=false, the first GetOperation returns done=true),
	// "immediate" (done=true in the first response), or a delay: "delay" with
	// Delay set, or a Go duration such as "3s" (done once the delay has passed;
	// the service shows reconciling=true meanwhile).
	LRO   string
	Delay time.Duration
	// Regions are the regions projects.locations.list offers every project
	// (default DefaultRegions); regions holding a service are always added.
	Regions []string
}

// mode resolves LRO/Delay into a mode and delay.
func (o Options) mode() (string, time.Duration, error) {
	switch o.LRO {
	case "", LROOnFirstPoll:
		return LROOnFirstPoll, 0, nil
	case LROImmediate:
		return LROImmediate, 0, nil
	case LRODelay:
		if o.Delay <= 0 {
			return "", 0, fmt.Errorf("lro mode %q needs a positive delay, got %v", o.LRO, o.Delay)
		}
		return LRODelay, o.Delay, nil
	}
	d, err := time.ParseDuration(o.LRO)
	if err != nil || d <= 0 {
		return "", 0, fmt.Errorf("lro mode %q: want %s, %s, %s or a positive duration such as 3s",
			o.LRO, LROOnFirstPoll, LROImmediate, LRODelay)
	}
	return LRODelay, d, nil
}

// Validate reports whether the options name a known LRO mode.
func (o Options) Validate() error {
	_, _, err := o.mode()
	return err
}

// Server is the Cloud Run Admin API v2 emulator: google.cloud.run.v2.Services
// and google.longrunning.Operations over gRPC. It is safe for concurrent use.
type Server struct {
	runpb.UnimplementedServicesServer

	c     *core.Core
	mode  string
	delay time.Duration

	mu       sync.Mutex
	services map[string]*entry // key: projectID/region/serviceID
	pending  map[string]bool   // keys of services reconciling in delay mode
	ops      map[string]*operation
	opOrder  []string              // canonical op names, oldest first
	opsDue   map[string]*operation // delay mode: operations not yet done
	seq      uint64                // creation order tie-break
	watchers []func(Change)        // see Watch
	regions  []string              // Options.Regions
}

// entry is one stored service with its IAM policy and revisions.
type entry struct {
	project core.Project
	region  string
	id      string
	// svc holds names in project-ID form, already defaulted.
	svc       *runpb.Service
	policy    *iampb.Policy
	revisions map[string]*runpb.RevisionTemplate // short revision name → template
	revCount  int
	seq       uint64
	// settleAt is when a delay-mode rollout completes (zero: settled).
	settleAt time.Time
}

func (e *entry) key() string { return e.project.ID + "/" + e.region + "/" + e.id }

// maxOperations bounds the operations kept for polling; the oldest go first.
const maxOperations = 10_000

// New returns a Cloud Run surface over c. An invalid opts.LRO falls back to
// on-first-poll with a warning on c.Log; call Options.Validate first to
// reject it instead.
func New(c *core.Core, opts Options) *Server {
	mode, delay, err := opts.mode()
	if err != nil {
		c.Log.Warn("cloudrun: invalid LRO option, using on-first-poll", "err", err)
		mode, delay = LROOnFirstPoll, 0
	}
	return &Server{
		c:        c,
		mode:     mode,
		delay:    delay,
		regions:  opts.Regions,
		services: map[string]*entry{},
		pending:  map[string]bool{},
		ops:      map[string]*operation{},
		opsDue:   map[string]*operation{},
	}
}

// Register registers runpb.ServicesServer and longrunningpb.OperationsServer on g.
func (s *Server) Register(g *grpc.Server) {
	runpb.RegisterServicesServer(g, s)
	longrunningpb.RegisterOperationsServer(g, &operationsServer{s: s})
}

// ServiceExists reports whether project (ID or number) has the service in
// region. It does not count as an API call.
func (s *Server) ServiceExists(project, region, name string) bool {
	_, ok := s.Service(project, region, name)
	return ok
}

// Service returns a copy of the stored service (names in project-ID form),
// for tests and other emulator surfaces. It does not count as an API call.
func (s *Server) Service(project, region, name string) (*runpb.Service, bool) {
	p, ok := s.c.Projects.Lookup(project)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	e := s.services[p.ID+"/"+region+"/"+name]
	if e == nil {
		return nil, false
	}
	return proto.CloneOf(e.svc), true
}

// IAMPolicy returns a copy of the service's IAM policy.
func (s *Server) IAMPolicy(project, region, name string) (*iampb.Policy, bool) {
	p, ok := s.c.Projects.Lookup(project)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.services[p.ID+"/"+region+"/"+name]
	if e == nil {
		return nil, false
	}
	return proto.CloneOf(e.policy), true
}

// Seed stores a service directly, for sandboxes and tests: it validates and
// defaults svc like CreateService and stores it settled (not reconciling),
// without an operation, an audit entry or call accounting. An existing
// service of that name is replaced.
func (s *Server) Seed(project, region, id string, svc *runpb.Service) (*runpb.Service, error) {
	ref, err := s.parseServiceName("name", "projects/"+project+"/locations/"+region+"/services/"+id)
	if err != nil {
		return nil, fmt.Errorf("seeding service %s: %w", id, err)
	}
	if svc == nil {
		svc = &runpb.Service{}
	}
	in := proto.CloneOf(svc)
	if err := validateService("service", in); err != nil {
		return nil, fmt.Errorf("seeding service %s: %w", id, err)
	}
	now := s.c.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.newEntryLocked(ref, in, s.c.DefaultPrincipal, now)
	if err != nil {
		return nil, fmt.Errorf("seeding service %s: %w", id, err)
	}
	settle(e.svc, now)
	s.services[e.key()] = e
	s.notifyLocked(e, false, now)
	return proto.CloneOf(e.svc), nil
}

// SeedIAMPolicy replaces the service's IAM policy directly (no etag check,
// no audit entry) and returns the stored policy with its new etag.
func (s *Server) SeedIAMPolicy(project, region, name string, p *iampb.Policy) (*iampb.Policy, error) {
	ref, err := s.parseServiceName("resource", "projects/"+project+"/locations/"+region+"/services/"+name)
	if err != nil {
		return nil, fmt.Errorf("seeding IAM policy of %s: %w", name, err)
	}
	np, err := normalisePolicy(p)
	if err != nil {
		return nil, fmt.Errorf("seeding IAM policy of %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.services[ref.key()]
	if e == nil {
		return nil, fmt.Errorf("seeding IAM policy: %w", notFound(ref))
	}
	np.Etag = newPolicyEtag()
	e.policy = np
	return proto.CloneOf(np), nil
}
