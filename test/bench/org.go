package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	pubsub "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/run/apiv2/runpb"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/cloudrun"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/event"
	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/internal/stack"
)

// OrgConfig sizes the organisation-scale sweep benchmark (issue #18).
type OrgConfig struct {
	Name string
	// Projects under organizations/1, in Folders folders.
	Projects, Folders int
	// Regions is how many Cloud Run regions projects.locations.list
	// answers; each project has one service in each (Projects × Regions
	// services).
	Regions int
	// Labelled services (one per project, iap=enabled), NonCompliant of
	// them public without IAP; the rest compliant.
	Labelled, NonCompliant int
	// Latency is injected before every Google API call (not Pub/Sub).
	Latency time.Duration
	// RunReads, ComputeReads: emulated read quotas (calls per second, burst
	// one second's worth): the sweep's reconciles are bound by them.
	RunReads, ComputeReads float64
	// Concurrency is how many replay events are delivered to the one
	// function instance at once (Eventarc pushes in parallel).
	Concurrency int
	Progress    io.Writer
}

// OrgFull is the size: 1,000 projects, 10,000 services across 10
// regions, 1,000 labelled, 100 non-compliant.
func OrgFull() OrgConfig {
	return OrgConfig{Name: "org", Projects: 1000, Folders: 10, Regions: 10, Labelled: 1000, NonCompliant: 100,
		Latency: 2 * time.Millisecond, RunReads: 250, ComputeReads: 250, Concurrency: 100}
}

// OrgSmall is a CI-sized run of the same shape.
func OrgSmall() OrgConfig {
	return OrgConfig{Name: "org-small", Projects: 50, Folders: 5, Regions: 10, Labelled: 50, NonCompliant: 5,
		Latency: 2 * time.Millisecond, RunReads: 400, ComputeReads: 400, Concurrency: 50}
}

// Discovery is one discovery run's cost.
type Discovery struct {
	Path    string
	Found   int
	Calls   int64 // discovery calls (Cloud Asset, Run, Resource Manager)
	Elapsed time.Duration
}

// OrgReport is the organisation-scale benchmark's result.
type OrgReport struct {
	Config  OrgConfig
	Started time.Time
	Took    time.Duration
	Env     string
	// Asset and Regions: the labelled services of organizations/1 found
	// through Cloud Asset, and through the per-region fallback.
	Asset, Regions Discovery
	// The whole sweep: the sweep request to the function (discovery and one
	// replay message per labelled service), then every replay delivered to
	// that one instance.
	SweepCalls   Calls // Google API calls (not Pub/Sub)
	Replays      int
	Outcomes     map[string]int
	Failed       int // deliveries answered with an error
	SweepElapsed time.Duration
	MinCalls     int64
	QuotaBound   time.Duration
	PeakRSS      int64
}

// minimum per-service work (minimums.go): a compliant labelled service is
// one read round; a public one without a load balancer is MinDirect plus,
// once per project, the project-wide IAP policy; every project's IAP
// service agent is ensured once (generateServiceIdentity) on the instance.
func (c OrgConfig) minimum() Calls {
	m := Calls{}
	add := func(cs Calls, n int) {
		for k, v := range cs {
			m[k] += v * int64(n)
		}
	}
	add(MinWarmCompliant().Calls, c.Labelled-c.NonCompliant)
	add(MinDirect().Calls, c.NonCompliant)
	m[mGetIAPPolicy] += int64(c.NonCompliant)
	m[mGenerateAgentID] += int64(c.Labelled)
	m[mSearch] += int64((c.Labelled + gcp.AssetPageSize - 1) / gcp.AssetPageSize)
	return m
}

const mSearch = "google.cloud.asset.v1.AssetService.SearchAllResources"

var orgRegions = []string{"asia-east1", "asia-northeast1", "australia-southeast1", "europe-north1", "europe-west1",
	"europe-west4", "southamerica-east1", "us-central1", "us-east1", "us-west1", "us-east4", "us-west2"}

