package functions

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/iapguard/iapguard/internal/boundedre"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/iapsetup/scope"
)

// Environment variables the function reads. They are a public interface:
// docs/configuration.md documents them.
const (
	EnvProject       = "GOOGLE_CLOUD_PROJECT"    // the function's own project (set by Cloud Run functions)
	EnvProjects      = "IAPGUARD_PROJECTS"       // comma-separated allowlist: project ids, numbers, patterns such as team-*, folders/N (scope.Scope)
	EnvOutcomesTopic = "IAPGUARD_OUTCOMES_TOPIC" // topic id or projects/P/topics/T
	// EnvReplayTopic is the replay topic (id or projects/P/topics/T) a sweep
	// publishes its per-service replay messages on (default
	// DefaultReplayTopic in the function's project).
	EnvReplayTopic = "IAPGUARD_REPLAY_TOPIC"
	// EnvDiscovery selects how sweeps and whole-project replays find
	// services: auto (Cloud Asset Inventory, falling back to the per-region
	// listing when it is off or not permitted; default), asset, regions.
	EnvDiscovery    = "IAPGUARD_DISCOVERY"
	EnvDryRun       = "IAPGUARD_DRY_RUN"        // true: plan and publish, change nothing
	EnvLogLevel     = "IAPGUARD_LOG_LEVEL"      // debug, info, warning, error
	EnvTimeout      = "IAPGUARD_TIMEOUT"        // per-event deadline, Go duration (default 60s)
	EnvEmulatorHost = gcp.EnvEmulatorHost       // IAPGUARD_EMULATOR_HOST: host:port of the local emulator (no auth, plain text)
	EnvPrincipal    = "IAPGUARD_PRINCIPAL"      // identity named to the emulator in audit entries
	EnvMaxEventAge  = "IAPGUARD_MAX_EVENT_AGE"  // events older than this are acknowledged without work (default 24h)
	EnvPubSubHost   = gcp.EnvPubSubEmulatorHost // PUBSUB_EMULATOR_HOST: the publishers' Pub/Sub emulator (REST at http://HOST/, no auth; NewPubSubService)
	// EnvMaxConcurrent caps the events one instance reconciles at once
	// (default DefaultMaxConcurrent; 0: no cap). Events beyond it wait for a
	// slot within their deadline, then are redelivered.
	EnvMaxConcurrent = "IAPGUARD_MAX_CONCURRENT"
	// EnvAccessPolicies is the path of the access policy file (YAML or
	// JSON; docs/access.md): on Cloud Run functions a Secret Manager secret
	// mounted as a volume, or a file shipped with the source.
	EnvAccessPolicies = "IAPGUARD_ACCESS_POLICIES"
	// EnvProjectsFile is the path of a file holding the scope instead of
	// IAPGUARD_PROJECTS (entries separated by commas, blanks or new lines;
	// lines starting with # are comments): a Secret Manager secret mounted
	// as a volume, for scopes longer than the 32,768 bytes Cloud Run allows
	// an environment variable (docs/configuration.md). Setting both is an
	// error.
	EnvProjectsFile = "IAPGUARD_PROJECTS_FILE"
	// EnvRecordKey is the Secret Manager secret version whose payload (32
	// random bytes or more) signs iapguard's access records:
	// projects/P/secrets/S/versions/V, V a number or latest. The function
	// needs secretmanager.versions.access on it. Unset: records are
	// unsigned and iapguard never revokes an access grant.
	EnvRecordKey = "IAPGUARD_RECORD_KEY"
)

// maxScopeFile bounds what the function reads of IAPGUARD_PROJECTS_FILE
// (Secret Manager holds at most 64 KiB per version).
const maxScopeFile = 1 << 20

// DefaultReplayTopic is the replay topic's id (eventarc/triggers.yaml).
const DefaultReplayTopic = "iapguard-replay"

// StillRetryingAfter is how long an event may fail transiently (and be
// redelivered) in silence: after it, each failed attempt also publishes a
// failed outcome whose reason starts "still retrying".
const StillRetryingAfter = 15 * time.Minute

// MaxFutureSkew is how far in the future an event may be dated: audit log
// entries are stamped by Google when the change is made; one dated further
// ahead is forged or broken and is skipped, as IAPGUARD_MAX_EVENT_AGE skips
// old ones (a sweep covers the resource).
const MaxFutureSkew = 10 * time.Minute

