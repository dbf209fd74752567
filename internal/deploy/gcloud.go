package deploy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/iapguard/iapguard/eventarc"
)

// Triggers loads the trigger definitions from eventarc/triggers.yaml.
func Triggers() ([]eventarc.Trigger, error) {
	ts, err := eventarc.Load()
	if err != nil {
		return nil, fmt.Errorf("loading trigger definitions: %w", err)
	}
	return ts, nil
}

// triggerNameRE: Eventarc trigger ids are lowercase letters, digits and
// hyphens, start with a letter and are at most 63 characters long.
var triggerNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// resolved is one trigger with its deployment name and location.
type resolved struct {
	eventarc.Trigger
	ID  string // prefixed trigger id
	Loc string // "global" or the region
}

func resolve(cfg Config, ts []eventarc.Trigger) ([]resolved, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if len(ts) == 0 {
		return nil, fmt.Errorf("rendering triggers: no trigger definitions")
	}
	out := make([]resolved, 0, len(ts))
	for _, t := range ts {
		r := resolved{Trigger: t, ID: cfg.TriggerPrefix + t.Name, Loc: "global"}
		if t.Location == "region" {
			r.Loc = cfg.Region
		}
		if !triggerNameRE.MatchString(r.ID) {
			return nil, fmt.Errorf("rendering trigger %q: %q is not a valid Eventarc trigger id (lowercase letters, digits, hyphens, at most 63 characters)", t.Name, r.ID)
		}
		if t.EventType == eventarc.MessagePublished && !topicRE.MatchString(t.Topic) {
			return nil, fmt.Errorf("rendering trigger %q: %q is not a topic id", t.Name, t.Topic)
		}
		out = append(out, r)
	}
	return out, nil
}

// shellQuote quotes s for a POSIX shell unless it consists only of
// characters that need no quoting.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// gflag renders --name=value with the value quoted as needed.
func gflag(name, value string) string { return "--" + name + "=" + shellQuote(value) }

// requiredFirst orders the triggers required first, optional last, each
// group in definition order.
func requiredFirst(ts []eventarc.Trigger) []eventarc.Trigger {
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b eventarc.Trigger) int {
		switch {
		case a.Optional == b.Optional:
			return 0
		case b.Optional:
			return -1
		}
		return 1
	})
	return out
}