// RunOrg runs the organisation-scale benchmark: it builds the enforcer
// (functions/cmd/enforcer) and serves it as one process against an
// in-process emulator.
func RunOrg(ctx context.Context, c OrgConfig) (*OrgReport, error) {
	logf := func(format string, args ...any) {
		if c.Progress != nil {
			fmt.Fprintf(c.Progress, "iapbench org: "+format+"\n", args...)
		}
	}
	if c.Regions > len(orgRegions) {
		return nil, fmt.Errorf("at most %d regions", len(orgRegions))
	}
	r := &OrgReport{Config: c, Started: time.Now(), Outcomes: map[string]int{},
		Env: fmt.Sprintf("%s/%s, %d CPU, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())}
	regions := orgRegions[:c.Regions]
	var projects []core.Project
	var folders []core.Folder
	for f := range c.Folders {
		folders = append(folders, core.Folder{ID: fmt.Sprint(1000 + f), Parent: "organizations/1"})
	}
	for i := range c.Projects {
		projects = append(projects, core.Project{ID: fmt.Sprintf("org-p%04d", i), Number: int64(500000000000 + i),
			Parent: "folders/" + folders[i%c.Folders].ID})
	}
	home := core.Project{ID: "iapguard-home", Number: 499999999999, Parent: "organizations/1"}
	em, err := emulator.New(emulator.Options{
		Projects: append([]core.Project{home}, projects...), Folders: folders,
		Triggers: []eventarc.Trigger{}, Run: cloudrun.Options{Regions: regions},
	})
	if err != nil {
		return nil, err
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	defer em.Close()
	addr := em.Addr()

	logf("seeding %d services in %d projects", c.Projects*c.Regions, c.Projects)
	tmpl := &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello"}}}
	for i, p := range projects {
		for j, rg := range regions {
			svc := &runpb.Service{Template: tmpl, Labels: map[string]string{"team": "t" + fmt.Sprint(i%7)}}
			labelled := j == 0 && i < c.Labelled
			public := labelled && i < c.NonCompliant
			if labelled {
				svc.Labels["iap"] = "enabled"
				if !public {
					svc.IapEnabled = true
					svc.Annotations = map[string]string{"iapguard.dev/managed": "true"}
				}
			}
			name := fmt.Sprintf("svc-%d", j)
			if _, err := em.Run.Seed(p.ID, rg, name, svc); err != nil {
				return nil, err
			}
			if labelled {
				agent := "serviceAccount:service-" + p.NumberString() + "@gcp-sa-iap.iam.gserviceaccount.com"
				members := []string{agent}
				if public {
					members = []string{"allUsers"}
				}
				if _, err := em.Run.SeedIAMPolicy(p.ID, rg, name, &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: members}}}); err != nil {
					return nil, err
				}
			}
		}
	}
	ps, err := pubsub.NewClient(ctx, home.ID, gcp.EmulatorGRPCOptions(addr, "")...)
	if err != nil {
		return nil, err
	}
	defer ps.Close()
	for _, t := range []string{stack.OutcomesTopic, functions.DefaultReplayTopic} {
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + home.ID + "/topics/" + t}); err != nil {
			return nil, err
		}
	}
	for _, q := range []struct {
		api  string
		rate float64
	}{{"run", c.RunReads}, {"compute", c.ComputeReads}} {
		em.Core.Faults.SetQuotaRate(q.api, core.Read, q.rate, int(q.rate))
	}
	for _, pat := range []string{"google.cloud.run.*", "google.longrunning.*", "compute.*", "serviceusage.*", "iap.*", "google.cloud.asset.*", "google.cloud.resourcemanager.*", "run.*"} {
		if err := em.Core.Faults.SetLatency(pat, c.Latency); err != nil {
			return nil, err
		}
	}

	// Discovery: Cloud Asset vs the per-region fallback, same scope.
	cl, err := gcp.NewClients(ctx, gcp.Options{EmulatorHost: addr, Principal: "bench@example.com"})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	dir, err := gcp.NewProjectDirectory(ctx, gcp.Options{EmulatorHost: addr})
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	for _, d := range []struct {
		mode string
		out  *Discovery
	}{{gcp.ModeAsset, &r.Asset}, {gcp.ModeRegions, &r.Regions}} {
		logf("discovery: %s", d.mode)
		dc := *cl.Discovery
		dc.SetOptions(gcp.DiscoveryOptions{Mode: d.mode, Projects: gcp.NewProjectsUnder(dir), Parallelism: 16})
		before := em.Core.Stats.Snapshot()
		t0 := time.Now()
		got, err := dc.Discover(ctx, "organizations/1", true)
		if err != nil {
			return nil, fmt.Errorf("discovery %s: %w", d.mode, err)
		}
		*d.out = Discovery{Path: got.Path, Found: len(got.Services), Elapsed: time.Since(t0),
			Calls: CallsOf(em.Core.Stats.Snapshot().Sub(before)).Total()}
	}

	// The whole sweep through one enforcer process.
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	dirBin, err := os.MkdirTemp("", "iapbench-org-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dirBin)
	bins, err := Build(ctx, root, dirBin)
	if err != nil {
		return nil, err
	}
	p, err := startProc(bins.Enforcer, enforcerEnvFor(addr, home.ID, "*", "iapguard@"+home.ID+".iam.gserviceaccount.com", "300s"))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if _, err := p.firstAnswer(ctx); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	em.PubSub.ClearMessages()
	before := em.Core.Stats.Snapshot()
	t0 := time.Now()
	logf("sweep request")
	status, err := postReplay(ctx, hc, p.url, home.ID, event.ReplayMessage{Version: 1, Scope: "organizations/1", RequestedBy: "scheduler"}, "sweep")
	if err != nil || status >= 300 {
		return nil, fmt.Errorf("sweep request: status %d, %v", status, err)
	}
	var replays []event.ReplayMessage
	for _, m := range em.PubSub.Messages() {
		if strings.HasSuffix(m.Topic, "/"+functions.DefaultReplayTopic) {
			var rm event.ReplayMessage
			if err := json.Unmarshal(m.Data, &rm); err == nil {
				replays = append(replays, rm)
			}
		}
	}
	r.Replays = len(replays)
	logf("%d replay messages; delivering them %d at a time", len(replays), c.Concurrency)
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.Concurrency)
	for i, rm := range replays {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := postReplay(ctx, hc, p.url, home.ID, rm, fmt.Sprint("r", i))
			if err != nil || st >= 300 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	r.SweepElapsed = time.Since(t0)
	r.Failed = int(failed.Load())
	r.SweepCalls = CallsOf(em.Core.Stats.Snapshot().Sub(before))
	for k := range r.SweepCalls {
		if strings.HasPrefix(k, "google.pubsub.") {
			delete(r.SweepCalls, k)
		}
	}
	for _, m := range em.PubSub.Messages() {
		if strings.HasSuffix(m.Topic, "/"+stack.OutcomesTopic) {
			r.Outcomes[m.Attributes["outcome"]]++
		}
	}
	if r.PeakRSS, _, err = p.memory(); err != nil {
		return nil, err
	}
	min := c.minimum()
	r.MinCalls = min.Total()
	// Quota-bound: the minimum's reads of each quota class at its rate
	// (after the one-second burst), plus the chain no reconcile can
	// shorten: the discovery pages, then four rounds (MinDirect).
	runReads := min[mGetService] + min[mGetIAMPolicy] + min[mGetOperation]
	computeReads := min[mListNEGs] + min[mListBackends]
	bound := max(QuotaBoundTime(int(runReads), c.RunReads, int(c.RunReads), 0, 0),
		QuotaBoundTime(int(computeReads), c.ComputeReads, int(c.ComputeReads), 0, 0))
	r.QuotaBound = bound + time.Duration(min[mSearch]+int64(MinDirect().Rounds))*c.Latency
	r.Took = time.Since(r.Started)
	return r, nil
}

