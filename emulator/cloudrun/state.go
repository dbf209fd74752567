package cloudrun

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/genproto/googleapis/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iapguard/iapguard/emulator/core"
)

// Server-side defaults Cloud Run fills on write (reference §1.3).
const (
	defaultTimeout     = 300 * time.Second
	defaultConcurrency = 80
	defaultCPU         = "1000m"
	defaultMemory      = "512Mi"
	defaultPort        = 8080
	// deletedRetention is how long after deletion expire_time lies [INFER].
	deletedRetention = 30 * 24 * time.Hour
)

// applyDefaults fills the server-side defaults; it is idempotent, so it runs
// on every write before templates are compared.
func applyDefaults(svc *runpb.Service, p core.Project) {
	if svc.LaunchStage == api.LaunchStage_LAUNCH_STAGE_UNSPECIFIED {
		svc.LaunchStage = api.LaunchStage_GA
	}
	if svc.Ingress == runpb.IngressTraffic_INGRESS_TRAFFIC_UNSPECIFIED {
		svc.Ingress = runpb.IngressTraffic_INGRESS_TRAFFIC_ALL
	}
	if len(svc.Traffic) == 0 {
		svc.Traffic = []*runpb.TrafficTarget{{
			Type:    runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
			Percent: 100,
		}}
	}
	t := svc.Template
	if t == nil {
		return
	}
	if t.Timeout == nil {
		t.Timeout = durationpb.New(defaultTimeout)
	}
	if t.MaxInstanceRequestConcurrency == 0 {
		t.MaxInstanceRequestConcurrency = defaultConcurrency
	}
	if t.ServiceAccount == "" {
		t.ServiceAccount = p.NumberString() + "-compute@developer.gserviceaccount.com"
	}
	for _, c := range t.Containers {
		if c.Resources == nil {
			// CPU is allocated only during requests unless the caller
			// set resources (runpb.ResourceRequirements.cpu_idle: "true
			// by default. However, if ResourceRequirements is set, the
			// caller must explicitly set this field to true").
			c.Resources = &runpb.ResourceRequirements{CpuIdle: true}
		}
		if c.Resources.Limits == nil {
			c.Resources.Limits = map[string]string{}
		}
		if c.Resources.Limits["cpu"] == "" {
			c.Resources.Limits["cpu"] = defaultCPU
		}
		if c.Resources.Limits["memory"] == "" {
			c.Resources.Limits["memory"] = defaultMemory
		}
	}
	// A lone container serves on http1/8080 and gets a TCP startup probe
	// on that port, as recorded from Google. (With sidecars the ingress
	// container must name its port; nothing is defaulted.)
	if len(t.Containers) == 1 {
		c := t.Containers[0]
		if len(c.Ports) == 0 {
			c.Ports = []*runpb.ContainerPort{{Name: "http1", ContainerPort: defaultPort}}
		}
		if c.StartupProbe == nil {
			port := c.Ports[0].GetContainerPort()
			if port == 0 {
				port = defaultPort
			}
			c.StartupProbe = &runpb.Probe{TimeoutSeconds: 240, PeriodSeconds: 240, FailureThreshold: 1,
				ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: port}}}
		}
	}
}

// settle marks a service's rollout finished at t: the state Cloud Run shows
// once reconciliation succeeded (reference §1.6 step 2).
func settle(svc *runpb.Service, t time.Time) {
	ts := timestamppb.New(t)
	svc.Reconciling = false
	svc.ObservedGeneration = svc.Generation
	svc.TerminalCondition = &runpb.Condition{
		Type: "Ready", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: ts,
	}
	svc.Conditions = []*runpb.Condition{
		{Type: "RoutesReady", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: ts},
		{Type: "ConfigurationsReady", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: ts},
	}
	svc.LatestReadyRevision = svc.LatestCreatedRevision
	svc.TrafficStatuses = make([]*runpb.TrafficTargetStatus, 0, len(svc.Traffic))
	for _, t := range svc.Traffic {
		svc.TrafficStatuses = append(svc.TrafficStatuses, &runpb.TrafficTargetStatus{
			Type: t.Type, Revision: t.Revision, Percent: t.Percent, Tag: t.Tag,
		})
	}
}

// reconcile marks a service as rolling out (reference §1.6 step 1); the
// observed generation, ready revision and traffic statuses keep their values.
func reconcile(svc *runpb.Service, t time.Time) {
	ts := timestamppb.New(t)
	svc.Reconciling = true
	svc.TerminalCondition = &runpb.Condition{
		Type: "Ready", State: runpb.Condition_CONDITION_RECONCILING, LastTransitionTime: ts,
	}
	svc.Conditions = []*runpb.Condition{
		{Type: "RoutesReady", State: runpb.Condition_CONDITION_RECONCILING, LastTransitionTime: ts},
		{Type: "ConfigurationsReady", State: runpb.Condition_CONDITION_RECONCILING, LastTransitionTime: ts},
	}
}

// startRolloutLocked applies the LRO mode to a freshly written entry.
func (s *Server) startRolloutLocked(e *entry, now time.Time) {
	s.notifyLocked(e, false, now)
	if s.mode != LRODelay {
		settle(e.svc, now)
		e.settleAt = time.Time{}
		delete(s.pending, e.key())
		return
	}
	reconcile(e.svc, now)
	e.settleAt = now.Add(s.delay)
	s.pending[e.key()] = true
}

