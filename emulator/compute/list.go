package compute

import (
	"encoding/base64"
	"reflect"
	"sort"
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// Listing: filter (see filter.go), orderBy ("name", the default, or
// "creationTimestamp desc" — the two Compute supports), maxResults (0..500,
// default 500) and pageToken (opaque offset). Other list parameters
// (returnPartialSuccess, includeAllScopes, fields) are accepted and have no
// effect: there are no partial failures, and responses are never trimmed.

const maxPage = 500

type listParams struct {
	filter    filterNode
	desc      bool // creationTimestamp desc
	max       int
	offset    int
	filterSrc string
}

func (q *request) listParams() (*listParams, error) {
	v := q.r.URL.Query()
	lp := &listParams{max: maxPage, filterSrc: v.Get("filter")}
	f, err := parseFilter(lp.filterSrc, reflect.TypeOf(q.rt.spec.newObj()))
	if err != nil {
		return nil, invalidParam("filter", lp.filterSrc, "Invalid list filter expression: "+err.Error()+".")
	}
	lp.filter = f
	switch ob := strings.Join(strings.Fields(v.Get("orderBy")), " "); ob {
	case "", "name":
	case "creationTimestamp desc":
		lp.desc = true
	default:
		return nil, invalidParam("orderBy", v.Get("orderBy"), "Only 'name' and 'creationTimestamp desc' are supported.")
	}
	if m := v.Get("maxResults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 0 {
			return nil, invalidParam("maxResults", m, "Must be a non-negative integer.")
		}
		if n > maxPage {
			return nil, invalidParam("maxResults", m, "Must be less than or equal to 500.")
		}
		if n > 0 {
			lp.max = n
		}
	}
	if t := v.Get("pageToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		off, perr := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || perr != nil || !strings.HasPrefix(string(b), "o:") || off < 0 {
			return nil, invalidParam("pageToken", t, "Invalid page token.")
		}
		lp.offset = off
	}
	return lp, nil
}

func pageToken(off int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(off)))
}

// item is one rendered resource ready for listing.
type item struct {
	scope string // "global" or "regions/R"
	r     *resource
	obj   any
}

// collect renders and filters the resources of sp in the given scopes
// (s.mu held), ordered as requested.
func (q *request) collect(sp *spec, lp *listParams, regions []string) ([]item, error) {
	var out []item
	for _, region := range regions {
		for _, r := range q.s.all(sp, q.p.ID, region) {
			obj, err := q.s.render(r)
			if err != nil {
				return nil, err
			}
			if lp.filter != nil {
				m, err := toMap(obj)
				if err != nil {
					return nil, internal(err)
				}
				if !lp.filter.eval(m) {
					continue
				}
			}
			out = append(out, item{scope: scopePath(region), r: r, obj: obj})
		}
	}
	if lp.desc {
		sort.SliceStable(out, func(i, j int) bool { return out[i].r.created.After(out[j].r.created) })
	}
	return out, nil
}

// page slices items and returns the next page token.
func (lp *listParams) page(items []item) ([]item, string) {
	if lp.offset >= len(items) {
		return nil, ""
	}
	end := lp.offset + lp.max
	if end >= len(items) {
		return items[lp.offset:], ""
	}
	return items[lp.offset:end], pageToken(end)
}

// listEnvelope has the members of every compute/v1 *List type.
type listEnvelope struct {
	Id            string `json:"id,omitempty"`
	Items         []any  `json:"items,omitempty"`
	Kind          string `json:"kind,omitempty"`
	NextPageToken string `json:"nextPageToken,omitempty"`
	SelfLink      string `json:"selfLink,omitempty"`
}

// list serves <collection>.list.
func (q *request) list() (any, error) {
	lp, err := q.listParams()
	if err != nil {
		return nil, err
	}
	q.s.mu.Lock()
	items, err := q.collect(q.rt.spec, lp, []string{q.rt.region})
	q.s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	pg, next := lp.page(items)
	rel := "projects/" + q.p.ID + "/" + scopePath(q.rt.region) + "/" + q.rt.spec.segment
	env := &listEnvelope{Id: rel, Kind: q.rt.spec.listKind, NextPageToken: next, SelfLink: linkBase + rel}
	for _, it := range pg {
		env.Items = append(env.Items, it.obj)
	}
	return env, nil
}

// aggregatedList serves backendServices.aggregatedList: global and every
// known region, keyed "global" and "regions/R"; a scope with nothing on this
// page carries Google's NO_RESULTS_ON_PAGE warning instead of items.
func (q *request) aggregatedList() (any, error) {
	lp, err := q.listParams()
	if err != nil {
		return nil, err
	}
	s := q.s
	s.mu.Lock()
	regions := append([]string(nil), s.regions...)
	sort.Strings(regions)
	scopes := append([]string{""}, regions...)
	var items []item
	global, err := q.collect(specBackendServices, lp, []string{""})
	if err == nil {
		items = global
		var regional []item
		regional, err = q.collect(specRegionBackendServices, lp, regions)
		items = append(items, regional...)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if lp.desc {
		sort.SliceStable(items, func(i, j int) bool { return items[i].r.created.After(items[j].r.created) })
	}
	pg, next := lp.page(items)
	rel := "projects/" + q.p.ID + "/aggregated/backendServices"
	out := &compute.BackendServiceAggregatedList{
		Id: rel, Kind: "compute#backendServiceAggregatedList", NextPageToken: next, SelfLink: linkBase + rel,
		Items: map[string]compute.BackendServicesScopedList{},
	}
	for _, it := range pg {
		sl := out.Items[it.scope]
		sl.BackendServices = append(sl.BackendServices, it.obj.(*compute.BackendService))
		out.Items[it.scope] = sl
	}
	for _, region := range scopes {
		scope := scopePath(region)
		if _, ok := out.Items[scope]; ok {
			continue
		}
		out.Items[scope] = compute.BackendServicesScopedList{Warning: &compute.BackendServicesScopedListWarning{
			Code:    "NO_RESULTS_ON_PAGE",
			Message: "There are no results for scope '" + scope + "' on this page.",
			Data:    []*compute.BackendServicesScopedListWarningData{{Key: "scope", Value: scope}},
		}}
	}
	return out, nil
}
