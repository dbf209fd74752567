package event

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// ReplayMethod is Trigger.Method for replay messages.
const ReplayMethod = "iapguard.replay"

// ReplayVersion is the replay message schema version this package reads and
// writes.
const ReplayVersion = 1

// ReplayMessage is the data of a message on the replay topic: a request to
// reconcile one Cloud Run service (Service set, Region required), every
// service of a project in one region (Region set), or every service of a
// project (neither). See docs/replay-message.md. Unknown members are
// rejected, so that a misspelt "service" cannot widen a replay to a whole
// project.
type ReplayMessage struct {
	Version int `json:"version"`
	// Scope (projects/P, folders/N or organizations/N) makes the message a
	// sweep request: discover the labelled services of the scope and replay
	// each. It excludes Project, Region and Service.
	Scope   string `json:"scope,omitempty"`
	Project string `json:"project,omitempty"`
	Region  string `json:"region,omitempty"`
	Service string `json:"service,omitempty"`
	// RequestedBy names who asked (a person or "scheduler"); informational,
	// it becomes Trigger.Principal.
	RequestedBy string `json:"requestedBy,omitempty"`
}

// ReplayMessageFor returns the replay message that asks to reconcile t.
func ReplayMessageFor(t Target, requestedBy string) ReplayMessage {
	if t.Kind == TargetSweep {
		return ReplayMessage{Version: ReplayVersion, Scope: t.Scope, RequestedBy: requestedBy}
	}
	m := ReplayMessage{Version: ReplayVersion, Project: t.Project, Region: t.Region, RequestedBy: requestedBy}
	if t.Kind == TargetService {
		m.Service = t.Service
	}
	return m
}

// Validate checks m against the schema. Errors wrap ErrMalformed.
func (m ReplayMessage) Validate() error {
	switch {
	case m.Version == 0:
		return fmt.Errorf("%w: replay message has no version", ErrMalformed)
	case m.Version != ReplayVersion:
		return fmt.Errorf("%w: replay message version %d is not supported (want %d)", ErrMalformed, m.Version, ReplayVersion)
	case m.Scope != "" && (m.Project != "" || m.Region != "" || m.Service != ""):
		return fmt.Errorf("%w: replay message names scope %q together with a project, region or service", ErrMalformed, m.Scope)
	case m.Scope != "":
		if !ValidSweepScope(m.Scope) {
			return fmt.Errorf("%w: replay message scope %q is not projects/P, folders/N or organizations/N", ErrMalformed, m.Scope)
		}
		return nil
	case !ValidProject(m.Project):
		return fmt.Errorf("%w: replay message project %q is not a project id or number (%s)", ErrMalformed, m.Project, ProjectRule)
	case m.Region != "" && !ValidRegion(m.Region):
		return fmt.Errorf("%w: replay message region %q is not a region (%s)", ErrMalformed, m.Region, RegionRule)
	case m.Service != "" && m.Region == "":
		return fmt.Errorf("%w: replay message names service %q without its region", ErrMalformed, m.Service)
	case m.Service != "" && !ValidServiceName(m.Service):
		return fmt.Errorf("%w: replay message service %q is not a service name (%s)", ErrMalformed, m.Service, ServiceNameRule)
	}
	return nil
}

