package compute

import (
	"strconv"
	"strings"

	"github.com/iapguard/iapguard/emulator/core"
)

// References between resources. On write every reference is canonicalised
// to a full https://www.googleapis.com/compute/v1/projects/ID/... URL (what
// Compute returns); comparisons use the version-agnostic "projects/..."
// suffix, so a v1, beta or compute.googleapis.com URL names the same object.

func formatID(id uint64) string { return strconv.FormatUint(id, 10) }

// relOf returns the "projects/..." part of a reference ("" if none).
func relOf(ref string) string {
	if strings.HasPrefix(ref, "projects/") {
		return ref
	}
	if i := strings.Index(ref, "/projects/"); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

// apiHosts are the URL prefixes (followed by an API version segment) that
// Compute accepts in full resource URLs.
var apiHosts = []string{"https://www.googleapis.com/compute/", "https://compute.googleapis.com/compute/"}

// parsedRef is a well-formed reference.
type parsedRef struct {
	projectArg string // project as written
	region     string // "" = global
	segment    string // collection path segment ("backendServices")
	name       string
}

// parseRef parses a full URL, or (unless fullOnly) a partial one:
// "projects/P/global/C/N", "projects/P/regions/R/C/N", "global/C/N",
// "regions/R/C/N" (relative to project def). ok is false when malformed.
func parseRef(raw, def string, fullOnly bool) (parsedRef, bool) {
	rest, full := "", false
	for _, h := range apiHosts {
		if after, found := strings.CutPrefix(raw, h); found {
			_, after, found = strings.Cut(after, "/") // API version
			if !found {
				return parsedRef{}, false
			}
			rest, full = after, true
			break
		}
	}
	if !full {
		if fullOnly {
			return parsedRef{}, false
		}
		rest = raw
		if strings.HasPrefix(rest, "global/") || strings.HasPrefix(rest, "regions/") {
			rest = "projects/" + def + "/" + rest
		}
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		if s == "" {
			return parsedRef{}, false
		}
	}
	switch {
	case len(segs) == 5 && segs[0] == "projects" && segs[2] == "global":
		return parsedRef{projectArg: segs[1], segment: segs[3], name: segs[4]}, true
	case len(segs) == 6 && segs[0] == "projects" && segs[2] == "regions":
		return parsedRef{projectArg: segs[1], region: segs[3], segment: segs[4], name: segs[5]}, true
	case len(segs) == 6 && segs[0] == "projects" && segs[2] == "zones":
		return parsedRef{projectArg: segs[1], region: "zones/" + segs[3], segment: segs[4], name: segs[5]}, true
	}
	return parsedRef{}, false
}

// resolve canonicalises raw, the value of request field `field`, and
// returns the referenced resource, which must exist and belong to one of
// specs. Errors: malformed or wrong collection → 400 invalid; unknown
// project or missing resource → 404 notFound (as Compute answers a
// reference to something that does not exist).
func (m *mutation) resolve(field, raw string, fullOnly bool, specs ...*spec) (string, *resource, error) {
	why := "The URL is malformed."
	if fullOnly {
		why = "The URL is malformed. Partial URLs are not supported; use a full URL starting with https://www.googleapis.com/."
	}
	pr, ok := parseRef(raw, m.project.ID, fullOnly)
	if !ok {
		return "", nil, invalidField(field, raw, why)
	}
	p, found := m.s.c.Projects.Lookup(pr.projectArg)
	if !found {
		return "", nil, notFound("projects/" + pr.projectArg)
	}
	m.s.ensureDefaultNetwork(p)
	var sp *spec
	for _, c := range specs {
		if c.segment == pr.segment && c.inScope(pr.region) {
			sp = c
		}
	}
	rel := "projects/" + pr.projectArg + "/" + scopePath(pr.region) + "/" + pr.segment + "/" + pr.name
	if sp == nil {
		// A collection the field cannot hold, or one the emulator does not
		// model (backendBuckets, healthChecks, ...): Compute would say the
		// referenced object does not exist or is of the wrong type.
		if known := specFor(pr.segment, pr.region); known != nil {
			return "", nil, invalidField(field, raw, "Unexpected resource collection '"+pr.segment+"'.")
		}
		return "", nil, notFound(rel)
	}
	r := m.s.find(sp, p.ID, pr.region, pr.name)
	if r == nil {
		return "", nil, notFound(rel)
	}
	return keepVersion(raw, r.selfLink()), r, nil
}

// keepVersion gives link the API version of raw: Compute stores a full
// reference made under /compute/beta/ as a beta URL and echoes it so, where
// partial references and v1 URLs become v1 URLs (recorded traffic:
// k8s-config-connector's backend service and URL map fixtures).
func keepVersion(raw, link string) string {
	const beta = "https://www.googleapis.com/compute/beta/"
	if strings.HasPrefix(raw, beta) {
		if rest, ok := strings.CutPrefix(link, linkBase); ok {
			return beta + rest
		}
	}
	return link
}

// mutation is the context validation and canonicalisation run in (s.mu
// held): the project and region ("" = global) of the resource being written.
type mutation struct {
	s       *Server
	project core.Project
	region  string
	raw     map[string]any // the request body as sent (nil on delete)
}

// sent reports whether the request body carries the member at path.
func (m *mutation) sent(path ...string) bool {
	var v any = m.raw
	for _, k := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = o[k]; !ok {
			return false
		}
	}
	return true
}
