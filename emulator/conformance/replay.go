package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
)

// Volatile are the JSON member names whose values differ between any two
// runs against Google itself (ids, times, fingerprints, etags, progress and
// the caller): only their presence is compared. An operation's status is
// volatile too (RUNNING or DONE depends on when it was read).
var Volatile = []string{
	"id", "creationTimestamp", "insertTime", "startTime", "endTime", "progress", "user",
	"fingerprint", "labelFingerprint", "etag", "createTime", "updateTime", "uid", "expireTime", "deleteTime",
	"creator", "lastModifier", "lastTransitionTime", // Cloud Run: the caller and times
	"selfLinkWithId", // Compute: the link by id (the recorder writes the name's placeholder there)
	"gatewayAddress", // Compute: the recorder writes 10.0.0.1 for every subnetwork
	// Compute: the recorder writes 8.8.8.8 for every forwarding rule's
	// address and 111111111111 for a PSC connection id
	// (k8s-config-connector tests/e2e/normalize_legacy.go).
	"IPAddress", "pscConnectionId",
}

// Newer are the JSON member names Google added to its answers after
// recordings in use were made: compared when recorded, not counted as a
// deviation when the emulator sends one a recording lacks. Cloud Run v2
// Service.urls (the deterministic run.app URLs) is absent from the
// April 2024 recordings and in Google's v2 reference and client today.
//
// Compute's selfLinkWithId (forwarding rules) and a network's
// routingConfig.bgpBestPathSelectionMode are absent from the April 2024
// cassettes and present in the later _http.log recordings.
var Newer = []string{"urls", "selfLinkWithId", "bgpBestPathSelectionMode"}

// Project is the emulated project ${projectId} and ${projectNumber} stand for.
var Project = core.Project{ID: "conformance-project", Number: 918273645012}

// Deviation is one exchange the emulator answered differently.
type Deviation struct {
	File   string
	Line   int
	API    string
	Key    string // the emulator's method key
	Method string
	URL    string
	Diffs  []string
}

// Counts are one API's (or method's) tallies.
type Counts struct {
	Replayed, Matched, Deviating int
	// Mock counts exchanges the recording project regenerated against its
	// own mocks (skipped); Unserved those of methods the emulator does not
	// serve (skipped).
	Mock, Unserved int
}

// Report is the outcome of replaying a corpus.
type Report struct {
	Files      int
	Unparsed   int // exchanges that could not be parsed (not replayed)
	ByAPI      map[string]*Counts
	ByMethod   map[string]*Counts
	Deviations []Deviation
}

// Rate is matched / replayed over the methods keep selects (nil: all).
func (r *Report) Rate(keep func(key string) bool) (matched, replayed int) {
	for k, c := range r.ByMethod {
		if keep == nil || keep(k) {
			matched += c.Matched
			replayed += c.Replayed
		}
	}
	return matched, replayed
}

