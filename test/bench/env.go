package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/emulator/delivery"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/logx"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// Region is where the benchmark's services live.
const Region = "us-central1"

// Env is one emulator with outcomes collected (internal/stack), official
// clients acting as a user, and an EnforceIAP function served over HTTP
// exactly as functions-framework-go serves it. Unlike the sandbox, nothing
// is delivered automatically: a scenario builds state, takes the audit
// entry of the change it wants to measure and delivers it itself (Fire), so
// each measurement covers exactly one event. The function's calls go
// through a recorder that timestamps each of them.
type Env struct {
	St      *stack.Stack
	Users   *demo.Clients
	Project string

	rec   *recorder
	fnURL string
	fnSrv *http.Server
	cfg   functions.Config
	hc    *http.Client

	mu   sync.Mutex
	inst *functions.Instance
}

// NewEnv starts an environment. Close it when done.
func NewEnv(ctx context.Context) (*Env, error) {
	st, err := stack.Start(ctx, stack.Options{
		// No triggers: the stand-in delivers nothing; scenarios Fire events.
		Emulator:   emulator.Options{Triggers: []eventarc.Trigger{}},
		NoFunction: true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the stack: %w", err)
	}
	e := &Env{St: st, Project: st.Project.ID}
	fail := func(err error) (*Env, error) { e.Close(); return nil, err }
	if e.Users, err = demo.Dial(ctx, st.Emu.Addr()); err != nil {
		return fail(err)
	}
	if e.rec, err = startRecorder(st.Emu.Addr()); err != nil {
		return fail(err)
	}
	e.cfg = functions.Config{
		Project: e.Project, Projects: []string{e.Project, st.Project.NumberString()},
		OutcomesTopic: stack.OutcomesTopic, Timeout: 60 * time.Second, MaxEventAge: 24 * time.Hour,
		EmulatorHost: e.rec.Addr(), Principal: stack.FunctionPrincipal, LogLevel: slog.LevelError,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("listening for the function: %w", err))
	}
	e.fnURL = "http://" + ln.Addr().String() + "/"
	e.fnSrv = &http.Server{Handler: functions.LazyHTTPHandler(e.handler), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.fnSrv.Serve(ln) }()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 1024
	e.hc = &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	return e, nil
}

// handler is EnforceIAP's handler, served by functions.LazyHTTPHandler as
// functions.EnforceIAP serves it: the instance is built on the first event
// it handles, as on Cloud Run.
func (e *Env) handler() (*functions.Handler, error) {
	inst, err := e.instance()
	if err != nil {
		return nil, err
	}
	return inst.Handler, nil
}

func (e *Env) instance() (*functions.Instance, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inst == nil {
		var logw io.Writer = io.Discard
		if os.Getenv(envLog) != "" {
			logw = os.Stderr // the function's warnings and errors, for debugging a run
		}
		inst, err := functions.NewInstanceFromConfig(context.Background(), e.cfg, logx.New(logw, slog.LevelWarn))
		if err != nil {
			return nil, err
		}
		e.inst = inst
	}
	return e.inst, nil
}

// Cold retires the function instance: the next event starts a new one (new
// clients, empty caches), as Cloud Run does for a new instance.
func (e *Env) Cold() {
	e.mu.Lock()
	inst := e.inst
	e.inst = nil
	e.mu.Unlock()
	if inst != nil {
		_ = inst.Close()
	}
}

// Core is the emulator's core (stats, faults, audit log).
func (e *Env) Core() *core.Core { return e.St.Emu.Core }

// SetLatency injects d before every Google API call except Pub/Sub (the
// outcome publish is measured as it is, not as a Google API round trip).
// It clears every other fault, quotas included.
func (e *Env) SetLatency(d time.Duration) error {
	f := e.Core().Faults
	f.Reset()
	if d <= 0 {
		return nil
	}
	if err := f.SetLatency("*", d); err != nil {
		return err
	}
	return f.SetLatency("google.pubsub.*", 0)
}

// Service names a service of the project.
func (e *Env) Service(name string) string {
	return "projects/" + e.Project + "/locations/" + Region + "/services/" + name
}

// LastEntry returns the newest audit entry for resource written by method
// (suffix match, e.g. "Services.UpdateService").
func (e *Env) LastEntry(resource, method string) (*core.LogEntry, error) {
	es := e.Core().Audit.Entries()
	for i := len(es) - 1; i >= 0; i-- {
		p := es[i].ProtoPayload
		if p != nil && p.ResourceName == resource && strings.HasSuffix(p.MethodName, method) {
			return es[i], nil
		}
	}
	return nil, fmt.Errorf("no %s audit entry for %s", method, resource)
}

