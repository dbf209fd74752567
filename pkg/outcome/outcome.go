// Package outcome is iapguard's public outcome contract: the JSON message
// published to the outcomes topic once per reconciled resource per event, its
// Pub/Sub attributes and ordering key. Subscribers may import it to decode
// messages. The schema is versioned (SchemaVersion); fields are only ever
// added within a version. docs/outcomes.md documents it for non-Go readers.
//
// Publisher is the function's side: it publishes a message through Pub/Sub's
// REST API (the discovery-based client google.golang.org/api/pubsub/v1, a
// *pubsub.Service), retried as Google's generated client retries Publish.
// Subscribers need neither.
package outcome

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the version of the message schema. It is also sent as the
// "schemaVersion" attribute.
const SchemaVersion = "1"

// Kind is what happened to the resource.
type Kind string

// The outcome kinds.
const (
	// Remediated: iapguard changed something and the service now complies
	// (or, in dry-run mode, would have changed something).
	Remediated Kind = "remediated"
	// Compliant: the service already complied; nothing was written.
	Compliant Kind = "compliant"
	// Skipped: nothing to do — unmanaged service (label absent or
	// "disabled"), resource gone, or an event that is not for iapguard.
	Skipped Kind = "skipped"
	// Conflict: compliance is impossible as configured (e.g. Cloud CDN on a
	// fronting backend service); a person must decide.
	Conflict Kind = "conflict"
	// Rejected: the request or event is invalid or out of scope (bad label
	// value, project not allowlisted, malformed event). Not retried.
	Rejected Kind = "rejected"
	// Failed: a permanent error (e.g. permission denied) stopped iapguard.
	Failed Kind = "failed"
	// OptedOut: a service iapguard managed lost its label; nothing was
	// turned off, but subscribers should know it is no longer guarded.
	OptedOut Kind = "opted-out"
)

// Kinds lists every outcome kind.
func Kinds() []Kind {
	return []Kind{Remediated, Compliant, Skipped, Conflict, Rejected, Failed, OptedOut}
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, v := range Kinds() {
		if k == v {
			return true
		}
	}
	return false
}

// Mode is how IAP guards the service.
type Mode string

const (
	// LoadBalancer: IAP is enabled on every backend service that fronts the service.
	LoadBalancer Mode = "load-balancer"
	// Direct: Cloud Run's built-in IAP is used: no load balancer fronts the
	// service, or the service already had built-in IAP on (it then guards
	// the load balancer path too; Google does not support IAP on both).
	Direct Mode = "direct"
)

// Message is the body of one outcome message.
type Message struct {
	SchemaVersion string   `json:"schemaVersion"`
	Outcome       Kind     `json:"outcome"`
	Resource      Resource `json:"resource"`
	Trigger       Trigger  `json:"trigger"`
	Mode          Mode     `json:"mode,omitempty"`
	// Reason explains skipped, rejected, failed, conflict and opted-out outcomes.
	Reason   string   `json:"reason,omitempty"`
	Steps    []Step   `json:"steps"`
	Changes  []Change `json:"changes"`
	Warnings []string `json:"warnings,omitempty"`
	DryRun   bool     `json:"dryRun"`
	// DurationMs is the wall time of the reconcile, in milliseconds.
	DurationMs int64     `json:"durationMs"`
	Time       time.Time `json:"time"`
}

// Resource identifies the Cloud Run service (or, for events that could not be
// tied to one, what the event named).
type Resource struct {
	// Name is the full resource name: projects/P/locations/R/services/S.
	Name    string `json:"name"`
	Project string `json:"project"`
	Region  string `json:"region,omitempty"`
	Service string `json:"service,omitempty"`
}

// Trigger describes the event that caused the reconcile.
type Trigger struct {
	EventID string `json:"eventId,omitempty"`
	Source  string `json:"source,omitempty"`
	Type    string `json:"type,omitempty"`
	// Method is the audit-log method name (e.g. google.cloud.run.v2.Services.UpdateService).
	Method string `json:"method,omitempty"`
	// ResourceName is the audit-log resource that changed (a backend service
	// for compute events).
	ResourceName string `json:"resourceName,omitempty"`
	// Principal is who made the change that caused the event.
	Principal string `json:"principal,omitempty"`
	// Via is how the event arrived: eventarc, pubsub-replay, log-sink, cli.
	Via  string    `json:"via,omitempty"`
	Time time.Time `json:"time,omitzero"`
}

// StepResult is the result of one plan step. In a plan that has not been
// applied (a dry run), StepChanged means "will change".
type StepResult string