// IapguardUses reports whether the emulator method key is one iapguard (or
// iapctl) calls: the set the ≥ 95 % target of issue #14 is measured on.
func IapguardUses(key string) bool {
	for _, p := range []string{
		"compute.backendServices.", "compute.regionBackendServices.",
		"compute.regionNetworkEndpointGroups.", "compute.targetHttpsProxies.", "compute.regionTargetHttpsProxies.",
		"compute.globalForwardingRules.", "compute.forwardingRules.", "compute.urlMaps.", "compute.regionUrlMaps.",
		"compute.globalOperations.", "compute.regionOperations.",
		"serviceusage.", "iap.", "google.cloud.run.v2.", "run.",
	} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// route maps a recorded URL to the API and the emulator path, or ok=false
// for an API the emulator does not serve at all.
func route(u *url.URL) (api string, ok bool) {
	switch {
	case (u.Host == "compute.googleapis.com" || u.Host == "www.googleapis.com") && strings.HasPrefix(u.Path, "/compute/"):
		return "compute", true
	case u.Host == "iap.googleapis.com" && strings.HasPrefix(u.Path, "/v1/"):
		return "iap", true
	case u.Host == "serviceusage.googleapis.com" && strings.HasPrefix(u.Path, "/v1beta1/"):
		return "serviceusage", true
	case u.Host == "run.googleapis.com" && strings.HasPrefix(u.Path, "/v2/"):
		return "run", true
	}
	return strings.TrimSuffix(u.Host, ".googleapis.com"), false
}

var opPoll = regexp.MustCompile(`/operations/\$\{([A-Za-z0-9_]+)\}`)

var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// bindings give placeholders values: the project's, ones learnt from the
// emulator's answers (server-generated names such as ${operationID}), or a
// stable slug of the placeholder's name.
type bindings struct {
	vals      map[string]string
	requested map[string]bool // placeholders a request has used
	// opServed is false while the latest recorded operation came from an
	// exchange that was not replayed: polling it is not replayed either.
	opServed bool
	// fingerprints holds the fingerprint of the emulator's latest answer
	// per resource path: the recorder normalised every fingerprint to one
	// constant, so a recorded read-modify-write sends back the one the
	// emulator last gave for that resource, as the client did.
	fingerprints map[string]string
	// live holds the resource paths the recording shows existing (a GET
	// answered 200, no DELETE since); shadowed the earlier values of
	// placeholders rebound by reuse, and pop those to restore after the
	// current exchange.
	live     map[string]bool
	shadowed map[string][]string
	pop      []string
}

func (b *bindings) value(name string) string {
	if v, ok := b.vals[name]; ok {
		return v
	}
	switch name {
	case "projectId":
		return Project.ID
	case "projectNumber":
		return Project.NumberString()
	}
	var sb strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
		}
	}
	s := sb.String()
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "x" + s
	}
	return s
}

func (b *bindings) subst(s string, request bool) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if request {
			b.requested[name] = true
		}
		return b.value(name)
	})
}