// recordKeyRE is projects/P/secrets/S/versions/V: P at most 63 characters,
// S at most 255, V latest or a number of at most 20 digits.
var recordKeyRE = boundedre.MustCompile(`^projects/([a-z0-9-]+)/secrets/([a-zA-Z0-9_-]+)/versions/([1-9][0-9]*|latest)$`, 0, 63, 255, 20)

// DefaultMaxConcurrent is the default admission cap per instance: at 1,000
// concurrent events an uncapped instance peaked at 193–213 MiB RSS, a cap of
// about 100 kept it at 102–110 MiB (issue #10; target 128 MiB).
const DefaultMaxConcurrent = 100

// Config is the function's configuration, read once per instance.
type Config struct {
	Project string
	// ReplayTopic is where sweeps publish replay messages; Discovery is the
	// discovery mode (gcp.ModeAuto, ModeAsset, ModeRegions).
	ReplayTopic string
	Discovery   string
	// Projects are the allowlist's entries (pkg/iapsetup/scope.New): ids,
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
	AccessPolicies     *access.Policies
	// RecordKey is the secret version signing the access records (empty:
	// unsigned records, no revocation).
	RecordKey string
}

// ConfigError is every problem ConfigFromEnv found, in the order of the
// variables: the function reports them all at once (one log entry at
// start and on every event while they last), not one per deployment.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid configuration, %d problems: %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

// ConfigFromEnv reads and validates the configuration, including the access
// policy file when IAPGUARD_ACCESS_POLICIES names one: a file that cannot be
// read or is invalid is a configuration error (the function does not
// start). Every variable is checked; the error is a *ConfigError listing
// every problem found.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Project:       strings.TrimSpace(getenv(EnvProject)),
		OutcomesTopic: strings.TrimSpace(getenv(EnvOutcomesTopic)),
		LogLevel:      slog.LevelInfo,
		EmulatorHost:  strings.TrimSpace(getenv(EnvEmulatorHost)),
		Principal:     strings.TrimSpace(getenv(EnvPrincipal)),
		Timeout:       60 * time.Second,
		MaxEventAge:   24 * time.Hour,
		MaxConcurrent: DefaultMaxConcurrent,
		ReplayTopic:   strings.TrimSpace(getenv(EnvReplayTopic)),
		Discovery:     strings.TrimSpace(getenv(EnvDiscovery)),
	}
	if c.ReplayTopic == "" {
		c.ReplayTopic = DefaultReplayTopic
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	switch c.Discovery {
	case "":
		c.Discovery = gcp.ModeAuto
	case gcp.ModeAuto, gcp.ModeAsset, gcp.ModeRegions:
	default:
		bad("%s=%q: want %s, %s or %s", EnvDiscovery, c.Discovery, gcp.ModeAuto, gcp.ModeAsset, gcp.ModeRegions)
	}
	switch {
	case c.Project == "":
		bad("%s is not set: the function needs its own project id", EnvProject)
	case !event.ValidProject(c.Project):
		bad("%s=%q: want a project id such as my-project", EnvProject, c.Project)
	}
	raw, set := lookup(getenv, EnvProjects)
	scopeFrom := EnvProjects
	if path := strings.TrimSpace(getenv(EnvProjectsFile)); path != "" {
		scopeFrom = EnvProjectsFile + " " + path
		switch fromFile, err := readScopeFile(path); {
		case set:
			bad("%s and %s are both set: give the scope in one of them", EnvProjects, EnvProjectsFile)
			set = false
		case err != nil:
			bad("%s: %v", EnvProjectsFile, err)
		default:
			raw, set = fromFile, true
		}
	}
	if set {
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Projects = append(c.Projects, p)
			}
		}
		if len(c.Projects) == 0 {
			bad("%s=%q names no project: list project ids, numbers, patterns such as team-* or folders/N, or unset it for the function's own project", scopeFrom, raw)
		} else if _, err := scope.Parse(raw); err != nil {
			bad("%s: %v", scopeFrom, err)
		}
	}
	if len(c.Projects) == 0 && c.Project != "" {
		c.Projects = []string{c.Project}
	}
	switch {
	case c.OutcomesTopic == "":
		bad("%s is not set: outcomes must go somewhere (a topic id, or projects/P/topics/T)", EnvOutcomesTopic)
	case !validTopic(c.OutcomesTopic):
		bad("%s=%q: want a topic id (letters, digits and - _ . ~ + %%, starting with a letter, 3 to 255 characters) or projects/P/topics/T", EnvOutcomesTopic, c.OutcomesTopic)
	}
	if !validTopic(c.ReplayTopic) {
		bad("%s=%q: want a topic id (letters, digits and - _ . ~ + %%, starting with a letter, 3 to 255 characters) or projects/P/topics/T", EnvReplayTopic, c.ReplayTopic)
	}
	if v := strings.TrimSpace(getenv(EnvDryRun)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("%s=%q: want true or false", EnvDryRun, v)
		}
		c.DryRun = b
	}
	if v := strings.TrimSpace(getenv(EnvLogLevel)); v != "" {
		l, ok := parseLogLevel(v)
		if !ok {
			bad("%s=%q: want debug, info, warning or error", EnvLogLevel, v)
		}
		c.LogLevel = l
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
			bad("%s=%q: want a positive Go duration such as 60s", d.name, v)
			continue
		}
		*d.dst = x
	}
	if v := strings.TrimSpace(getenv(EnvMaxConcurrent)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("%s=%q: want a whole number of events, 0 for no cap", EnvMaxConcurrent, v)
		} else {
			c.MaxConcurrent = n
		}
	}
	if c.EmulatorHost != "" {
		if _, port, err := net.SplitHostPort(c.EmulatorHost); err != nil || port == "" || strings.Contains(c.EmulatorHost, "/") {
			bad("%s=%q: want host:port of the emulator, such as 127.0.0.1:8786", EnvEmulatorHost, c.EmulatorHost)
		}
	}
	if c.RecordKey = strings.TrimSpace(getenv(EnvRecordKey)); c.RecordKey != "" && !recordKeyRE.MatchString(c.RecordKey) {
		bad("%s=%q: want a Secret Manager secret version, projects/PROJECT/secrets/SECRET/versions/VERSION (a number or latest)", EnvRecordKey, c.RecordKey)
	}
	if c.AccessPoliciesFile = strings.TrimSpace(getenv(EnvAccessPolicies)); c.AccessPoliciesFile != "" {
		a, err := access.Load(c.AccessPoliciesFile)
		if err != nil {
			bad("%s: %v", EnvAccessPolicies, err)
		}
		c.AccessPolicies = a
	}
	if len(problems) > 0 {
		return c, &ConfigError{Problems: problems}
	}
	return c, nil
}

