// Package eventarc holds iapguard's Eventarc trigger definitions
// (triggers.yaml), the single source of truth for which audit-log methods
// fire the EnforceIAP function. Deployment renders them into gcloud/Terraform
// trigger definitions; the emulator's Eventarc stand-in delivers exactly the
// audit entries they match; the event decoder is tested against them.
package eventarc

import (
	_ "embed"
	"fmt"
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed triggers.yaml
var triggersYAML []byte

// Event types.
const (
	AuditLogWritten  = "google.cloud.audit.log.v1.written"
	MessagePublished = "google.cloud.pubsub.topic.v1.messagePublished"
)

// Trigger is one Eventarc trigger. Audit-log triggers match on the exact
// serviceName and methodName (and optionally a resourceName path pattern,
// Eventarc's --event-filters-path-pattern syntax: '*' one segment, '**' any
// number). Pub/Sub triggers name a topic.
type Trigger struct {
	Name string `yaml:"name"`
	// Location is "global" or "region" (the function's region). A Cloud
	// Audit Logs trigger receives the events of resources in its own
	// location, and a "global" one those of every location (Receives).
	Location string `yaml:"location"`
	// Optional marks a trigger whose method is not in Eventarc's published
	// audit-log catalog: deployment creates it after the required ones and
	// tolerates a refusal (docs/deploy.md).
	Optional    bool   `yaml:"optional,omitempty"`
	EventType   string `yaml:"eventType"`
	ServiceName string `yaml:"serviceName,omitempty"`
	MethodName  string `yaml:"methodName,omitempty"`
	// ResourceNamePattern is an optional path pattern on resourceName.
	ResourceNamePattern string `yaml:"resourceNamePattern,omitempty"`
	// Topic is the Pub/Sub topic id for messagePublished triggers.
	Topic       string `yaml:"topic,omitempty"`
	Description string `yaml:"description,omitempty"`
}

// Load parses the embedded trigger definitions.
func Load() ([]Trigger, error) { return Parse(triggersYAML) }

// Parse parses trigger definitions in the triggers.yaml format and validates them.
func Parse(b []byte) ([]Trigger, error) {
	var doc struct {
		Triggers []Trigger `yaml:"triggers"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing trigger definitions: %w", err)
	}
	seen := map[string]bool{}
	for i, t := range doc.Triggers {
		if t.Name == "" {
			return nil, fmt.Errorf("trigger %d: name is required", i)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("trigger %q: duplicate name", t.Name)
		}
		seen[t.Name] = true
		switch t.EventType {
		case AuditLogWritten:
			if t.ServiceName == "" || t.MethodName == "" {
				return nil, fmt.Errorf("trigger %q: audit-log triggers need serviceName and methodName", t.Name)
			}
		case MessagePublished:
			if t.Topic == "" {
				return nil, fmt.Errorf("trigger %q: messagePublished triggers need a topic", t.Name)
			}
		default:
			return nil, fmt.Errorf("trigger %q: unsupported eventType %q", t.Name, t.EventType)
		}
		if t.Optional && t.EventType != AuditLogWritten {
			return nil, fmt.Errorf("trigger %q: only audit-log triggers can be optional", t.Name)
		}
		if t.Location != "global" && t.Location != "region" {
			return nil, fmt.Errorf("trigger %q: location must be \"global\" or \"region\", got %q", t.Name, t.Location)
		}
	}
	return doc.Triggers, nil
}

// Receives states Eventarc's location rule for Cloud Audit Logs triggers
// ("Eventarc locations"): a trigger in location triggerLoc receives the
// audit entries of a resource in resourceLoc when the two are the same or
// the trigger is in "global", which receives matching events from every
// location. Locations are "global" or a region name.
func Receives(triggerLoc, resourceLoc string) bool {
	return triggerLoc == "global" || triggerLoc == resourceLoc
}

// MatchesAuditLog reports whether an audit entry with these attributes would
// fire t.
func (t Trigger) MatchesAuditLog(serviceName, methodName, resourceName string) bool {
	if t.EventType != AuditLogWritten || t.ServiceName != serviceName || t.MethodName != methodName {
		return false
	}
	return t.ResourceNamePattern == "" || MatchPathPattern(t.ResourceNamePattern, resourceName)
}

// MatchPathPattern implements Eventarc path patterns: segments separated by
// '/', '*' inside a segment matches within it, a '**' segment matches any
// number of segments (including none).
func MatchPathPattern(pattern, name string) bool {
	return matchSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegs(p, n []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			for i := 0; i <= len(n); i++ {
				if matchSegs(p[1:], n[i:]) {
					return true
				}
			}
			return false
		}
		if len(n) == 0 {
			return false
		}
		if ok, _ := path.Match(p[0], n[0]); !ok {
			return false
		}
		p, n = p[1:], n[1:]
	}
	return len(n) == 0
}

// AuditLogTriggers returns the triggers of event type AuditLogWritten.
func AuditLogTriggers(ts []Trigger) []Trigger {
	var out []Trigger
	for _, t := range ts {
		if t.EventType == AuditLogWritten {
			out = append(out, t)
		}
	}
	return out
}