// postReplay delivers a replay message to the function as Eventarc would
// (binary-mode messagePublished CloudEvent) and returns the HTTP status.
func postReplay(ctx context.Context, hc *http.Client, url, project string, m event.ReplayMessage, id string) (int, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	ev, err := event.NewMessagePublishedEvent(project, functions.DefaultReplayTopic, "projects/"+project+"/subscriptions/eventarc",
		event.PubSubMessage{Data: data, MessageID: id, PublishTime: time.Now().UTC()})
	if err != nil {
		return 0, err
	}
	return postEvent(ctx, hc, url, ev)
}

func postEvent(ctx context.Context, hc *http.Client, url string, ev cloudevents.Event) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.Data()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Id", ev.ID())
	req.Header.Set("Ce-Source", ev.Source())
	req.Header.Set("Ce-Type", ev.Type())
	req.Header.Set("Ce-Specversion", ev.SpecVersion())
	req.Header.Set("Ce-Time", ev.Time().UTC().Format(time.RFC3339Nano))
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// OrgTargets checks the targets.
func (r *OrgReport) OrgTargets() []Target {
	cr := Ratio(float64(r.SweepCalls.Total()), float64(r.MinCalls))
	wr := Ratio(float64(r.SweepElapsed), float64(r.QuotaBound))
	return []Target{
		{"sweep: calls ≤ 1.1× minimum", fmt.Sprintf("%d vs %d (%s)", r.SweepCalls.Total(), r.MinCalls, frac(cr)), cr <= 1.1},
		{"sweep: wall time ≤ 1.1× quota-bound", fmt.Sprintf("%s vs %s (%s)", r.SweepElapsed.Round(time.Millisecond), r.QuotaBound.Round(time.Millisecond), frac(wr)), wr <= 1.1},
		{"sweep: peak RSS of the function instance ≤ 128 MiB", mib(r.PeakRSS), r.PeakRSS > 0 && r.PeakRSS <= 128<<20},
		{"sweep: every labelled service replayed, no failed delivery", fmt.Sprintf("%d replays of %d, %d failed", r.Replays, r.Config.Labelled, r.Failed), r.Replays == r.Config.Labelled && r.Failed == 0},
	}
}

