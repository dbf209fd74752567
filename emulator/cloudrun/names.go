package cloudrun

import (
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

var (
	// regionRE matches Google Cloud region names (us-central1, europe-west4,
	// northamerica-northeast1).
	regionRE = regexp.MustCompile(`^[a-z]+(-[a-z]+)+[0-9]+$`)
	// serviceIDRE: begins with a letter, lowercase letters, digits and
	// hyphens, does not end with a hyphen, fewer than 50 characters.
	serviceIDRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$`)
	// projectSegRE is deliberately loose: the project table decides.
	projectSegRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.:-]*$`)
	// operationIDRE matches the opaque operation ids this server issues and
	// anything similar.
	operationIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// locRef is a parsed projects/P/locations/L.
type locRef struct {
	project core.Project
	form    string // project segment as the caller wrote it
	region  string // "-" for every region where allowed
}

func (l locRef) name() string { return "projects/" + l.form + "/locations/" + l.region }

// serviceRef is a parsed projects/P/locations/L/services/S.
type serviceRef struct {
	locRef
	id string
}

func (r serviceRef) key() string { return r.project.ID + "/" + r.region + "/" + r.id }

// name is the service name in the caller's form.
func (r serviceRef) name() string { return r.locRef.name() + "/services/" + r.id }

// canonical is the service name in project-ID form (storage and audit).
func (r serviceRef) canonical() string {
	return "projects/" + r.project.ID + "/locations/" + r.region + "/services/" + r.id
}

func invalid(format string, args ...any) error {
	return core.Errorf(codes.InvalidArgument, format, args...)
}

func notFound(r serviceRef) error {
	return core.Errorf(codes.NotFound, "service %q not found", r.name())
}

// lookupProject resolves the project segment; an unknown project is 403
// PERMISSION_DENIED, as on Google (core.UnknownProject).
func (s *Server) lookupProject(seg string) (core.Project, error) {
	p, ok := s.c.Projects.Lookup(seg)
	if !ok {
		return core.Project{}, core.UnknownProject(seg)
	}
	return p, nil
}

// parseLocation parses projects/{project}/locations/{location}; wildcard
// allows location "-".
func (s *Server) parseLocation(field, v string, wildcard bool) (locRef, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "locations" {
		return locRef{}, invalid("%s: %q is not a valid location; want projects/{project}/locations/{location}", field, v)
	}
	return s.parseProjectLocation(field, v, parts[1], parts[3], wildcard)
}

func (s *Server) parseProjectLocation(field, v, project, region string, wildcard bool) (locRef, error) {
	if !projectSegRE.MatchString(project) {
		return locRef{}, invalid("%s: %q has an invalid project %q", field, v, project)
	}
	if region == "-" && !wildcard {
		// [DOC runpb ListServicesRequest.parent]: "Location must be a valid
		// Google Cloud region, and cannot be the "-" wildcard".
		return locRef{}, invalid("%s: %q: location must be a valid Google Cloud region, and cannot be the \"-\" wildcard", field, v)
	}
	if !regionRE.MatchString(region) && !(wildcard && region == "-") {
		return locRef{}, invalid("%s: %q has an invalid location %q; want a region such as us-central1", field, v, region)
	}
	p, err := s.lookupProject(project)
	if err != nil {
		return locRef{}, err
	}
	return locRef{project: p, form: project, region: region}, nil
}

// parseServiceName parses projects/{project}/locations/{location}/services/{service}.
func (s *Server) parseServiceName(field, v string) (serviceRef, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "services" {
		return serviceRef{}, invalid("%s: %q is not a valid service name; want projects/{project}/locations/{location}/services/{service}", field, v)
	}
	if err := checkServiceID(field, parts[5]); err != nil {
		return serviceRef{}, err
	}
	l, err := s.parseProjectLocation(field, v, parts[1], parts[3], false)
	if err != nil {
		return serviceRef{}, err
	}
	return serviceRef{locRef: l, id: parts[5]}, nil
}

func checkServiceID(field, id string) error {
	if !serviceIDRE.MatchString(id) {
		return invalid("%s: service id %q must begin with a letter, contain only lowercase letters, digits and hyphens, not end with a hyphen, and have fewer than 50 characters", field, id)
	}
	return nil
}

// opRef is a parsed projects/{project}/locations/{location}/operations/{id}.
type opRef struct {
	locRef
	id string
}

func (r opRef) canonical() string {
	return "projects/" + r.project.ID + "/locations/" + r.region + "/operations/" + r.id
}

func (s *Server) parseOperationName(field, v string) (opRef, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "operations" || !operationIDRE.MatchString(parts[5]) {
		return opRef{}, invalid("%s: %q is not a valid operation name; want projects/{project}/locations/{location}/operations/{operation}", field, v)
	}
	l, err := s.parseProjectLocation(field, v, parts[1], parts[3], false)
	if err != nil {
		return opRef{}, err
	}
	return opRef{locRef: l, id: parts[5]}, nil
}

// reform rewrites a project-ID-form resource name into the caller's form.
func reform(name string, p core.Project, form string) string {
	if form == p.ID || name == "" {
		return name
	}
	if rest, ok := strings.CutPrefix(name, "projects/"+p.ID+"/"); ok {
		return "projects/" + form + "/" + rest
	}
	return name
}
