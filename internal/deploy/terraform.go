package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/iamperm"
)

// TerraformTrigger is one trigger as the Terraform module reads it from
// deploy/terraform/generated/triggers.json. Every attribute is always
// present (Terraform object types need them); empty means "not used".
type TerraformTrigger struct {
	// Location is "global" or "region" (the module's var.region).
	Location string `json:"location"`
	// Optional marks a trigger whose method is outside Eventarc's published
	// audit-log catalog: the module creates it only with
	// var.optional_triggers (eventarc.Trigger.Optional).
	Optional            bool   `json:"optional"`
	EventType           string `json:"event_type"`
	ServiceName         string `json:"service_name"`
	MethodName          string `json:"method_name"`
	ResourceNamePattern string `json:"resource_name_pattern"`
	Topic               string `json:"topic"`
	Description         string `json:"description"`
}

// TerraformTriggers converts trigger definitions to the module's input,
// keyed by the unprefixed trigger name (the module adds var.trigger_prefix).
func TerraformTriggers(ts []eventarc.Trigger) (map[string]TerraformTrigger, error) {
	if len(ts) == 0 {
		return nil, fmt.Errorf("rendering Terraform triggers: no trigger definitions")
	}
	out := make(map[string]TerraformTrigger, len(ts))
	for _, t := range ts {
		if _, dup := out[t.Name]; dup {
			return nil, fmt.Errorf("rendering Terraform triggers: duplicate trigger %q", t.Name)
		}
		if t.Location != "global" && t.Location != "region" {
			return nil, fmt.Errorf("rendering Terraform trigger %q: location %q is neither global nor region", t.Name, t.Location)
		}
		out[t.Name] = TerraformTrigger{
			Location:            t.Location,
			Optional:            t.Optional,
			EventType:           t.EventType,
			ServiceName:         t.ServiceName,
			MethodName:          t.MethodName,
			ResourceNamePattern: t.ResourceNamePattern,
			Topic:               t.Topic,
			Description:         t.Description,
		}
	}
	return out, nil
}

// TerraformTriggersJSON renders the committed
// deploy/terraform/generated/triggers.json from eventarc/triggers.yaml:
// {"triggers": {NAME: TerraformTrigger}}, indented, newline-terminated.
func TerraformTriggersJSON() ([]byte, error) {
	ts, err := Triggers()
	if err != nil {
		return nil, err
	}
	return terraformTriggersJSON(ts)
}

func terraformTriggersJSON(ts []eventarc.Trigger) ([]byte, error) {
	m, err := TerraformTriggers(ts)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(struct {
		Comment  string                      `json:"//"`
		Triggers map[string]TerraformTrigger `json:"triggers"`
	}{
		Comment:  "Generated from eventarc/triggers.yaml by `iapctl deploy triggers --format=terraform`; do not edit.",
		Triggers: m,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding Terraform triggers: %w", err)
	}
	return append(b, '\n'), nil
}

// TerraformRoleJSON renders the committed
// deploy/terraform/generated/<who>-role.json from internal/iamperm: the role
// id, title, description, stage and permissions of iamperm.CustomRole(who),
// plus the resource-scoped grants the module makes separately.
func TerraformRoleJSON(who string) ([]byte, error) {
	r, err := iamperm.CustomRole(who)
	if err != nil {
		return nil, err
	}
	grants := iamperm.ResourceGrants(who)
	perms := make([]string, 0, len(grants))
	for p := range grants {
		perms = append(perms, p)
	}
	slices.Sort(perms)
	b, err := json.MarshalIndent(struct {
		Comment            string   `json:"//"`
		RoleID             string   `json:"role_id"`
		Title              string   `json:"title"`
		Description        string   `json:"description"`
		Stage              string   `json:"stage"`
		Permissions        []string `json:"permissions"`
		ResourcePermission []string `json:"resource_scoped_permissions"`
	}{
		Comment:            "Generated from internal/iamperm by `iapctl deploy role --format=terraform`; do not edit.",
		RoleID:             r.ID,
		Title:              r.Title,
		Description:        r.Description,
		Stage:              r.Stage,
		Permissions:        r.IncludedPermissions,
		ResourcePermission: perms,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding role %s for Terraform: %w", r.ID, err)
	}
	return append(b, '\n'), nil
}

// LogSinkFilter renders the Cloud Logging filter that selects the audit
// entries the audit-log triggers match, for an aggregated (folder or
// organization) log sink that routes other allowlisted projects' entries to
// the replay topic: Eventarc audit-log triggers only see their own
// project's entries. Resource-name path patterns cannot be expressed in the
// Logging query language, so the filter ignores them and selects a
// superset; the function decides from live state anyway.
func LogSinkFilter() (string, error) {
	ts, err := Triggers()
	if err != nil {
		return "", err
	}
	return logSinkFilter(ts)
}

func logSinkFilter(ts []eventarc.Trigger) (string, error) {
	byService := map[string][]string{}
	for _, t := range eventarc.AuditLogTriggers(ts) {
		if !slices.Contains(byService[t.ServiceName], t.MethodName) {
			byService[t.ServiceName] = append(byService[t.ServiceName], t.MethodName)
		}
	}
	if len(byService) == 0 {
		return "", fmt.Errorf("rendering log sink filter: no audit-log triggers")
	}
	var clauses []string
	for _, s := range slices.Sorted(maps.Keys(byService)) {
		methods := byService[s]
		slices.Sort(methods)
		quoted := make([]string, len(methods))
		for i, m := range methods {
			quoted[i] = fmt.Sprintf("%q", m)
		}
		clauses = append(clauses, fmt.Sprintf("(protoPayload.serviceName=%q AND protoPayload.methodName=(%s))", s, strings.Join(quoted, " OR ")))
	}
	return `logName:"cloudaudit.googleapis.com%2Factivity" AND (` + strings.Join(clauses, " OR ") + ")", nil
}
