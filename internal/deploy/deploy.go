// Package deploy renders iapguard's deployment artefacts from the sources of
// truth, so that nothing about triggers or permissions is written twice:
//
//   - Eventarc triggers come from eventarc/triggers.yaml (eventarc.Load):
//     GcloudTriggerScript renders the gcloud commands cloudbuild.yaml runs,
//     TerraformTriggers the JSON the Terraform module in deploy/terraform
//     reads (deploy/terraform/generated/triggers.json), and LogSinkFilter
//     the Cloud Logging filter for routing other projects' audit entries.
//   - Custom roles come from internal/iamperm (deploy/iam/*.yaml and
//     deploy/terraform/generated/enforcer-role.json).
//
// The package's tests also check the hand-written deployment files against
// the code: cloudbuild.yaml (structure, Cloud Build substitutions, shell
// syntax), the helper scripts in deploy/scripts (run against a fake gcloud),
// the Terraform module (HCL syntax, canonical formatting, declared
// variables), the Pub/Sub schema in deploy/pubsub/outcome.proto against
// pkg/outcome, and that every committed generated file is up to date
// (go test ./internal/deploy -update rewrites them).
//
// Nothing here talks to Google Cloud.
package deploy

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
)

// Names shared by cloudbuild.yaml, deploy/scripts, the Terraform module and
// the docs. Tests check those files against these constants.
const (
	// EntryPoint is the function name registered with functions-framework-go
	// (functions.HTTP: an HTTP function that decodes Eventarc's CloudEvents
	// itself) and served at "/" when FUNCTION_TARGET names it.
	EntryPoint = "EnforceIAP"
	// DefaultService is the Cloud Run service that runs the function.
	DefaultService = "iapguard-enforcer"
	// DefaultTriggerPrefix prefixes every Eventarc trigger name, so that the
	// triggers iapguard owns can be listed and pruned.
	DefaultTriggerPrefix = "iapguard-"
	// OutcomesTopic carries outcome messages (docs/outcomes.md).
	OutcomesTopic = "iapguard-outcomes"
	// DeadLetterTopic receives events Eventarc gave up delivering.
	DeadLetterTopic = "iapguard-dead-letter"
	// OutcomeSchema is the Pub/Sub schema registered for the outcomes topic.
	OutcomeSchema = "iapguard-outcome-v1"
	// EnforcerAccount is the account id of the function's runtime identity.
	EnforcerAccount = "iapguard-enforcer"
	// TriggerAccount is the account id of the Eventarc triggers' identity.
	TriggerAccount = "iapguard-trigger"
	// DefaultMaxDeliveryAttempts bounds redelivery before dead-lettering
	// (Pub/Sub accepts 5..100).
	DefaultMaxDeliveryAttempts = 10
	// LogSinkName is the aggregated log sink of the organisation-wide path
	// (deploy/scripts/org.sh, deploy/terraform/org.tf): it routes the
	// entries LogSinkFilter selects to the replay topic.
	LogSinkName = "iapguard-audit"
)

// Config is what renders project-specific trigger commands.
type Config struct {
	// Project is the project the function and its triggers live in.
	Project string
	// Region is the function's region; triggers with location "region"
	// are created there, and global triggers deliver there.
	Region string
	// FunctionService is the Cloud Run service that receives the events.
	FunctionService string
	// ServiceAccount is the triggers' identity (an email). It needs
	// roles/eventarc.eventReceiver on the project and roles/run.invoker on
	// FunctionService.
	ServiceAccount string
	// TriggerPrefix prefixes trigger names; empty means DefaultTriggerPrefix.
	TriggerPrefix string
	// DeadLetterTopic is the topic id for undeliverable events; empty
	// means DeadLetterTopic.
	DeadLetterTopic string
	// MaxDeliveryAttempts before dead-lettering; 0 means
	// DefaultMaxDeliveryAttempts.
	MaxDeliveryAttempts int
}

var (
	// projectIDRE: 6–30 characters, lowercase letters, digits, hyphens,
	// starting with a letter, not ending with a hyphen. Domain-scoped ids
	// (example.com:project) are accepted too.
	projectIDRE = regexp.MustCompile(`^([a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	regionRE    = regexp.MustCompile(`^[a-z]+(-[a-z]+)+[0-9]+$`)
	// serviceRE: Cloud Run service names (and Eventarc trigger and Pub/Sub
	// ids we generate): lowercase letters, digits, hyphens, starting with a
	// letter, at most 49 characters.
	serviceRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$`)
	emailRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*\.[a-z]+$`)
	prefixRE  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	topicRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$`)
)

// withDefaults returns c with empty optional fields filled.
func (c Config) withDefaults() Config {
	c.TriggerPrefix = cmp.Or(c.TriggerPrefix, DefaultTriggerPrefix)
	c.DeadLetterTopic = cmp.Or(c.DeadLetterTopic, DeadLetterTopic)
	c.MaxDeliveryAttempts = cmp.Or(c.MaxDeliveryAttempts, DefaultMaxDeliveryAttempts)
	return c
}

// Validate reports every invalid field of c (after defaults), joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []string
	if !projectIDRE.MatchString(c.Project) {
		errs = append(errs, fmt.Sprintf("project %q is not a project id", c.Project))
	}
	if !regionRE.MatchString(c.Region) {
		errs = append(errs, fmt.Sprintf("region %q is not a region such as us-central1", c.Region))
	}
	if !serviceRE.MatchString(c.FunctionService) {
		errs = append(errs, fmt.Sprintf("function service %q is not a Cloud Run service name", c.FunctionService))
	}
	if !emailRE.MatchString(c.ServiceAccount) {
		errs = append(errs, fmt.Sprintf("service account %q is not a service account email", c.ServiceAccount))
	}
	if !prefixRE.MatchString(c.TriggerPrefix) {
		errs = append(errs, fmt.Sprintf("trigger prefix %q: want lowercase letters, digits and hyphens, starting with a letter", c.TriggerPrefix))
	}
	if !topicRE.MatchString(c.DeadLetterTopic) || strings.HasPrefix(c.DeadLetterTopic, "goog") {
		errs = append(errs, fmt.Sprintf("dead-letter topic %q is not a topic id", c.DeadLetterTopic))
	}
	if c.MaxDeliveryAttempts < 5 || c.MaxDeliveryAttempts > 100 {
		errs = append(errs, fmt.Sprintf("max delivery attempts %d: Pub/Sub accepts 5 to 100", c.MaxDeliveryAttempts))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid deployment config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// TriggerAccountEmail returns the email of the trigger identity in project.
func TriggerAccountEmail(project string) string {
	return TriggerAccount + "@" + project + ".iam.gserviceaccount.com"
}
