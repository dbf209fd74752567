package functions

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// Environment variables the function reads. They are a public interface:
// docs/configuration.md documents them.
const (
	EnvProject       = "GOOGLE_CLOUD_PROJECT"    // the function's own project (set by Cloud Run functions)
	EnvProjects      = "IAPGUARD_PROJECTS"       // comma-separated allowlist: project ids, numbers, patterns such as team-*, folders/N (iapsetup.Scope)
	EnvOutcomesTopic = "IAPGUARD_OUTCOMES_TOPIC" // topic id or projects/P/topics/T
	EnvDryRun        = "IAPGUARD_DRY_RUN"        // true: plan and publish, change nothing
	EnvLogLevel      = "IAPGUARD_LOG_LEVEL"      // debug, info, warning, error
	EnvTimeout       = "IAPGUARD_TIMEOUT"        // per-event deadline, Go duration (default 60s)
	EnvEmulatorHost  = "IAPGUARD_EMULATOR_HOST"  // host:port of the local emulator (no auth, plain text)
	EnvPrincipal     = "IAPGUARD_PRINCIPAL"      // identity named to the emulator in audit entries
	EnvMaxEventAge   = "IAPGUARD_MAX_EVENT_AGE"  // events older than this are acknowledged without work (default 24h)
	EnvPubSubHost    = "PUBSUB_EMULATOR_HOST"    // honoured by the Pub/Sub library itself
	// EnvMaxConcurrent caps the events one instance reconciles at once
	// (default DefaultMaxConcurrent; 0: no cap). Events beyond it wait for a
	// slot within their deadline, then are redelivered.
	EnvMaxConcurrent = "IAPGUARD_MAX_CONCURRENT"
	// EnvAccessPolicies is the path of the access policy file (YAML or
	// JSON; docs/access.md): on Cloud Run functions a Secret Manager secret
	// mounted as a volume, or a file shipped with the source.
	EnvAccessPolicies = "IAPGUARD_ACCESS_POLICIES"
)

// DefaultMaxConcurrent is the default admission cap per instance: at 1,000
// concurrent events an uncapped instance peaked at 193–213 MiB RSS, a cap of
// about 100 kept it at 102–110 MiB (issue #10; target 128 MiB).
const DefaultMaxConcurrent = 100

// Config is the function's configuration, read once per instance.
type Config struct {
	Project string
	// Projects are the allowlist's entries (iapsetup.ProjectScope): ids,
	// numbers, patterns over ids, folders/N, or "*".
	Projects      []string
	OutcomesTopic string
	DryRun        bool
	LogLevel      slog.Level
	Timeout       time.Duration
	MaxEventAge   time.Duration
	EmulatorHost  string
	Principal     string
	// MaxConcurrent is how many events may reconcile at once in this
	// instance; 0 means no cap (the zero Config, as built in code). Events
	// that are rejected or skipped after decoding are never held back.
	MaxConcurrent int
	// AccessPoliciesFile is the access policy file (empty: none);
	// AccessPolicies are its validated contents, loaded once per instance.
	AccessPoliciesFile string
	AccessPolicies     *iapsetup.AccessPolicies
}

// ConfigFromEnv reads and validates the configuration, including the access
// policy file when IAPGUARD_ACCESS_POLICIES names one: a file that cannot be
// read or is invalid is a configuration error (the function does not
// start).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Project:       strings.TrimSpace(getenv(EnvProject)),
		OutcomesTopic: strings.TrimSpace(getenv(EnvOutcomesTopic)),
		LogLevel:      logx.ParseLevel(getenv(EnvLogLevel)),
		EmulatorHost:  strings.TrimSpace(getenv(EnvEmulatorHost)),
		Principal:     strings.TrimSpace(getenv(EnvPrincipal)),
		Timeout:       60 * time.Second,
		MaxEventAge:   24 * time.Hour,
		MaxConcurrent: DefaultMaxConcurrent,
	}
	if c.Project == "" {
		return c, fmt.Errorf("%s is not set: the function needs its own project id", EnvProject)
	}
	if raw := getenv(EnvProjects); strings.Trim(raw, ", \t") != "" {
		if _, err := iapsetup.ParseScope(raw); err != nil {
			return c, fmt.Errorf("%s: %w", EnvProjects, err)
		}
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Projects = append(c.Projects, p)
			}
		}
	}
	if len(c.Projects) == 0 {
		c.Projects = []string{c.Project}
	}
	if c.OutcomesTopic == "" {
		return c, fmt.Errorf("%s is not set: outcomes must go somewhere", EnvOutcomesTopic)
	}
	if v := strings.TrimSpace(getenv(EnvDryRun)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%s=%q: want true or false", EnvDryRun, v)
		}
		c.DryRun = b
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvTimeout, &c.Timeout}, {EnvMaxEventAge, &c.MaxEventAge}} {
		v := strings.TrimSpace(getenv(d.name))
		if v == "" {
			continue
		}
		x, err := time.ParseDuration(v)
		if err != nil || x <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive Go duration such as 60s", d.name, v)
		}
		*d.dst = x
	}
	if v := strings.TrimSpace(getenv(EnvMaxConcurrent)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, fmt.Errorf("%s=%q: want a whole number of events, 0 for no cap", EnvMaxConcurrent, v)
		}
		c.MaxConcurrent = n
	}
	if c.AccessPoliciesFile = strings.TrimSpace(getenv(EnvAccessPolicies)); c.AccessPoliciesFile != "" {
		a, err := iapsetup.LoadAccessPolicies(c.AccessPoliciesFile)
		if err != nil {
			return c, fmt.Errorf("%s: %w", EnvAccessPolicies, err)
		}
		c.AccessPolicies = a
	}
	return c, nil
}