// Format writes the report.
func (r *OrgReport) Format(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	c := r.Config
	p("iapguard organisation-scale sweep (issue #18) — run %q — %s (took %s)", c.Name, r.Started.UTC().Format(time.RFC3339), r.Took.Round(time.Second))
	p("%s", r.Env)
	p("%d projects in %d folders under organizations/1, %d Cloud Run services across %d regions, %d labelled iap=enabled, %d of them public without IAP.",
		c.Projects, c.Folders, c.Projects*c.Regions, c.Regions, c.Labelled, c.NonCompliant)
	p("Injected latency %s before every Google API call; quotas: Cloud Run reads %.0f/s, Compute reads %.0f/s (burst 1 s); Cloud Asset SearchAllResources 400/min per project, 1,500/min per organisation (Google's).", c.Latency, c.RunReads, c.ComputeReads)
	p("")
	p("Discovery of the labelled services of organizations/1")
	tw := newTab(w)
	fmt.Fprintln(tw, "  path\tfound\tcalls\ttime\t")
	for _, d := range []Discovery{r.Asset, r.Regions} {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t\n", d.Path, d.Found, d.Calls, d.Elapsed.Round(time.Millisecond))
	}
	tw.Flush()
	p("  fallback / Cloud Asset: %s calls, %s time", frac(Ratio(float64(r.Regions.Calls), float64(max(r.Asset.Calls, 1)))), frac(Ratio(float64(r.Regions.Elapsed), float64(max(r.Asset.Elapsed, 1)))))
	p("")
	p("Whole sweep: sweep request → discovery (Cloud Asset) → %d replay messages → each delivered to one function instance, %d at a time", r.Replays, c.Concurrency)
	p("  wall %s; quota-bound %s; outcomes %v; failed deliveries %d; peak RSS %s", r.SweepElapsed.Round(time.Millisecond), r.QuotaBound.Round(time.Millisecond), r.Outcomes, r.Failed, mib(r.PeakRSS))
	min := c.minimum()
	tw = newTab(w)
	fmt.Fprintln(tw, "  method\tcalls\tminimum\t")
	for _, m := range Methods(r.SweepCalls, min) {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t\n", m, r.SweepCalls[m], min[m])
	}
	fmt.Fprintf(tw, "  total\t%d\t%d\t\n", r.SweepCalls.Total(), r.MinCalls)
	tw.Flush()
	p("")
	for _, t := range r.OrgTargets() {
		mark := "met    "
		if !t.Met {
			mark = "MISSED "
		}
		p("%s %s: %s", mark, t.What, t.Measured)
	}
}

func newTab(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
