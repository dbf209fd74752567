package cloudrun

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator/core"
)

// KeyListLocations is the method key of Cloud Run Admin API v1
// projects.locations.list (a read of quota class "run").
const KeyListLocations = "run.projects.locations.list"

// LocationsPath is the path pattern ServeLocations answers:
// GET /v1/projects/{project}/locations, as the REST client
// google.golang.org/api/run/v1 (ProjectsLocationsService.List) sends it.
const LocationsPath = "GET /v1/projects/{project}/locations"

// DefaultRegions are the Cloud Run regions the emulator lists for every
// project when Options.Regions is empty: Cloud Run's generally available
// regions as documented in its locations page. Google answers
// projects.locations.list with the regions where Cloud Run is available to
// the project (cloud.google.com/run/docs/reference/rest/v1/projects.locations/list).
var DefaultRegions = []string{
	"africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
	"asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
	"australia-southeast2", "europe-central2", "europe-north1", "europe-north2", "europe-southwest1",
	"europe-west1", "europe-west2", "europe-west3", "europe-west4", "europe-west6", "europe-west8",
	"europe-west9", "europe-west10", "europe-west12", "me-central1", "me-central2", "me-west1",
	"northamerica-northeast1", "northamerica-northeast2", "northamerica-south1", "southamerica-east1",
	"southamerica-west1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
	"us-west2", "us-west3", "us-west4",
}

// location is the v1 Location resource as the REST client decodes it.
type location struct {
	Name        string            `json:"name"`
	LocationID  string            `json:"locationId"`
	DisplayName string            `json:"displayName,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// ServeLocations answers Cloud Run Admin API v1 projects.locations.list:
// the regions the emulator offers (Options.Regions, else DefaultRegions)
// plus every region where the project has a service, sorted, with
// pageSize/pageToken paging. Unknown projects → 404 NOT_FOUND (Google
// usually answers 403 for projects the caller cannot see). This is how
// callers enumerate regions: Run v2 has no locations listing in the Go
// client and its ListServices refuses the "-" wildcard.
func (s *Server) ServeLocations(w http.ResponseWriter, r *http.Request) {
	r = core.WithHTTPCaller(r)
	if err := s.c.Begin(r.Context(), KeyListLocations); err != nil {
		core.WriteHTTPError(w, err)
		return
	}
	out, err := s.listLocations(r.PathValue("project"), r.URL.Query())
	if err != nil {
		core.WriteHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(out)
}

// Regions returns the regions projects.locations.list answers for project
// (no call accounting).
func (s *Server) Regions(project string) []string {
	p, ok := s.c.Projects.Lookup(project)
	if !ok {
		return nil
	}
	return s.regionsOf(p)
}

func (s *Server) regionsOf(p core.Project) []string {
	regions := slices.Clone(s.regions)
	if len(regions) == 0 {
		regions = slices.Clone(DefaultRegions)
	}
	s.mu.Lock()
	for _, e := range s.services {
		if e.project.ID == p.ID {
			regions = append(regions, e.region)
		}
	}
	s.mu.Unlock()
	slices.Sort(regions)
	return slices.Compact(regions)
}

func (s *Server) listLocations(project string, q map[string][]string) (map[string]any, error) {
	if !projectSegRE.MatchString(project) {
		return nil, invalid("name: %q is not a valid project", "projects/"+project)
	}
	p, err := s.lookupProject(project)
	if err != nil {
		return nil, err
	}
	// ListLocationsRequest's query fields; a filter is refused rather
	// than ignored (the emulator does not evaluate one).
	rq, err := core.BindQuery(q, "filter", "page_size", "page_token")
	if err != nil {
		return nil, err
	}
	if f := rq.Str("filter"); f != "" {
		return nil, invalid("filter %q is not supported by the emulator", f)
	}
	size32, err := rq.Int32("page_size")
	if err != nil {
		return nil, err
	}
	if size32 < 0 {
		return nil, invalid("Invalid value at 'page_size' (TYPE_INT32), %q", rq.Str("page_size"))
	}
	size, offset := int(size32), 0
	if v := rq.Str("page_token"); v != "" {
		if offset, err = strconv.Atoi(strings.TrimPrefix(v, "loc-")); err != nil || offset < 0 || !strings.HasPrefix(v, "loc-") {
			return nil, core.Errorf(codes.InvalidArgument, "page_token: %q is not a page token of this request", v)
		}
	}
	regions := s.regionsOf(p)
	if offset > len(regions) {
		offset = len(regions)
	}
	page := regions[offset:]
	next := ""
	if size > 0 && len(page) > size {
		page, next = page[:size], "loc-"+strconv.Itoa(offset+size)
	}
	locs := make([]location, 0, len(page))
	for _, rg := range page {
		locs = append(locs, location{
			Name: "projects/" + project + "/locations/" + rg, LocationID: rg, DisplayName: rg,
			Labels: map[string]string{"cloud.googleapis.com/region": rg},
		})
	}
	out := map[string]any{"locations": locs}
	if next != "" {
		out["nextPageToken"] = next
	}
	return out, nil
}