// readScopeFile reads the scope file of IAPGUARD_PROJECTS_FILE and returns
// its entries joined by commas, as IAPGUARD_PROJECTS would hold them:
// entries are separated by commas, blanks or new lines, and a line whose
// first non-blank character is # is a comment.
func readScopeFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the scope: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxScopeFile+1))
	if err != nil {
		return "", fmt.Errorf("reading the scope from %s: %w", path, err)
	}
	if len(b) > maxScopeFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxScopeFile)
	}
	var entries []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		entries = append(entries, strings.FieldsFunc(line, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
	}
	return strings.Join(entries, ","), nil
}

// lookup returns the trimmed value of an environment variable and whether
// it is set to something other than blanks.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := strings.TrimSpace(getenv(name))
	return v, v != ""
}

// parseLogLevel parses IAPGUARD_LOG_LEVEL: debug, info, warning (or warn),
// error, in any case.
func parseLogLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// validTopicID accepts a Pub/Sub topic id: 3 to 255 characters, letters,
// digits and - _ . ~ + %, starting with a letter, not starting with goog.
func validTopicID(s string) bool {
	return len(s) >= 3 && len(s) <= 255 && topicIDRE.MatchString(s) && !strings.HasPrefix(strings.ToLower(s), "goog")
}

var topicIDRE = boundedre.MustCompile(`^[A-Za-z][A-Za-z0-9._~+%-]*$`)

// validTopic accepts a topic id or projects/P/topics/T.
func validTopic(s string) bool {
	parts := strings.Split(s, "/")
	switch len(parts) {
	case 1:
		return validTopicID(s)
	case 4:
		return parts[0] == "projects" && parts[2] == "topics" && event.ValidProject(parts[1]) && validTopicID(parts[3])
	}
	return false
}
