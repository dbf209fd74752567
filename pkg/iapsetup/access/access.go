// Package access reads iapguard's access policies (docs/access.md): the
// named lists of members a service's iap-access label grants
// roles/iap.httpsResourceAccessor on its IAP resource. The policies come
// from a file (YAML or JSON) the function loads once per instance
// (IAPGUARD_ACCESS_POLICIES):
//
//	policies:
//	  web-users:
//	    members:
//	      - group:web@example.com
//	      - domain:example.com
//
// The reconciler (pkg/iapsetup, Options.AccessPolicies) grants and revokes
// them; this package only validates and looks them up.
package access

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

const (
	// LabelKey is the label that names a service's access policy.
	LabelKey = "iap-access"
	// MaxMembers bounds the members of one access policy, so that the
	// access annotation stays far below Cloud Run's 256 KiB annotation limit
	// (Kubernetes rules) and an IAM policy below its 1,500 principals.
	MaxMembers = 250
)

// isPublic reports whether member is allUsers or allAuthenticatedUsers.
func isPublic(member string) bool { return member == "allUsers" || member == "allAuthenticatedUsers" }

// Policy is one named list of members.
type Policy struct {
	Name        string
	Description string
	// Members are canonical (kind prefix as written, the rest lower case),
	// sorted and free of duplicates.
	Members []string
	// Allowed are the projects or services that may use the policy (see
	// filePolicy); empty: any.
	Allowed []string
}

// Policies is a validated set of access policies. The zero value and
// nil hold no policy.
type Policies struct {
	// Source names where the policies came from (a file path), for messages.
	Source   string
	policies map[string]Policy
}

// Lookup returns the policy called name.
func (a *Policies) Lookup(name string) (Policy, bool) {
	if a == nil {
		return Policy{}, false
	}
	p, ok := a.policies[name]
	return p, ok
}

// Names returns the policy names, sorted.
func (a *Policies) Names() []string {
	if a == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(a.policies))
}

// policyNameRE: a policy name must be usable as a GCP label value (the
// iap-access label), restricted to ASCII.
// The length (at most 63) is checked apart: a counted repetition compiles
// into a program that many times larger, paid for at every process start.
var policyNameRE = boundedre.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// New validates members per policy name and returns the set.
// It is what Parse uses; callers building policies in code get
// the same checks.
func New(source string, policies map[string][]string) (*Policies, error) {
	return build(source, policies, func(members []string) (string, []string) { return "", members })
}

// build validates each definition in defs (def gives its
// description and members), in name order, and returns the set or every
// error, joined.
func build[T any](source string, defs map[string]T, def func(T) (description string, members []string)) (*Policies, error) {
	out := &Policies{Source: source, policies: make(map[string]Policy, len(defs))}
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(defs)) {
		description, members := def(defs[n])
		p, err := newPolicy(n, description, members)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.policies[n] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fileError(source, err)
	}
	return out, nil
}

func newPolicy(name, description string, members []string) (Policy, error) {
	if len(name) > 63 || !policyNameRE.MatchString(name) {
		return Policy{}, fmt.Errorf("policy name %q: want 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit (it is the value of the %s label)", name, LabelKey)
	}
	if len(members) > MaxMembers {
		return Policy{}, fmt.Errorf("policy %s: %d members, at most %d are allowed (use groups)", name, len(members), MaxMembers)
	}
	p := Policy{Name: name, Description: description}
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
		return Policy{}, err
	}
	sort.Strings(p.Members)
	return p, nil
}

func fileError(source string, err error) error {
	if source == "" {
		return fmt.Errorf("access policies: %w", err)
	}
	return fmt.Errorf("access policies %s: %w", source, err)
}

// file is the file format. JSON is accepted as YAML.
type file struct {
	Policies map[string]filePolicy `yaml:"policies"`
}

type filePolicy struct {
	Description string   `yaml:"description"`
	Members     []string `yaml:"members"`
	// Allowed names the projects or services that may use the policy:
	// "PROJECT" or "PROJECT/SERVICE", '*' matching any run of characters
	// ("team-a-*", "shop/*"). Empty: any service in scope.
	Allowed []string `yaml:"allowed"`
}

// Parse parses and validates an access policy file (YAML, or
// JSON, which YAML accepts). Unknown fields, duplicate keys, invalid policy
// names, members of an unsupported kind, malformed members and public
// members (allUsers, allAuthenticatedUsers) are errors; so is a file that
// defines no policy. source names the file in error messages.
func Parse(source string, data []byte) (*Policies, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fileError(source, errors.New("the file is empty; want a top-level \"policies\" map"))
		}
		return nil, fileError(source, fmt.Errorf("parsing: %w", err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fileError(source, errors.New("more than one YAML document; want exactly one"))
	}
	if len(f.Policies) == 0 {
		return nil, fileError(source, errors.New("no policies defined; want a top-level \"policies\" map of name → {members: [...]}"))
	}
	a, err := build(source, f.Policies, func(fp filePolicy) (string, []string) { return fp.Description, fp.Members })
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(f.Policies)) { // errors in a stable order
		fp := f.Policies[name]
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
		return nil, fileError(source, err)
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

// Allows reports whether the service called name in project may use the
// policy (Allowed empty: any).
func (p Policy) Allows(project, name string) bool {
	if len(p.Allowed) == 0 {
		return true
	}
	for _, e := range p.Allowed {
		proj, svc, hasSvc := strings.Cut(e, "/")
		if ok, _ := path.Match(proj, project); !ok {
			continue
		}
		if !hasSvc {
			return true
		}
		if ok, _ := path.Match(svc, name); ok {
			return true
		}
	}
	return false
}

// Load reads and parses the access policy file at path.
func Load(path string) (*Policies, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading access policies: %w", err)
	}
	return Parse(path, b)
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