// Run replays every _http.log named in files (each against a fresh
// emulator) and returns the report. display names files in the report.
func Run(files map[string]io.Reader) (*Report, error) {
	rep := &Report{ByAPI: map[string]*Counts{}, ByMethod: map[string]*Counts{}}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		parse := Parse
		if strings.HasSuffix(name, ".yaml") {
			parse = ParseCassette
		}
		exs, err := parse(files[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		rep.Files++
		if err := replayFile(rep, name, exs); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	sort.SliceStable(rep.Deviations, func(i, j int) bool {
		return rep.Deviations[i].File < rep.Deviations[j].File ||
			rep.Deviations[i].File == rep.Deviations[j].File && rep.Deviations[i].Line < rep.Deviations[j].Line
	})
	return rep, nil
}

func counts(m map[string]*Counts, k string) *Counts {
	if m[k] == nil {
		m[k] = &Counts{}
	}
	return m[k]
}

func replayFile(rep *Report, file string, exs []Exchange) error {
	emu, err := emulator.New(emulator.Options{Projects: append([]core.Project{Project}, createdProjects(exs)...)})
	if err != nil {
		return err
	}
	// Operations complete when polled, as the recordings poll them: a
	// delete takes effect then, whatever the replay's pace.
	emu.Compute.SetOperationDelay(-1)
	if err := emu.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer emu.Close()
	hc := &http.Client{Timeout: 30 * time.Second}
	b := &bindings{vals: map[string]string{}, requested: map[string]bool{}, fingerprints: map[string]string{},
		live: map[string]bool{}, shadowed: map[string][]string{}}
	regenerated := mockRegenerated(exs)
	b.learnLiteralNames(exs)
	b.learnDefaultNetwork(exs)
	for _, ex := range exs {
		if ex.Err != nil {
			rep.Unparsed++
			continue
		}
		u, err := url.Parse(ex.URL)
		if err != nil {
			return fmt.Errorf("line %d: %w", ex.Line, err)
		}
		api, served := route(u)
		ac := counts(rep.ByAPI, api)
		if regenerated || strings.Contains(ex.RespBody, "mockgcp") || strings.Contains(ex.ReqBody, "mockgcp") {
			ac.Mock++
			continue
		}
		if !served {
			ac.Unserved++
			if isOperation(ex.RespBody) {
				b.opServed = false
			}
			continue
		}
		b.trackReuse(ex, u)
		if strings.Contains(ex.URL, "/operations/${") && !b.opServed {
			ac.Unserved++ // polls an operation of a method that was not replayed
			continue
		}
		if m := opPoll.FindStringSubmatch(ex.URL); m != nil && m[1] != "operationID" {
			if _, ok := b.vals[m[1]]; !ok {
				// A cassette's operation of its own that the emulator never
				// started (its write was not served or answered otherwise,
				// which is counted there): the poll cannot be replayed.
				ac.Unserved++
				continue
			}
		}
		// The path and query as written (url.URL would escape the
		// placeholders' "${}").
		rest := ex.URL[strings.Index(ex.URL, u.Host)+len(u.Host):]
		target := "http://" + emu.Addr() + b.subst(rest, true)
		var body io.Reader
		if ex.ReqBody != "" {
			body = strings.NewReader(b.withFingerprint(ex.Method, target, b.subst(ex.ReqBody, true)))
		}
		req, err := http.NewRequest(ex.Method, target, body)
		if err != nil {
			return fmt.Errorf("line %d: %w", ex.Line, err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if ex.Status == http.StatusNotFound && (ex.Method == http.MethodGet || ex.Method == http.MethodDelete) {
			// The recording found something gone: deletes it started have
			// finished by now.
			emu.Compute.Settle()
		}
		before := emu.Core.Stats.Snapshot()
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("line %d: %s %s: %w", ex.Line, ex.Method, target, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ex.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
			b.learnFingerprint(target, got)
		}
		key := ""
		for k := range emu.Core.Stats.Snapshot().Sub(before).Calls {
			key = k
		}
		if key == "" {
			// No method of the emulator answered: a route it does not serve.
			ac.Unserved++
			if isOperation(ex.RespBody) {
				b.opServed = false
			}
			continue
		}
		mc := counts(rep.ByMethod, key)
		ac.Replayed++
		mc.Replayed++
		diffs := compareExchange(b, ex, resp.StatusCode, got)
		if len(diffs) == 0 {
			ac.Matched++
			mc.Matched++
			continue
		}
		ac.Deviating++
		mc.Deviating++
		rep.Deviations = append(rep.Deviations, Deviation{File: file, Line: ex.Line, API: api, Key: key,
			Method: ex.Method, URL: ex.URL, Diffs: diffs})
	}
	return nil
}

// createdProjects are the projects a recording creates through Cloud
// Resource Manager (an API the runner does not replay) under a literal id:
// a recorded POST .../v1/projects (or v3) answered 200 with that projectId
// in its body. The emulator starts with them, as the recording's later
// exchanges found them; each gets a number of its own.
func createdProjects(exs []Exchange) []core.Project {
	var ps []core.Project
	for _, ex := range exs {
		u, err := url.Parse(ex.URL)
		if err != nil || ex.Method != http.MethodPost || ex.Status != http.StatusOK ||
			u.Host != "cloudresourcemanager.googleapis.com" || (u.Path != "/v1/projects" && u.Path != "/v3/projects") {
			continue
		}
		var body struct {
			ProjectID string `json:"projectId"`
		}
		if json.Unmarshal([]byte(ex.ReqBody), &body) != nil || body.ProjectID == "" ||
			placeholder.MatchString(body.ProjectID) || body.ProjectID == Project.ID ||
			slices.ContainsFunc(ps, func(p core.Project) bool { return p.ID == body.ProjectID }) {
			continue
		}
		ps = append(ps, core.Project{ID: body.ProjectID, Number: Project.Number + int64(len(ps)) + 1})
	}
	return ps
}

// mockCaller is the caller k8s-config-connector's Cloud Run mock
// (mockgcp/mockrun) writes as every service's and job's creator and
// lastModifier. Google writes the caller's own email there (its recorded
// cassettes name the test's service account), and the recorder's
// normaliser rewrites a top-level creator to ${creatorID}, never to this.
var mockCaller = regexp.MustCompile(`"(creator|lastModifier)": "test@google\.com"`)

// mockRegenerated reports whether a whole file was regenerated against
// the recording project's mocks rather than recorded from Google: a
// regeneration replaces every exchange of the file at once, so one answer
// carrying a mock's constant condemns the file. In k8s-config-connector
// v1.155.1 every Cloud Run fixture is such a file (byte-identical to its
// _http_mock.log, with mockrun's defaults: no revision, URL or conditions,
// a generation that never grows); its only real Cloud Run traffic is a
// go-vcr cassette.
//
// Compute's mocks give themselves away by the operation their deprecated
// newLRO answers (mockgcp/mockcompute/operations.go): DONE with progress 0
// and no targetLink, which Google never sends (in the v1.155.1 corpus every
// other DONE operation carries progress 100, and every other mutation
// answer a targetLink). 38 Compute and Service Usage fixtures of v1.155.1 are such files.
func mockRegenerated(exs []Exchange) bool {
	for _, ex := range exs {
		if mockCaller.MatchString(ex.RespBody) || mockComputeLRO(ex.RespBody) {
			return true
		}
	}
	return false
}

func mockComputeLRO(body string) bool {
	if !strings.Contains(body, `"kind": "compute#operation"`) {
		return false
	}
	var op struct {
		Status     string          `json:"status"`
		Progress   json.RawMessage `json:"progress"`
		TargetLink *string         `json:"targetLink"`
	}
	return json.Unmarshal([]byte(body), &op) == nil &&
		op.Status == "DONE" && string(op.Progress) == "0" && op.TargetLink == nil
}

// trackReuse separates resources the recorder gave one placeholder (it
// replaces every name of a kind by the same ${kindID}): a recorded GET of a
// path that exists in the recording (read 200, not deleted since) answered
// 404 names another resource, so the placeholders of its last segment get
// fresh values; a recorded DELETE of such a path restores the previous
// values once it and its operation polls are done (teardown runs in
// reverse order of creation).
func (b *bindings) trackReuse(ex Exchange, u *url.URL) {
	rest := pathOf(ex.URL[strings.Index(ex.URL, u.Host)+len(u.Host):])
	if !strings.Contains(rest, "/operations/") {
		// Polls of the DELETE's operation still name the deleted resource.
		for _, name := range b.pop {
			if st := b.shadowed[name]; len(st) > 0 {
				b.vals[name], b.shadowed[name] = st[len(st)-1], st[:len(st)-1]
			}
		}
		b.pop = nil
	}
	last := placeholder.FindAllStringSubmatch(rest[strings.LastIndex(rest, "/")+1:], -1)
	path := b.subst(rest, false)
	switch {
	case ex.Method == http.MethodGet && ex.Status == http.StatusOK:
		b.live[path] = true
	case ex.Method == http.MethodGet && ex.Status == http.StatusNotFound && b.live[path]:
		for _, m := range last {
			b.shadowed[m[1]] = append(b.shadowed[m[1]], b.value(m[1]))
			b.vals[m[1]] = b.value(m[1]) + "x" + strconv.Itoa(len(b.shadowed[m[1]])+1)
		}
	case ex.Method == http.MethodDelete && ex.Status == http.StatusOK:
		delete(b.live, path)
		for _, m := range last {
			b.pop = append(b.pop, m[1])
		}
	}
}

// learnDefaultNetwork binds a placeholder the recorder gave the project's
// default network: a recorded read of global/networks/${X} answered with
// Google's description of the auto-created network (and no recorded insert
// of a network named ${X}) names "default", which every emulated project
// starts with.
func (b *bindings) learnDefaultNetwork(exs []Exchange) {
	inserted := map[string]bool{}
	for _, ex := range exs {
		if ex.Method == http.MethodPost && strings.HasSuffix(pathOf(ex.URL), "/global/networks") {
			var v struct {
				Name string `json:"name"`
			}
			if json.Unmarshal([]byte(ex.ReqBody), &v) == nil {
				inserted[v.Name] = true
			}
		}
	}
	for _, ex := range exs {
		p := pathOf(ex.URL)
		i := strings.LastIndex(p, "/global/networks/")
		if ex.Method != http.MethodGet || ex.Status != http.StatusOK || i < 0 {
			continue
		}
		last := p[i+len("/global/networks/"):]
		m := placeholder.FindStringSubmatch(last)
		if m == nil || m[0] != last || inserted[last] {
			continue
		}
		var v struct {
			Description string `json:"description"`
		}
		if json.Unmarshal([]byte(ex.RespBody), &v) == nil && v.Description == "Default network for the project" {
			if _, bound := b.vals[m[1]]; !bound {
				b.vals[m[1]] = "default"
			}
		}
	}
}

// learnLiteralNames binds a name placeholder to the literal name a
// recorded URL gives the same resource: the recorder replaced a name by
// ${kindID} in bodies but left it literal in some URLs
// (".../backendServices/computebackendservice-${uniqueId}" answered with
// "name": "${backendServiceID}"), so the insert must create the name the
// URLs use.
func (b *bindings) learnLiteralNames(exs []Exchange) {
	for _, ex := range exs {
		if ex.Method != http.MethodGet || ex.Status != http.StatusOK {
			continue
		}
		var v struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(ex.RespBody), &v) != nil {
			continue
		}
		m := placeholder.FindStringSubmatch(v.Name)
		p := pathOf(ex.URL)
		last := p[strings.LastIndex(p, "/")+1:]
		if m == nil || m[0] != v.Name || placeholder.MatchString(last) && placeholder.FindString(last) == last {
			continue
		}
		if _, bound := b.vals[m[1]]; !bound {
			b.vals[m[1]] = b.subst(last, false)
		}
	}
}

func pathOf(target string) string {
	p, _, _ := strings.Cut(target, "?")
	return p
}

func (b *bindings) learnFingerprint(target string, answer []byte) {
	var v struct {
		Fingerprint      string `json:"fingerprint"`
		LabelFingerprint string `json:"labelFingerprint"`
	}
	if json.Unmarshal(answer, &v) != nil {
		return
	}
	if v.Fingerprint != "" {
		b.fingerprints[pathOf(target)] = v.Fingerprint
	}
	if v.LabelFingerprint != "" {
		b.fingerprints[pathOf(target)+"/setLabels"] = v.LabelFingerprint
	}
}

// withFingerprint replaces the fingerprint a PUT or PATCH body carries (the
// labelFingerprint a setLabels body carries) by the one the emulator last
// answered for the same resource.
func (b *bindings) withFingerprint(method, target, body string) string {
	member := "fingerprint"
	if strings.HasSuffix(pathOf(target), "/setLabels") {
		member = "labelFingerprint"
	} else if method != http.MethodPut && method != http.MethodPatch {
		return body
	}
	fp, ok := b.fingerprints[pathOf(target)]
	if !ok {
		return body
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || m[member] == nil {
		return body
	}
	m[member] = fp
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return string(out)
}

// computeLink rewrites a Compute resource URL to API version v1. The
// recorder rewrote /compute/beta/ to /compute/v1/ in request URLs and in
// some response members (selfLink, region, targetLink, ...) but not in
// others (references such as healthChecks or defaultService), so the
// version a recorded link carries says nothing about the call that was
// made: links are compared without it.
func computeLink(s string) string {
	for _, h := range []string{"https://www.googleapis.com/compute/beta/", "https://compute.googleapis.com/compute/beta/"} {
		if rest, ok := strings.CutPrefix(s, h); ok {
			return strings.TrimSuffix(h, "beta/") + "v1/" + rest
		}
	}
	return s
}

func isOperation(body string) bool {
	return strings.Contains(body, `"kind": "compute#operation"`) || strings.Contains(body, `"name": "operations/`)
}

func compareExchange(b *bindings, ex Exchange, status int, got []byte) []string {
	if status != ex.Status {
		d := []string{fmt.Sprintf("status %d, recorded %d", status, ex.Status)}
		if len(got) > 0 {
			d = append(d, "answer: "+strings.Join(strings.Fields(string(got)), " "))
		}
		return d
	}
	if ex.RespBody == "" {
		return nil
	}
	var want, have any
	if err := json.Unmarshal([]byte(ex.RespBody), &want); err != nil {
		return nil // not JSON (rare): the status decides
	}
	if err := json.Unmarshal(got, &have); err != nil {
		return []string{fmt.Sprintf("answer is not JSON: %.200s", got)}
	}
	if status >= 400 {
		return compareError(want, have)
	}
	c := &comparer{b: b}
	c.walk("", want, have) // binds server-generated placeholders
	c.diffs, c.collect = nil, true
	c.walk("", want, have)
	return c.diffs
}

func compareError(want, have any) []string {
	field := func(v any, path ...string) string {
		for _, p := range path {
			switch t := v.(type) {
			case map[string]any:
				v = t[p]
			case []any:
				if len(t) == 0 {
					return ""
				}
				v = t[0].(map[string]any)[p]
			default:
				return ""
			}
		}
		s, _ := v.(string)
		return s
	}
	var diffs []string
	for _, p := range [][]string{{"error", "status"}, {"error", "errors", "reason"}} {
		if w := field(want, p...); w != "" && field(have, p...) != w {
			diffs = append(diffs, fmt.Sprintf("%s = %q, recorded %q", strings.Join(p, "."), field(have, p...), w))
		}
	}
	return diffs
}

type comparer struct {
	b       *bindings
	collect bool
	diffs   []string
}

func (c *comparer) add(format string, args ...any) {
	if c.collect {
		c.diffs = append(c.diffs, fmt.Sprintf(format, args...))
	}
}

func isVolatile(k string) bool { return slices.Contains(Volatile, k) }

func (c *comparer) walk(path string, want, have any) {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			c.add("%s: an object was recorded, got %T", path, have)
			return
		}
		// An operation: Compute's kind, or a long-running operation
		// (done once finished; before that only its name tells).
		wn, _ := w["name"].(string)
		operation := w["kind"] == "compute#operation" || w["done"] != nil ||
			strings.HasPrefix(wn, "operations/") || strings.Contains(wn, "/operations/")
		if n, ok := w["name"].(string); ok && operation {
			// Every operation the recorder saw is ${operationID}: the name
			// stands for the latest one, so it is learnt from each answer.
			if m := placeholder.FindStringSubmatch(n); m != nil && m[0] == n {
				if hs, ok := h["name"].(string); ok && !c.collect {
					c.b.vals[m[1]] = hs
					c.b.opServed = true
				}
			} else if hs, ok := h["name"].(string); ok && !c.collect && strings.Contains(n, "${operationID}") {
				// A full name (projects/P/locations/L/operations/ID):
				// the ID is learnt afresh.
				delete(c.b.vals, "operationID")
				delete(c.b.requested, "operationID")
				if c.learn(n, hs) {
					c.b.opServed = true
				}
			}
		}
		for k, wv := range w {
			hv, present := h[k]
			if !present {
				c.add("%s.%s: missing", path, k)
				continue
			}
			if isVolatile(k) || operation && k == "status" {
				continue
			}
			c.walk(path+"."+k, wv, hv)
		}
		for k := range h {
			if _, ok := w[k]; !ok && !slices.Contains(Newer, k) {
				c.add("%s.%s: not recorded, got %s", path, k, short(h[k]))
			}
		}
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			c.add("%s: %d items recorded, got %s", path, len(w), short(have))
			return
		}
		for i := range w {
			c.walk(fmt.Sprintf("%s[%d]", path, i), w[i], h[i])
		}
	case string:
		if m := placeholder.FindStringSubmatch(w); m != nil && m[0] == w {
			// A value the recorder replaced by a placeholder: presence only;
			// a server-generated one (never sent) is learnt.
			if !c.b.requested[m[1]] {
				if _, bound := c.b.vals[m[1]]; !bound {
					if hs, ok := have.(string); ok {
						c.b.vals[m[1]] = hs
					}
				}
			}
			return
		}
		if hs, ok := have.(string); ok && c.learn(computeLink(w), computeLink(hs)) {
			return
		}
		if want := computeLink(c.b.subst(w, false)); computeLink(fmt.Sprint(have)) != want {
			c.add("%s = %s, recorded %q", path, short(have), want)
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(have) {
			c.add("%s = %s, recorded %v", path, short(have), want)
		}
	}
}

// learn matches a recorded string that embeds placeholders of values the
// server generated (never sent, not yet bound: a revision suffix, the
// project hash of a URL) against the emulator's string, and binds them.
// It reports whether the string matched; the literal parts must agree.
func (c *comparer) learn(want, have string) bool {
	locs := placeholder.FindAllStringSubmatchIndex(want, -1)
	if len(locs) == 0 {
		return false
	}
	var re strings.Builder
	var names []string
	re.WriteString("^")
	last := 0
	for _, l := range locs {
		re.WriteString(regexp.QuoteMeta(want[last:l[0]]))
		name := want[l[2]:l[3]]
		if _, bound := c.b.vals[name]; bound || c.b.requested[name] {
			re.WriteString(regexp.QuoteMeta(c.b.value(name)))
		} else {
			re.WriteString("([A-Za-z0-9._-]+?)")
			names = append(names, name)
		}
		last = l[1]
	}
	re.WriteString(regexp.QuoteMeta(want[last:]) + "$")
	if len(names) == 0 {
		return false
	}
	m := regexp.MustCompile(re.String()).FindStringSubmatch(have)
	if m == nil {
		return false
	}
	if !c.collect {
		for i, n := range names {
			c.b.vals[n] = m[i+1]
		}
	}
	return true
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// Format renders the report: per API replayed / matched / deviating and the
// skipped exchanges, then the rate over the methods iapguard uses.
func (r *Report) Format(w io.Writer) {
	fmt.Fprintf(w, "%d files, %d unparsed exchanges\n%-14s %9s %8s %10s %9s %9s\n", r.Files, r.Unparsed, "API", "replayed", "matched", "deviating", "unserved", "mock")
	for _, api := range slices.Sorted(maps.Keys(r.ByAPI)) {
		c := r.ByAPI[api]
		fmt.Fprintf(w, "%-14s %9d %8d %10d %9d %9d\n", api, c.Replayed, c.Matched, c.Deviating, c.Unserved, c.Mock)
	}
	fmt.Fprintln(w, "by method:")
	for _, k := range slices.Sorted(maps.Keys(r.ByMethod)) {
		c := r.ByMethod[k]
		fmt.Fprintf(w, "  %-52s %5d replayed %5d matched %5d deviating\n", k, c.Replayed, c.Matched, c.Deviating)
	}
	m, n := r.Rate(IapguardUses)
	if n > 0 {
		fmt.Fprintf(w, "methods iapguard uses: %d of %d matched (%.1f %%)\n", m, n, 100*float64(m)/float64(n))
	}
}