// gcloudTriggerCommands renders one idempotent shell command per trigger of
// ts (eventarc/triggers.yaml), required triggers first and optional ones (methods
// outside Eventarc's published audit-log catalog) last: it creates the
// trigger, or, when a trigger of that name exists, updates its destination,
// identity and event filters in place (gcloud eventarc triggers update
// accepts --event-filters; only the transport topic of a Pub/Sub trigger
// cannot change, and its topic is fixed by the definition).
//
// Audit-log triggers filter on type, serviceName and methodName (plus a
// resourceName path pattern when the definition has one) and live in their
// definition's location ("global" receives the entries of every location;
// eventarc.Receives); they all deliver to the function's region. The replay
// trigger uses the existing replay topic as its transport, so messages
// published there (by iapctl, the sweep or a log sink) reach the function.
//
// A required trigger's create is retried (the script's retry function): on
// a fresh project Eventarc's service agent is created, and granted its role,
// on first use, and the first creations can be refused until that has
// propagated (terraform-provider-google issue 14584). An optional trigger is
// tried once and a refusal is a warning: whether Eventarc accepts its
// method is known only on a real project, and the sweep covers it either
// way.
//
// Running the commands needs roles/eventarc.admin and, on the trigger
// identity, roles/iam.serviceAccountUser.
func gcloudTriggerCommands(cfg Config, ts []eventarc.Trigger) ([]string, error) {
	rs, err := resolve(cfg, requiredFirst(ts))
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cmds := make([]string, 0, len(rs))
	for _, r := range rs {
		where := []string{gflag("project", cfg.Project), gflag("location", r.Loc)}
		dest := []string{
			gflag("destination-run-service", cfg.FunctionService),
			gflag("destination-run-region", cfg.Region),
			gflag("service-account", cfg.ServiceAccount),
		}
		filters := []string{gflag("event-filters", "type="+r.EventType)}
		var transport []string
		switch r.EventType {
		case eventarc.AuditLogWritten:
			filters = append(filters,
				gflag("event-filters", "serviceName="+r.ServiceName),
				gflag("event-filters", "methodName="+r.MethodName))
			if r.ResourceNamePattern != "" {
				filters = append(filters, gflag("event-filters-path-pattern", "resourceName="+r.ResourceNamePattern))
			}
		case eventarc.MessagePublished:
			transport = append(transport, gflag("transport-topic", "projects/"+cfg.Project+"/topics/"+r.Topic))
		}
		update := fmt.Sprintf("gcloud eventarc triggers update %s %s \\\n    %s \\\n    %s", r.ID, strings.Join(where, " "),
			strings.Join(dest, " \\\n    "), strings.Join(filters, " \\\n    "))
		create := fmt.Sprintf("gcloud eventarc triggers create %s %s \\\n    %s \\\n    %s", r.ID, strings.Join(where, " "),
			strings.Join(dest, " \\\n    "), strings.Join(append(filters, transport...), " \\\n    "))
		dl := fmt.Sprintf("dead_letter %s %s", r.ID, shellQuote(r.Loc))
		var b strings.Builder
		fmt.Fprintf(&b, "# %s: %s\n", r.ID, strings.Join(strings.Fields(r.Description), " "))
		if !r.Optional {
			fmt.Fprintf(&b, "if gcloud eventarc triggers describe %s %s >/dev/null 2>&1; then\n", r.ID, strings.Join(where, " "))
			fmt.Fprintf(&b, "  %s\n", update)
			b.WriteString("else\n")
			fmt.Fprintf(&b, "  retry %s\n", create)
			b.WriteString("fi\n")
			b.WriteString(dl)
		} else {
			b.WriteString("# Optional: the method is not in Eventarc's published audit-log catalog; a refusal is a warning.\n")
			fmt.Fprintf(&b, "if gcloud eventarc triggers describe %s %s >/dev/null 2>&1; then\n", r.ID, strings.Join(where, " "))
			fmt.Fprintf(&b, "  verb=update\nelse\n  verb=create\nfi\n")
			fmt.Fprintf(&b, "if gcloud eventarc triggers \"$verb\" %s %s \\\n    %s \\\n    %s; then\n", r.ID, strings.Join(where, " "),
				strings.Join(dest, " \\\n    "), strings.Join(filters, " \\\n    "))
			fmt.Fprintf(&b, "  %s\n", dl)
			b.WriteString("else\n")
			fmt.Fprintf(&b, "  optional_refused %s %s\n", r.ID, shellQuote(r.MethodName))
			b.WriteString("fi")
		}
		cmds = append(cmds, b.String())
	}
	return cmds, nil
}

// GcloudTriggerScript renders a complete bash script (cloudbuild.yaml runs
// it) that:
//  1. creates or updates every trigger (gcloudTriggerCommands);
//  2. gives each trigger's Pub/Sub subscription, which Eventarc creates
//     and owns, a dead-letter policy (cfg.DeadLetterTopic after
//     cfg.MaxDeliveryAttempts attempts) and lets the Pub/Sub service agent
//     forward from it;
//  3. deletes triggers whose names carry the prefix but that triggers.yaml
//     no longer defines in their location (an upgrade that moves a trigger
//     to "global" deletes its old regional copy, which would otherwise
//     deliver every regional event a second time).
//
// Step 2 changes a resource Eventarc manages; Eventarc keeps it across
// trigger updates as far as we know, which is why the script reapplies it on
// every run (not verified against Google Cloud). The dead-letter topic and
// the service agent's publisher binding on it are created beforehand by
// deploy/scripts/pubsub.sh.
func GcloudTriggerScript(cfg Config) (string, error) {
	ts, err := Triggers()
	if err != nil {
		return "", err
	}
	return gcloudTriggerScript(cfg, ts)
}

// retryFunc is the script's retry function: a fresh project's Eventarc
// service agent may refuse the first trigger creations until its role has
// propagated (terraform-provider-google issue 14584), so a required
// trigger's create is tried DEPLOY_RETRY_ATTEMPTS times (default 5), waiting
// DEPLOY_RETRY_DELAY seconds (default 20) times the attempt number between
// tries: about 3 minutes in all.
const retryFunc = `# retry CMD...: runs CMD until it succeeds, at most DEPLOY_RETRY_ATTEMPTS
# times (a fresh project's Eventarc service agent may refuse the first
# trigger creations; terraform-provider-google issue 14584).
retry() {
  local attempt=1 attempts=${DEPLOY_RETRY_ATTEMPTS:-5} delay=${DEPLOY_RETRY_DELAY:-20}
  until "$@"; do
    if ((attempt >= attempts)); then
      printf 'error: failed %d times: %s\n' "$attempt" "$*" >&2
      return 1
    fi
    printf '==> attempt %d of %d failed; retrying in %ds (a fresh project'"'"'s Eventarc service agent may still be getting its role)\n' \
      "$attempt" "$attempts" $((delay * attempt)) >&2
    sleep $((delay * attempt))
    attempt=$((attempt + 1))
  done
}
`

