package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/functions"
	"github.com/iapguard/iapguard/internal/stack"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// ModuleRoot finds the iapguard module's directory from the working
// directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/iapguard/iapguard\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the module root: no iapguard go.mod above the working directory")
		}
		dir = parent
	}
}

// Binaries are the programs the process scenarios start.
type Binaries struct {
	Enforcer string // functions/cmd/enforcer: EnforceIAP through functions-framework-go
	Hello    string // test/bench/hello: a hello-world functions-framework-go function
}

// Build compiles the programs into dir (build time is not measured) and
// puts each in place by copying it, as a deployment does: Cloud Run runs a
// binary extracted from an image layer, never the linker's own output. The
// Go linker writes its output through a memory mapping, which leaves the
// file in the page cache as single pages; exec then maps it a page at a
// time, at a cost that varied from file to file. Measured on 2026-12-07
// (200 alternating starts each, a loaded 2-core machine), exec → first
// answer p50 of the linker's output against a byte-identical copy:
// enforcer 10.35 against 8.93 ms and 10.56 against 9.96 ms (two builds),
// hello world 5.52 against 4.59 ms; with 15 starts per run that spread
// moved the ratio by more than the programs did.
func Build(ctx context.Context, root, dir string) (Binaries, error) {
	b := Binaries{Enforcer: filepath.Join(dir, "enforcer"), Hello: filepath.Join(dir, "hello")}
	for _, x := range []struct{ out, pkg string }{
		{b.Enforcer, "./functions/cmd/enforcer"}, {b.Hello, "./test/bench/hello"},
	} {
		linked := x.out + ".linked"
		cmd := exec.CommandContext(ctx, "go", "build", "-o", linked, x.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("building %s: %w\n%s", x.pkg, err, out)
		}
		if err := copyFile(linked, x.out); err != nil {
			return b, err
		}
		if err := os.Remove(linked); err != nil {
			return b, fmt.Errorf("removing the linker's output: %w", err)
		}
	}
	return b, nil
}

// copyFile writes src's bytes to a new executable dst with write calls.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copying the program: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return fmt.Errorf("copying the program to %s: %w", dst, err)
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

// proc is a started function process.
type proc struct {
	cmd  *exec.Cmd
	url  string
	t0   time.Time
	done chan struct{}
}

func startProc(bin string, env []string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), env...), "PORT="+port, "HOST=127.0.0.1")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if os.Getenv(envLog) != "" {
		cmd.Stderr = os.Stderr // e.g. GODEBUG=gctrace=1 output
	}
	p := &proc{cmd: cmd, url: "http://127.0.0.1:" + port + "/", done: make(chan struct{})}
	p.t0 = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// firstAnswer polls the process with GET / until any HTTP answer comes back
// and returns the time since the process was started.
func (p *proc) firstAnswer(ctx context.Context) (time.Duration, error) {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			return time.Since(p.t0), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %s to answer: %w", p.cmd.Path, ctx.Err())
		case <-p.done:
			return 0, fmt.Errorf("%s exited before answering", p.cmd.Path)
		case <-time.After(500 * time.Microsecond):
		}
	}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// memory reads VmHWM (peak resident set) and VmRSS of the process, in bytes.
func (p *proc) memory() (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading process memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing %s %q: %w", k, v, err)
		}
		if k == "VmHWM" {
			hwm = kb << 10
		} else {
			rss = kb << 10
		}
	}
	return hwm, rss, sc.Err()
}

// enforcerEnv configures functions/cmd/enforcer for e's emulator and project.
func enforcerEnv(e *Env) []string {
	return enforcerEnvFor(e.St.Emu.Addr(), e.Project, e.Project+","+e.St.Project.NumberString(), stack.FunctionPrincipal, "120s")
}

// enforcerEnvFor configures functions/cmd/enforcer for the emulator at addr:
// its project, scope, principal and per-event timeout.
func enforcerEnvFor(addr, project, scope, principal, timeout string) []string {
	return []string{
		functions.EnvProject + "=" + project, functions.EnvProjects + "=" + scope,
		functions.EnvOutcomesTopic + "=" + stack.OutcomesTopic,
		functions.EnvEmulatorHost + "=" + addr, functions.EnvPubSubHost + "=" + addr,
		functions.EnvPrincipal + "=" + principal, functions.EnvLogLevel + "=error", functions.EnvTimeout + "=" + timeout,
	}
}

