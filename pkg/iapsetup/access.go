package iapsetup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/iapguard/iapguard/internal/boundedre"
)

// Access: who may pass IAP (docs/access.md).
//
// A service labelled iap-access=NAME gets roles/iap.httpsResourceAccessor
// for the members of the access policy NAME on its IAP resource: each
// fronting backend service in load-balancer mode, Cloud Run's built-in IAP
// resource in direct mode. The policies come from a file (YAML or JSON) the
// function loads once per instance:
//
//	policies:
//	  web-users:
//	    members:
//	      - group:web@example.com
//	      - domain:example.com
//
// iapguard records the members it granted in the service annotation
// AccessAnnotation and only ever removes members recorded there that the
// policy no longer lists; members anyone else granted are kept.
const (
	// AccessLabelKey names the access policy of a service.
	AccessLabelKey = "iap-access"
	// AccessAnnotation records, as a sorted comma-separated list, the members
	// iapguard granted roles/iap.httpsResourceAccessor on the service's IAP
	// resources. It is written in the same UpdateService call as the other
	// service fields, after the grants succeeded.
	AccessAnnotation = "iapguard.dev/access-granted"
	// RoleAccessor is the IAP-secured Web App User role.
	RoleAccessor = "roles/iap.httpsResourceAccessor"

	// MaxAccessMembers bounds the members of one access policy, so that the
	// access annotation stays far below Cloud Run's 256 KiB annotation limit
	// (Kubernetes rules) and an IAM policy below its 1,500 principals.
	MaxAccessMembers = 250
	// maxAccessAnnotation bounds the annotation value iapguard writes.
	maxAccessAnnotation = 64 << 10
)

// AccessPolicy is one named list of members.
type AccessPolicy struct {
	Name        string
	Description string
	// Members are canonical (kind prefix as written, the rest lower case),
	// sorted and free of duplicates.
	Members []string
	// Allowed are the projects or services that may use the policy (see
	// accessFilePolicy); empty: any.
	Allowed []string
}

// AccessPolicies is a validated set of access policies. The zero value and
// nil hold no policy.
type AccessPolicies struct {
	// Source names where the policies came from (a file path), for messages.
	Source   string
	policies map[string]AccessPolicy
}

// Lookup returns the policy called name.
func (a *AccessPolicies) Lookup(name string) (AccessPolicy, bool) {
	if a == nil {
		return AccessPolicy{}, false
	}
	p, ok := a.policies[name]
	return p, ok
}

// Names returns the policy names, sorted.
func (a *AccessPolicies) Names() []string {
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.policies))
	for n := range a.policies {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Len returns the number of policies.
func (a *AccessPolicies) Len() int {
	if a == nil {
		return 0
	}
	return len(a.policies)
}

// policyNameRE: a policy name must be usable as a GCP label value (the
// iap-access label), restricted to ASCII.
// The length (at most 63) is checked apart: a counted repetition compiles
// into a program that many times larger, paid for at every process start.
var policyNameRE = boundedre.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// NewAccessPolicies validates members per policy name and returns the set.
// It is what ParseAccessPolicies uses; callers building policies in code get
// the same checks.
func NewAccessPolicies(source string, policies map[string][]string) (*AccessPolicies, error) {
	return buildAccessPolicies(source, policies, func(members []string) (string, []string) { return "", members })
}

// buildAccessPolicies validates each definition in defs (def gives its
// description and members), in name order, and returns the set or every
// error, joined.
func buildAccessPolicies[T any](source string, defs map[string]T, def func(T) (description string, members []string)) (*AccessPolicies, error) {
	out := &AccessPolicies{Source: source, policies: make(map[string]AccessPolicy, len(defs))}
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(defs)) {
		description, members := def(defs[n])
		p, err := newAccessPolicy(n, description, members)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.policies[n] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, accessFileError(source, err)
	}
	return out, nil
}

func newAccessPolicy(name, description string, members []string) (AccessPolicy, error) {
	if len(name) > 63 || !policyNameRE.MatchString(name) {
		return AccessPolicy{}, fmt.Errorf("policy name %q: want 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit (it is the value of the %s label)", name, AccessLabelKey)
	}
	if len(members) > MaxAccessMembers {
		return AccessPolicy{}, fmt.Errorf("policy %s: %d members, at most %d are allowed (use groups)", name, len(members), MaxAccessMembers)
	}
	p := AccessPolicy{Name: name, Description: description}
	var errs []error
	seen := map[string]bool{}
	for _, m := range members {
		c, err := CanonicalMember(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy %s: %w", name, err))
			continue
		}
		if seen[c] {
			errs = append(errs, fmt.Errorf("policy %s: member %q is listed twice", name, m))
			continue
		}
		seen[c] = true
		p.Members = append(p.Members, c)
	}
	if err := errors.Join(errs...); err != nil {
		return AccessPolicy{}, err
	}
	sort.Strings(p.Members)
	return p, nil
}