// Label sets labels on a service as a user would and returns the audit
// entry of that change (the event to deliver).
func (e *Env) Label(ctx context.Context, svc string, labels map[string]string) (*core.LogEntry, error) {
	if err := e.Users.SetLabels(ctx, e.Project, Region, svc, labels); err != nil {
		return nil, err
	}
	return e.LastEntry(e.Service(svc), "Services.UpdateService")
}

// Fired is what delivering one event did.
type Fired struct {
	EventID string
	Start   time.Time
	Latency time.Duration // POST → the function's answer (after its outcome was published)
	Status  int
}

// Fire delivers entry to the function as Eventarc does (binary-mode
// CloudEvent, delivery.CloudEventFor) and waits for the answer. The
// function answers only after Pub/Sub accepted the outcome, so Latency is
// event → outcome.
func (e *Env) Fire(ctx context.Context, entry *core.LogEntry) (Fired, error) {
	return fire(ctx, e.hc, e.fnURL, entry)
}

func fire(ctx context.Context, hc *http.Client, url string, entry *core.LogEntry) (Fired, error) {
	h, body, err := delivery.CloudEventFor(entry)
	if err != nil {
		return Fired{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Fired{}, fmt.Errorf("building the delivery: %w", err)
	}
	req.Header = h
	f := Fired{EventID: h.Get("Ce-Id"), Start: time.Now()}
	resp, err := hc.Do(req)
	if err != nil {
		return f, fmt.Errorf("delivering %s: %w", f.EventID, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	f.Latency, f.Status = time.Since(f.Start), resp.StatusCode
	return f, nil
}

// Outcome waits for the outcome message of eventID about service.
func (e *Env) Outcome(ctx context.Context, eventID, service string) (*outcome.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		for _, m := range e.St.Outcomes.ForService(service) {
			if m.Trigger.EventID == eventID {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the outcome of event %s about %s: %w", eventID, service, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Measured is one measured event of a single-event scenario.
type Measured struct {
	Fired
	Outcome outcome.Kind
	Calls   Calls
	Rounds  int // counted from the recorder's timestamps
	// BeforePublish is the time from the last Google API answer (or the
	// delivery, without calls) to the outcome's publish request; Publish
	// is that request's round trip.
	BeforePublish, Publish time.Duration
}

// Measure delivers entry with latency injected and returns what it cost.
// Setup before it runs without latency.
func (e *Env) Measure(ctx context.Context, entry *core.LogEntry, service string, latency time.Duration) (Measured, error) {
	if err := e.SetLatency(latency); err != nil {
		return Measured{}, err
	}
	defer e.SetLatency(0)
	before := e.Core().Stats.Snapshot()
	f, err := e.Fire(ctx, entry)
	if err != nil {
		return Measured{}, err
	}
	end := time.Now()
	m := Measured{Fired: f, Calls: CallsOf(e.Core().Stats.Snapshot().Sub(before))}
	api, ps := e.rec.Between(f.Start, end)
	m.Rounds = Rounds(api)
	// The outcome publish: from the last Google API answer to the publish
	// request (the Pub/Sub client batches for up to DelayThreshold), and
	// the publish itself.
	last := f.Start
	for _, a := range api {
		if a.End.After(last) {
			last = a.End
		}
	}
	for _, c := range ps {
		if c.Method == "google.pubsub.v1.Publisher.Publish" {
			m.BeforePublish, m.Publish = c.Start.Sub(last), c.End.Sub(c.Start)
		}
	}
	if f.Status/100 != 2 {
		return m, fmt.Errorf("event %s answered %d", f.EventID, f.Status)
	}
	msg, err := e.Outcome(ctx, f.EventID, service)
	if err != nil {
		return m, err
	}
	m.Outcome = msg.Outcome
	return m, nil
}

// Close stops everything.
func (e *Env) Close() {
	if e.fnSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = e.fnSrv.Shutdown(ctx)
		cancel()
	}
	e.Cold()
	if e.rec != nil {
		e.rec.Close()
	}
	if e.Users != nil {
		_ = e.Users.Close()
	}
	if e.St != nil {
		e.St.Close()
	}
}

var errUnexpected = errors.New("unexpected outcome")