func gcloudTriggerScript(cfg Config, ts []eventarc.Trigger) (string, error) {
	cmds, err := gcloudTriggerCommands(cfg, ts)
	if err != nil {
		return "", err
	}
	rs, err := resolve(cfg, ts)
	if err != nil {
		return "", err
	}
	cfg = cfg.withDefaults()
	p := shellQuote(cfg.Project)
	var b strings.Builder
	b.WriteString("#!/usr/bin/env bash\n")
	b.WriteString("# Generated by `iapctl deploy triggers` from eventarc/triggers.yaml. Do not edit:\n")
	b.WriteString("# change eventarc/triggers.yaml and render again.\n")
	b.WriteString("set -euo pipefail\n\n")
	fmt.Fprintf(&b, "project_number=$(gcloud projects describe %s --format='value(projectNumber)')\n", p)
	b.WriteString("pubsub_agent=\"service-${project_number}@gcp-sa-pubsub.iam.gserviceaccount.com\"\n\n")
	b.WriteString("# dead_letter TRIGGER LOCATION: dead-letter policy on the trigger's subscription.\n")
	b.WriteString("dead_letter() {\n")
	b.WriteString("  local sub\n")
	fmt.Fprintf(&b, "  sub=$(gcloud eventarc triggers describe \"$1\" %s --location=\"$2\" --format='value(transport.pubsub.subscription)')\n", gflag("project", cfg.Project))
	fmt.Fprintf(&b, "  gcloud pubsub subscriptions update \"$sub\" %s \\\n    %s %s\n", gflag("project", cfg.Project),
		gflag("dead-letter-topic", "projects/"+cfg.Project+"/topics/"+cfg.DeadLetterTopic),
		gflag("max-delivery-attempts", fmt.Sprint(cfg.MaxDeliveryAttempts)))
	fmt.Fprintf(&b, "  gcloud pubsub subscriptions add-iam-policy-binding \"$sub\" %s \\\n    --member=\"serviceAccount:${pubsub_agent}\" --role=roles/pubsub.subscriber >/dev/null\n", gflag("project", cfg.Project))
	b.WriteString("}\n\n")
	b.WriteString(retryFunc)
	b.WriteString("\n")
	b.WriteString("# optional_refused TRIGGER METHOD: warns that an optional trigger was not made.\n")
	b.WriteString("optional_refused() {\n")
	b.WriteString("  printf 'warning: Eventarc refused optional trigger %s (%s is not in its published audit-log catalog); the scheduled sweep covers it\\n' \"$1\" \"$2\" >&2\n")
	b.WriteString("}\n")
	for _, c := range cmds {
		b.WriteString("\n")
		b.WriteString(c)
		b.WriteString("\n")
	}
	var locs, names []string
	for _, r := range rs {
		if !slices.Contains(locs, r.Loc) {
			locs = append(locs, r.Loc)
		}
		names = append(names, r.Loc+"/"+r.ID)
	}
	slices.Sort(locs)
	b.WriteString("\n# Prune: triggers named with the prefix that triggers.yaml no longer defines\n")
	b.WriteString("# in that location (a trigger moved to another location leaves its old copy).\n")
	fmt.Fprintf(&b, "for location in %s; do\n", strings.Join(locs, " "))
	fmt.Fprintf(&b, "  for name in $(gcloud eventarc triggers list %s --location=\"$location\" \\\n", gflag("project", cfg.Project))
	fmt.Fprintf(&b, "      --filter=%s --format='value(name.basename())'); do\n", shellQuote("name~/triggers/"+cfg.TriggerPrefix))
	b.WriteString("    case \"$location/$name\" in\n")
	fmt.Fprintf(&b, "      %s) ;;\n", strings.Join(names, " | \\\n      "))
	fmt.Fprintf(&b, "      *) gcloud eventarc triggers delete \"$name\" %s --location=\"$location\" --quiet ;;\n", gflag("project", cfg.Project))
	b.WriteString("    esac\n")
	b.WriteString("  done\n")
	b.WriteString("done\n")
	return b.String(), nil
}