func accessFileError(source string, err error) error {
	if source == "" {
		return fmt.Errorf("access policies: %w", err)
	}
	return fmt.Errorf("access policies %s: %w", source, err)
}

// accessFile is the file format. JSON is accepted as YAML.
type accessFile struct {
	Policies map[string]accessFilePolicy `yaml:"policies"`
}

type accessFilePolicy struct {
	Description string   `yaml:"description"`
	Members     []string `yaml:"members"`
	// Allowed names the projects or services that may use the policy:
	// "PROJECT" or "PROJECT/SERVICE", '*' matching any run of characters
	// ("team-a-*", "shop/*"). Empty: any service in scope.
	Allowed []string `yaml:"allowed"`
}

// ParseAccessPolicies parses and validates an access policy file (YAML, or
// JSON, which YAML accepts). Unknown fields, duplicate keys, invalid policy
// names, members of an unsupported kind, malformed members and public
// members (allUsers, allAuthenticatedUsers) are errors; so is a file that
// defines no policy. source names the file in error messages.
func ParseAccessPolicies(source string, data []byte) (*AccessPolicies, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f accessFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, accessFileError(source, errors.New("the file is empty; want a top-level \"policies\" map"))
		}
		return nil, accessFileError(source, fmt.Errorf("parsing: %w", err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, accessFileError(source, errors.New("more than one YAML document; want exactly one"))
	}
	if len(f.Policies) == 0 {
		return nil, accessFileError(source, errors.New("no policies defined; want a top-level \"policies\" map of name → {members: [...]}"))
	}
	a, err := buildAccessPolicies(source, f.Policies, func(fp accessFilePolicy) (string, []string) { return fp.Description, fp.Members })
	if err != nil {
		return nil, err
	}
	var errs []error
	for name, fp := range f.Policies {
		if len(fp.Allowed) > maxAllowed {
			errs = append(errs, fmt.Errorf("policy %s: %d allowed entries, at most %d", name, len(fp.Allowed), maxAllowed))
			continue
		}
		for _, e := range fp.Allowed {
			if err := checkAllowed(e); err != nil {
				errs = append(errs, fmt.Errorf("policy %s: allowed entry %q: %w", name, e, err))
			}
		}
		p := a.policies[name]
		p.Allowed = slices.Clone(fp.Allowed)
		a.policies[name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, accessFileError(source, err)
	}
	return a, nil
}

// maxAllowed bounds the allowed entries of one policy.
const maxAllowed = 100

// checkAllowed accepts PROJECT or PROJECT/SERVICE: each part 1-63
// characters of lower-case letters, digits, '-' and '*' (a project also
// '.' and ':', as domain-scoped ids have).
func checkAllowed(e string) error {
	bad := errors.New(`want PROJECT or PROJECT/SERVICE, lower case, '*' matching any run of characters`)
	parts := strings.Split(e, "/")
	if len(parts) > 2 {
		return bad
	}
	for i, part := range parts {
		if part == "" || len(part) > 63 || part[0] == '-' {
			return bad
		}
		for _, r := range part {
			ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '*' || i == 0 && (r == '.' || r == ':')
			if !ok {
				return bad
			}
		}
	}
	return nil
}

// Allows reports whether ref may use the policy (Allowed empty: any).
func (p AccessPolicy) Allows(ref ServiceRef) bool {
	if len(p.Allowed) == 0 {
		return true
	}
	for _, e := range p.Allowed {
		proj, svc, hasSvc := strings.Cut(e, "/")
		if ok, _ := path.Match(proj, ref.Project); !ok {
			continue
		}
		if !hasSvc {
			return true
		}
		if ok, _ := path.Match(svc, ref.Name); ok {
			return true
		}
	}
	return false
}

// LoadAccessPolicies reads and parses the access policy file at path.
func LoadAccessPolicies(path string) (*AccessPolicies, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading access policies: %w", err)
	}
	return ParseAccessPolicies(path, b)
}

// Member kinds an access policy may name (the account kinds the IAP guide
// lists: Google Account, Google Group, service account, Workspace domain).
var memberKinds = []string{"user:", "group:", "serviceAccount:", "domain:"}