// settleLocked finishes the delay-mode rollouts and operations whose time
// has come. Every handler calls it first.
func (s *Server) settleLocked() {
	if s.mode != LRODelay {
		return
	}
	now := s.c.Now()
	for k := range s.pending {
		e := s.services[k]
		if e == nil {
			delete(s.pending, k)
			continue
		}
		if !now.Before(e.settleAt) {
			settle(e.svc, e.settleAt)
			e.settleAt = time.Time{}
			delete(s.pending, k)
		}
	}
	for name, op := range s.opsDue {
		if !now.Before(op.doneAt) {
			op.done = true
			delete(s.opsDue, name)
		}
	}
}

// newEntryLocked builds a new service from the caller's spec: writable fields
// only, defaults, identity, first revision, URIs, etag and an empty policy.
func (s *Server) newEntryLocked(ref serviceRef, in *runpb.Service, principal string, now time.Time) (*entry, error) {
	svc := &runpb.Service{}
	replaceWritable(svc, in)
	applyDefaults(svc, ref.project)
	rev := svc.GetTemplate().GetRevision()
	if err := checkRevisionName("service.template.revision", ref.id, rev); err != nil {
		return nil, err
	}
	if rev == "" {
		rev = revisionName(ref.id, 1)
	}
	ts := timestamppb.New(now)
	svc.Name = ref.canonical()
	svc.Uid = newUUID()
	svc.Generation = 1
	svc.CreateTime = ts
	svc.UpdateTime = ts
	svc.Creator = principal
	svc.LastModifier = principal
	svc.LatestCreatedRevision = svc.Name + "/revisions/" + rev
	svc.Uri = serviceURI(ref)
	svc.Urls = []string{fmt.Sprintf("https://%s-%d.%s.run.app", ref.id, ref.project.Number, ref.region), svc.Uri}
	svc.Etag = newEtag()
	s.seq++
	return &entry{
		project:   ref.project,
		region:    ref.region,
		id:        ref.id,
		svc:       svc,
		policy:    &iampb.Policy{Etag: emptyPolicyEtag()},
		revisions: map[string]*runpb.RevisionTemplate{rev: proto.CloneOf(svc.Template)},
		revCount:  1,
		seq:       s.seq,
	}, nil
}

const lowerAlnum = "abcdefghijklmnopqrstuvwxyz0123456789"

// revisionName is {service}-{5-digit number}-{3 random lowercase letters}.
func revisionName(service string, n int) string {
	b := make([]byte, 3)
	for i := range b {
		b[i] = lowerAlnum[rand.IntN(26)]
	}
	return fmt.Sprintf("%s-%05d-%s", service, n, b)
}

// regionCodes are the short codes in *.a.run.app hosts; others fall back to
// the initials of the region's words [INFER].
var regionCodes = map[string]string{
	"us-central1":     "uc",
	"us-east1":        "ue",
	"us-east4":        "uk",
	"us-west1":        "uw",
	"europe-west1":    "ew",
	"europe-west2":    "nw",
	"europe-west3":    "ey",
	"europe-west4":    "ez",
	"asia-east1":      "de",
	"asia-northeast1": "an",
}

// serviceURI is https://{service}-{hash}-{regioncode}.a.run.app, the hash
// being stable per project.
func serviceURI(ref serviceRef) string {
	code, ok := regionCodes[ref.region]
	if !ok {
		for _, w := range strings.Split(strings.TrimRight(ref.region, "0123456789"), "-") {
			code += w[:1]
		}
	}
	h := fnv.New64a()
	h.Write([]byte(ref.project.ID))
	v := h.Sum64()
	hash := make([]byte, 10)
	for i := range hash {
		hash[i] = lowerAlnum[v%36]
		v /= 36
	}
	return fmt.Sprintf("https://%s-%s-%s.a.run.app", ref.id, hash, code)
}

func randomBytes(n int) []byte {
	b := make([]byte, (n+7)/8*8)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
	return b[:n]
}

// newEtag returns a quoted opaque string, the shape Cloud Run v2 uses.
func newEtag() string {
	return `"` + base64.StdEncoding.EncodeToString(randomBytes(18)) + `"`
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// emptyPolicyEtag is the etag of a never-set policy ("ACAB" in JSON).
func emptyPolicyEtag() []byte { return []byte{0x00, 0x20, 0x01} }

// newPolicyEtag returns 8 bytes starting 0x07, like IAM's ("BwX..." in JSON).
func newPolicyEtag() []byte {
	b := randomBytes(8)
	b[0] = 0x07
	return b
}

// view returns a copy of svc with resource names in the caller's form.
func view(svc *runpb.Service, p core.Project, form string) *runpb.Service {
	out := proto.CloneOf(svc)
	out.Name = reform(out.Name, p, form)
	out.LatestReadyRevision = reform(out.LatestReadyRevision, p, form)
	out.LatestCreatedRevision = reform(out.LatestCreatedRevision, p, form)
	return out
}
