// Package event turns the events that reach the EnforceIAP function into
// decisions: which Cloud Run services (or whole projects) to reconcile, or
// which Compute resource changed, or why there is nothing to do.
//
// Three inputs are understood:
//   - Eventarc audit-log CloudEvents (google.cloud.audit.log.v1.written) whose
//     data is a Cloud Audit Logs LogEntry (Via "eventarc");
//   - Pub/Sub messagePublished CloudEvents from the replay topic whose message
//     data is a replay message, see docs/replay-message.md (Via
//     "pubsub-replay");
//   - Pub/Sub messagePublished CloudEvents whose message data is a LogEntry,
//     as an org-wide log sink routes them (Via "log-sink"), and raw LogEntry
//     JSON read from Cloud Logging (DecodeLogEntry).
//
// The decoder trusts an event only for "which resource": the reconciler must
// read live state. It never panics on bad input; malformed input yields an
// error wrapping ErrMalformed, input that is well formed but not ours yields
// a Decision with Skip set.
package event

import (
	"errors"
	"time"
)

// ErrMalformed marks input that cannot be decoded: invalid or truncated
// JSON, fields of the wrong type, missing required fields, unknown replay
// message versions, or an event whose attributes contradict its payload.
// Such events are permanent failures: redelivery will not fix them.
var ErrMalformed = errors.New("malformed event")

// TargetKind says what a Target names.
type TargetKind string

const (
	// TargetService is one Cloud Run service: Project, Region and Service are set.
	TargetService TargetKind = "service"
	// TargetProject is every Cloud Run service of Project, restricted to
	// Region when Region is set.
	TargetProject TargetKind = "project"
	// TargetSweep is every Cloud Run service labelled iap in Scope (a
	// project, folder or organisation): the function discovers them and
	// publishes one replay message per service (the scheduled sweep).
	TargetSweep TargetKind = "sweep"
)

// Target is one thing to reconcile.
type Target struct {
	Kind TargetKind
	// Project is the project id or number as it appeared in the event; the
	// reconciler resolves numbers.
	Project string
	// Region is the Cloud Run region; empty only for Project targets, where
	// it means all regions.
	Region string
	// Service is the short service name; empty for Project targets.
	Service string
	// Scope is projects/P, folders/N or organizations/N; Sweep targets only.
	Scope string
}

// ResourceName returns the Cloud Run v2 resource name of t
// ("projects/P/locations/R/services/S"), or its parent for Project targets
// ("projects/P/locations/R", or "projects/P" when Region is empty).
func (t Target) ResourceName() string {
	if t.Kind == TargetSweep {
		return t.Scope
	}
	s := "projects/" + t.Project
	if t.Region == "" {
		return s
	}
	s += "/locations/" + t.Region
	if t.Kind == TargetService {
		s += "/services/" + t.Service
	}
	return s
}

// String returns ResourceName.
func (t Target) String() string { return t.ResourceName() }

// How a decision's event reached the function.
const (
	ViaEventarc     = "eventarc"      // an Eventarc audit-log trigger
	ViaPubSubReplay = "pubsub-replay" // a replay message on the replay topic
	ViaLogSink      = "log-sink"      // a LogEntry routed by a log sink, or read from Cloud Logging
)

// Trigger describes the event that led to a decision, for outcomes and logs.
type Trigger struct {
	// EventID and Source identify the event; at-least-once delivery means
	// the pair (Source, EventID) is the deduplication key. For LogEntries
	// that did not arrive through an Eventarc audit-log trigger (log sink,
	// DecodeLogEntry) they are derived the way Eventarc derives them, so the
	// same entry has the same key on every path.
	EventID string
	Source  string
	// Type is the CloudEvent type: AuditLogWritten for LogEntries on every
	// path, MessagePublished for replay messages.
	Type string
	// Method is the audited methodName, or ReplayMethod.
	Method string
	// Principal is the caller (authenticationInfo.principalEmail) or the
	// replay message's requestedBy; may be empty.
	Principal string
	// ResourceName is the audited resourceName, or the replay target's name.
	ResourceName string
	// Time is when the audited change happened (the LogEntry timestamp) or
	// when the replay message was published; zero if unknown.
	Time time.Time
	Via  string
}

// ComputeKind names the Compute resource a ComputeRef points at.
type ComputeKind string

const (
	ComputeBackendService       ComputeKind = "backendService"
	ComputeNetworkEndpointGroup ComputeKind = "networkEndpointGroup"
)

// ComputeRef is a Compute resource whose change may put Cloud Run services
// behind (or change) a load balancer.
type ComputeRef struct {
	Project string // id or number, as it appeared
	Region  string // "" for global resources
	Kind    ComputeKind
	Name    string
}

// Decision is what an event asks for. Exactly one of Targets (non-empty),
// Compute (non-nil) and Skip (non-empty) is set.
type Decision struct {
	// Targets are the Cloud Run services (or projects) to reconcile.
	Targets []Target
	// Compute is set for Compute events: the backend service or NEG that
	// changed. The reconciler must find the Cloud Run services behind it.
	Compute *ComputeRef
	// Skip, when non-empty, says why there is nothing to do.
	Skip    string
	Trigger Trigger
}

// Method names the decoder acts on.
const (
	RunV1CreateService  = "google.cloud.run.v1.Services.CreateService"
	RunV1ReplaceService = "google.cloud.run.v1.Services.ReplaceService"
	RunV1SetIamPolicy   = "google.cloud.run.v1.Services.SetIamPolicy"
	RunV2CreateService  = "google.cloud.run.v2.Services.CreateService"
	RunV2UpdateService  = "google.cloud.run.v2.Services.UpdateService"
	RunV2SetIamPolicy   = "google.cloud.run.v2.Services.SetIamPolicy"
)

// Service names in audit entries.
const (
	RunServiceName     = "run.googleapis.com"
	ComputeServiceName = "compute.googleapis.com"
)

var runHandled = []string{
	RunV1CreateService, RunV1ReplaceService, RunV1SetIamPolicy,
	RunV2CreateService, RunV2UpdateService, RunV2SetIamPolicy,
}

var runDeletes = []string{
	"google.cloud.run.v1.Services.DeleteService",
	"google.cloud.run.v2.Services.DeleteService",
}

// computeAPIVersions are the Compute API versions whose calls are logged
// with the version as methodName prefix ("v1.compute.…", "beta.compute.…").
var computeAPIVersions = []string{"v1", "beta", "alpha"}

// computeHandled maps collection → methods acted on.
var computeHandled = map[string][]string{
	"backendServices":             {"insert", "patch", "update", "setSecurityPolicy"},
	"regionBackendServices":       {"insert", "patch", "update", "setSecurityPolicy"},
	"regionNetworkEndpointGroups": {"insert"},
}