// ValidSweepScope reports whether s is projects/P (a concrete project id
// or number), folders/N or organizations/N (N digits).
func ValidSweepScope(s string) bool {
	kind, id, ok := strings.Cut(s, "/")
	switch {
	case !ok:
		return false
	case kind == "projects":
		return ValidProject(id)
	case kind == "folders", kind == "organizations":
		if id == "" || len(id) > 20 {
			return false
		}
		for _, c := range id {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	return false
}

// Target returns what a valid m asks to reconcile.
func (m ReplayMessage) Target() Target {
	if m.Scope != "" {
		return Target{Kind: TargetSweep, Scope: m.Scope}
	}
	if m.Service != "" {
		return Target{Kind: TargetService, Project: m.Project, Region: m.Region, Service: m.Service}
	}
	return Target{Kind: TargetProject, Project: m.Project, Region: m.Region}
}

// ParseReplayMessage parses and validates replay message JSON. Errors wrap
// ErrMalformed.
//
// A member given twice, in any letter case, is rejected: encoding/json
// matches names case-insensitively and keeps the last, so
// {"service":"billing","service":""} would otherwise select a whole region
// while showing a service to whoever reviewed the message.
func ParseReplayMessage(b []byte) (ReplayMessage, error) {
	var m ReplayMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return ReplayMessage{}, fmt.Errorf("%w: parsing replay message: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ReplayMessage{}, fmt.Errorf("%w: parsing replay message: data after the JSON object", ErrMalformed)
	}
	if name, ok := duplicateMember(b); ok {
		return ReplayMessage{}, fmt.Errorf("%w: parsing replay message: member %q is given more than once", ErrMalformed, name)
	}
	if err := m.Validate(); err != nil {
		return ReplayMessage{}, err
	}
	return m, nil
}

// duplicateMember reports the first member name of the JSON object b that
// repeats an earlier one ignoring case, compared as encoding/json matches
// names (strings.EqualFold). b must be an object the strict decode
// accepted: every name then folds to one of ReplayMessage's few fields, so
// a repeat comes within the first few names.
func duplicateMember(b []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // the '{'
		return "", false
	}
	var seen []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		name, _ := tok.(string)
		if slices.ContainsFunc(seen, func(s string) bool { return strings.EqualFold(s, name) }) {
			return name, true
		}
		seen = append(seen, name)
		if err := dec.Decode(new(json.RawMessage)); err != nil {
			return "", false
		}
	}
	return "", false
}

// messagePublishedData is google.events.cloud.pubsub.v1.MessagePublishedData
// as Eventarc sends it. Eventarc also repeats messageId and publishTime in
// snake case; both spellings are read.
type messagePublishedData struct {
	Message *struct {
		Data             []byte            `json:"data"`
		Attributes       map[string]string `json:"attributes"`
		MessageID        string            `json:"messageId"`
		MessageIDSnake   string            `json:"message_id"`
		PublishTime      string            `json:"publishTime"`
		PublishTimeSnake string            `json:"publish_time"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

func decodeMessagePublished(e cloudevents.Event, tr Trigger) (Decision, error) {
	if err := checkJSONData(e); err != nil {
		return Decision{Trigger: tr}, err
	}
	var env messagePublishedData
	if err := json.Unmarshal(e.Data(), &env); err != nil {
		return Decision{Trigger: tr}, fmt.Errorf("%w: parsing Pub/Sub message envelope: %w", ErrMalformed, err)
	}
	msg := env.Message
	if msg == nil {
		return Decision{Trigger: tr}, fmt.Errorf("%w: Pub/Sub event has no message", ErrMalformed)
	}
	tr.EventID = cmp.Or(tr.EventID, msg.MessageID, msg.MessageIDSnake)
	if t, ok := entryTime(cmp.Or(msg.PublishTime, msg.PublishTimeSnake)); ok {
		tr.Time = t
	}
	if len(msg.Data) == 0 {
		return Decision{Trigger: tr}, fmt.Errorf("%w: Pub/Sub message has no data", ErrMalformed)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(msg.Data, &probe); err != nil {
		return Decision{Trigger: tr}, fmt.Errorf("%w: Pub/Sub message data is not a JSON object: %w", ErrMalformed, err)
	}
	if hasKeyFold(probe, "protoPayload") {
		// The log-sink path: identify the decision by the LogEntry, as
		// Eventarc would have, so every path dedupes on the same key.
		return decodeLogEntryVia(msg.Data, Trigger{EventID: tr.EventID, Source: tr.Source, Time: tr.Time, Via: ViaLogSink})
	}
	m, err := ParseReplayMessage(msg.Data)
	if err != nil {
		return Decision{Trigger: tr}, err
	}
	t := m.Target()
	tr.Method = ReplayMethod
	tr.Principal = m.RequestedBy
	tr.ResourceName = t.ResourceName()
	return Decision{Targets: []Target{t}, Trigger: tr}, nil
}

// hasKeyFold reports whether m has key k, compared as encoding/json
// matches member names (case-insensitively), so that whatever parses as a
// LogEntry is routed as one.
func hasKeyFold(m map[string]json.RawMessage, k string) bool {
	for key := range m {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}