var (
	emailLocalRE = boundedre.MustCompile(`^[a-z0-9!#$%&'*+/=?^_{|}~.-]+$`)
	dnsLabelRE   = boundedre.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`) // and at most 63 characters
)

// CanonicalMember validates an access-policy member and returns it in
// canonical form: the kind prefix as IAM spells it, the email or domain in
// lower case. It accepts user:EMAIL, group:EMAIL,
// serviceAccount:NAME@...gserviceaccount.com and domain:DNS-NAME; it refuses
// allUsers and allAuthenticatedUsers (iapguard never makes IAP public) and
// every other kind.
func CanonicalMember(m string) (string, error) {
	if isPublic(strings.TrimSpace(m)) {
		return "", fmt.Errorf("member %q would make IAP public; iapguard never grants it", m)
	}
	if m != strings.TrimSpace(m) || m == "" {
		return "", fmt.Errorf("member %q: leading or trailing space, or empty", m)
	}
	for _, kind := range memberKinds {
		rest, ok := strings.CutPrefix(m, kind)
		if !ok {
			continue
		}
		rest = strings.ToLower(rest)
		var err error
		switch kind {
		case "domain:":
			err = checkDomain(rest)
		case "serviceAccount:":
			err = checkEmail(rest)
			if err == nil && !strings.HasSuffix(rest, ".gserviceaccount.com") {
				err = errors.New("a service account email ends in .gserviceaccount.com")
			}
		default:
			err = checkEmail(rest)
		}
		if err != nil {
			return "", fmt.Errorf("member %q: %w", m, err)
		}
		return kind + rest, nil
	}
	return "", fmt.Errorf("member %q: want one of the kinds %s followed by an email (a domain for domain:)", m, strings.Join(memberKinds, ", "))
}

func checkEmail(s string) error {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(domain, "@") {
		return errors.New("want exactly one '@'")
	}
	if local == "" || len(local) > 64 || !emailLocalRE.MatchString(local) || strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return fmt.Errorf("%q is not a valid email local part", local)
	}
	return checkDomain(domain)
}

func checkDomain(d string) error {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return fmt.Errorf("%q is not a domain name (want at least two labels)", d)
	}
	for _, l := range strings.Split(d, ".") {
		if len(l) > 63 || !dnsLabelRE.MatchString(l) {
			return fmt.Errorf("%q is not a domain name", d)
		}
	}
	return nil
}

// sameMember compares IAM members, ignoring case (IAM treats emails and
// domains case-insensitively).
func sameMember(a, b string) bool { return strings.EqualFold(a, b) }

func containsMember(ms []string, m string) bool {
	return slices.ContainsFunc(ms, func(x string) bool { return sameMember(x, m) })
}

// parseGranted reads AccessAnnotation: valid, non-public members only;
// anything else (hand edits) is ignored and dropped on the next write.
func parseGranted(v string) []string {
	var out []string
	for _, m := range strings.Split(v, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		c, err := CanonicalMember(m)
		if err != nil || containsMember(out, c) {
			continue
		}
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// projectNumberFromAgent reads the project number from the IAP service
// agent's email (service-NUMBER@gcp-sa-iap.iam.gserviceaccount.com). The IAP
// API names resources by project number; this avoids a Resource Manager
// call.
func projectNumberFromAgent(agent string) (string, bool) {
	m := agentRE.FindStringSubmatch(strings.ToLower(agent))
	if m == nil {
		return "", false
	}
	return m[1], true
}

var agentRE = boundedre.MustCompile(`^service-([0-9]+)@gcp-sa-iap\.iam\.gserviceaccount\.com$`)

// IAPResource is an IAP resource whose IAM policy decides who may pass.
type IAPResource struct {
	// Name is the IAP API resource name.
	Name string
	// What describes it for people: "backend service web" or "Cloud Run
	// service hello".
	What string
	// gcloud are the flags of gcloud iap web add-iam-policy-binding that
	// address it.
	gcloud string
}

// ProjectIAPResource returns projects/NUMBER/iap_web, the project-wide IAP
// resource: a grant there lets a member through every IAP-secured web
// resource of the project.
func ProjectIAPResource(number string) string { return "projects/" + number + "/iap_web" }

// CloudRunIAPResource returns Cloud Run's built-in IAP resource for a
// service: projects/NUMBER/iap_web/cloud_run-REGION/services/NAME.
func CloudRunIAPResource(number string, ref ServiceRef) IAPResource {
	return IAPResource{
		Name:   ProjectIAPResource(number) + "/cloud_run-" + ref.Region + "/services/" + ref.Name,
		What:   "Cloud Run service " + ref.Name,
		gcloud: fmt.Sprintf("--resource-type=cloud-run --service=%s --region=%s --project=%s", ref.Name, ref.Region, ref.Project),
	}
}

// BackendIAPResource returns the IAP resource of a backend service:
// projects/NUMBER/iap_web/compute[-REGION]/services/ID (the numeric id when
// known, else the name; the IAP API accepts both).
func BackendIAPResource(number string, b BackendService) IAPResource {
	typ, region := "compute", ""
	if b.Ref.Region != "" {
		typ, region = "compute-"+b.Ref.Region, " --region="+b.Ref.Region
	}
	id := b.ID
	if id == "" || id == "0" {
		id = b.Ref.Name
	}
	return IAPResource{
		Name:   ProjectIAPResource(number) + "/" + typ + "/services/" + id,
		What:   "backend service " + b.Ref.Name,
		gcloud: fmt.Sprintf("--resource-type=backend-services --service=%s%s --project=%s", b.Ref.Name, region, b.Ref.Project),
	}
}