// StartResult compares process start → first answer.
type StartResult struct {
	Enforcer, Hello []time.Duration
	// FirstEvent is enforcer start → its first event acknowledged (outcome
	// published), no injected latency: the instance is built on that event.
	FirstEvent []time.Duration
}

// Ratio is the enforcer's median over hello-world's median.
func (s *StartResult) Ratio() float64 {
	return float64(Percentile(s.Enforcer, 50)) / float64(Percentile(s.Hello, 50))
}

// StartToServing starts each program n times, alternating, and times each
// until its first HTTP answer; then n more enforcers until their first
// event (about the compliant service svc, whose event is entry) is handled.
func StartToServing(ctx context.Context, e *Env, bins Binaries, n int, entry *core.LogEntry) (*StartResult, error) {
	res := &StartResult{}
	env := enforcerEnv(e)
	for range n {
		for _, x := range []struct {
			bin string
			env []string
			out *[]time.Duration
		}{{bins.Hello, nil, &res.Hello}, {bins.Enforcer, env, &res.Enforcer}} {
			p, err := startProc(x.bin, x.env)
			if err != nil {
				return res, err
			}
			d, err := p.firstAnswer(ctx)
			p.stop()
			if err != nil {
				return res, err
			}
			*x.out = append(*x.out, d)
		}
	}
	hc := &http.Client{Timeout: time.Minute}
	for range n {
		p, err := startProc(bins.Enforcer, env)
		if err != nil {
			return res, err
		}
		if _, err := p.firstAnswer(ctx); err != nil {
			p.stop()
			return res, err
		}
		f, err := fire(ctx, hc, p.url, entry)
		d := time.Since(p.t0)
		p.stop()
		if err != nil {
			return res, err
		}
		if f.Status/100 != 2 {
			return res, fmt.Errorf("first event answered %d", f.Status)
		}
		res.FirstEvent = append(res.FirstEvent, d)
	}
	return res, nil
}

// RSSResult is a function process's memory under many concurrent events.
type RSSResult struct {
	Program   string
	Events    int
	Latency   time.Duration
	IdleRSS   int64 // after start, before any event
	PeakRSS   int64 // VmHWM after every event was handled
	Latencies []time.Duration
	Non2xx    int
	Calls     Calls
	Min       Minimum
	Outcomes  map[outcome.Kind]int
}

// ConcurrentRSS starts program (the enforcer, extraEnv added to its environment) as its
// own process (so its resident set is its own), delivers n events about n
// different labelled public services all at once with latency injected,
// and reads its peak RSS.
func ConcurrentRSS(ctx context.Context, e *Env, name, program string, extraEnv []string, n int, latency time.Duration) (*RSSResult, error) {
	res := &RSSResult{Program: name, Events: n, Latency: latency, Min: MinBurst(n), Outcomes: map[outcome.Kind]int{}}
	_, entries, err := labelled(ctx, e, "rss", n)
	if err != nil {
		return nil, fmt.Errorf("concurrent events: %w", err)
	}
	p, err := startProc(program, append(enforcerEnv(e), extraEnv...))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if _, err := p.firstAnswer(ctx); err != nil {
		return nil, err
	}
	if _, res.IdleRSS, err = p.memory(); err != nil {
		return nil, err
	}
	if err := e.SetLatency(latency); err != nil {
		return nil, err
	}
	defer e.SetLatency(0)
	before := e.Core().Stats.Snapshot()
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	defer tr.CloseIdleConnections()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		ids   = map[string]bool{}
		start = make(chan struct{})
		errs  []error
	)
	for _, en := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f, err := fire(ctx, hc, p.url, en)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[f.EventID] = true
			res.Latencies = append(res.Latencies, f.Latency)
			if f.Status/100 != 2 {
				res.Non2xx++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		return res, fmt.Errorf("concurrent events: %d deliveries failed, first: %w", len(errs), errs[0])
	}
	if res.PeakRSS, _, err = p.memory(); err != nil {
		return res, err
	}
	res.Calls = CallsOf(e.Core().Stats.Snapshot().Sub(before))
	deadline := time.Now().Add(30 * time.Second)
	for {
		clear(res.Outcomes)
		got := 0
		for _, m := range e.St.Outcomes.All() {
			if ids[m.Trigger.EventID] {
				res.Outcomes[m.Outcome]++
				got++
			}
		}
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return res, nil
}