const (
	StepOK       StepResult = "ok"
	StepChanged  StepResult = "changed"
	StepConflict StepResult = "conflict"
	StepWarning  StepResult = "warning"
	StepFailed   StepResult = "failed"
	StepSkipped  StepResult = "skipped"
	// StepRejected: the request the labels make cannot be honoured as
	// written (an unknown access policy, a member the IAP API refuses);
	// nothing was done for it.
	StepRejected StepResult = "rejected"
)

// Step names, in the order steps appear (Step.Name).
const (
	// StepAgentIdentity: the project's IAP service agent exists.
	StepAgentIdentity = "agent-identity"
	// StepInvokerBinding: the agent holds roles/run.invoker on the service.
	StepInvokerBinding = "invoker-binding"
	// StepIAMAuth: nobody public holds roles/run.invoker, and the invoker
	// IAM check is on.
	StepIAMAuth = "iam-auth"
	// StepIngress: load-balancer mode restricts ingress to internal and
	// Cloud Load Balancing.
	StepIngress = "ingress"
	// StepBackendIAP (one per fronting backend service): IAP is on there.
	StepBackendIAP = "backend-iap"
	// StepDirectIAP: Cloud Run's built-in IAP is on.
	StepDirectIAP = "direct-iap"
	// StepAccess (one per IAP resource): who may pass IAP; grants from the
	// service's access policy (label iap-access). Resource is the IAP
	// resource name.
	StepAccess = "access"
)

// Step is the result of one named plan step: agent-identity,
// invoker-binding, iam-auth, ingress, backend-iap, direct-iap, access.
type Step struct {
	Name   string     `json:"name"`
	Result StepResult `json:"result"`
	// Resource is what the step acts on (a backend service for backend-iap).
	Resource string `json:"resource,omitempty"`
	Message  string `json:"message"`
}

// Change is one field iapguard changed (or would change, in dry-run mode).
type Change struct {
	Resource string `json:"resource"`
	Field    string `json:"field"`
	Before   string `json:"before"`
	After    string `json:"after"`
}

// Attribute names carried on every message, for server-side subscription
// filters such as `attributes.outcome = "failed"`.
const (
	AttrOutcome       = "outcome"
	AttrProject       = "project"
	AttrRegion        = "region"
	AttrService       = "service"
	AttrDryRun        = "dryRun"
	AttrSchemaVersion = "schemaVersion"
)

// Attributes returns the Pub/Sub attributes for m.
//
// Every value is bounded to MaxAttributeValue bytes (Pub/Sub refuses a
// longer one and the publish would fail on every redelivery): a longer
// value is cut and ends in a digest of the whole, so distinct values stay
// distinct.
func (m *Message) Attributes() map[string]string {
	return map[string]string{
		AttrOutcome:       bounded(string(m.Outcome), MaxAttributeValue),
		AttrProject:       bounded(m.Resource.Project, MaxAttributeValue),
		AttrRegion:        bounded(m.Resource.Region, MaxAttributeValue),
		AttrService:       bounded(m.Resource.Service, MaxAttributeValue),
		AttrDryRun:        strconv.FormatBool(m.DryRun),
		AttrSchemaVersion: SchemaVersion,
	}
}

// Pub/Sub's documented limits on what a message carries besides its data.
const (
	MaxAttributeValue = 1024
	MaxOrderingKey    = 1024
)

// OrderingKey is the resource name, so one subscriber sees a service's
// outcomes in publish order; bounded to MaxOrderingKey bytes like the
// attributes.
func (m *Message) OrderingKey() string { return bounded(m.Resource.Name, MaxOrderingKey) }

// bounded returns s if it fits in limit bytes, else its longest valid UTF-8
// prefix that leaves room for "…#" and 16 hex digits of its SHA-256.
func bounded(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	tail := "…#" + hex.EncodeToString(sum[:8])
	cut := limit - len(tail)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + tail
}

// Validate checks the invariants subscribers rely on.
func (m *Message) Validate() error {
	if m.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schemaVersion %q: want %q", m.SchemaVersion, SchemaVersion)
	}
	if !m.Outcome.Valid() {
		return fmt.Errorf("outcome %q is not a known kind", m.Outcome)
	}
	if m.Resource.Name == "" || m.Resource.Project == "" {
		return fmt.Errorf("resource name and project are required")
	}
	return nil
}

// Marshal encodes m, filling SchemaVersion and normalising nil slices to [].
func (m *Message) Marshal() ([]byte, error) {
	m.SchemaVersion = SchemaVersion
	if m.Steps == nil {
		m.Steps = []Step{}
	}
	if m.Changes == nil {
		m.Changes = []Change{}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encoding outcome: %w", err)
	}
	return json.Marshal(m)
}

// Unmarshal decodes and validates a message body.
func Unmarshal(b []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decoding outcome: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("decoding outcome: %w", err)
	}
	return &m, nil
}
