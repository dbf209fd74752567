package cli

import (
	"bufio"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// walkStep is one command of docs/iapctl.md's walkthrough and the exit
// status the doc states for it (-1: none stated).
type walkStep struct {
	line string
	args []string
	want int
}

// walkthroughSteps reads the commands of the walkthrough section of
// docs/iapctl.md: every "$ ./iapctl …" line in its output blocks, with the
// "exit status: N" line of the same block, and the watch command of the
// third terminal.
func walkthroughSteps(t *testing.T) (steps []walkStep, watch []string) {
	t.Helper()
	b, err := os.ReadFile("../../docs/iapctl.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Walkthrough against the sandbox")
	end := strings.Index(doc[start:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("docs/iapctl.md has no walkthrough section")
	}
	section := doc[start : start+end]
	exitRE := regexp.MustCompile(`^exit status: (\d+)$`)
	var cur *walkStep
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "$ ./iapctl "):
			cmd := strings.TrimPrefix(line, "$ ./iapctl ")
			cmd, _, _ = strings.Cut(cmd, "; echo")
			cmd, _, _ = strings.Cut(cmd, " | ")
			steps = append(steps, walkStep{line: line, args: shellWords(t, cmd), want: -1})
			cur = &steps[len(steps)-1]
		case strings.HasPrefix(line, "./iapctl watch "):
			watch = shellWords(t, strings.TrimPrefix(line, "./iapctl "))
		case line == "```":
			cur = nil
		case cur != nil && exitRE.MatchString(line):
			cur.want, _ = strconv.Atoi(exitRE.FindStringSubmatch(line)[1])
		}
	}
	return steps, watch
}

// shellWords splits a command line as sh would, for the quoting the doc
// uses ('…' and "…").
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// lockedBuffer collects the sandbox's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWalkthrough runs docs/iapctl.md's walkthrough as written: the
// sandbox in dry-run mode (in-process), the export lines it prints, then
// every documented command in order, checking the exit status the doc
// states for each.
func TestWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole walkthrough; skipped with -short")
	}
	steps, watch := walkthroughSteps(t)
	if len(steps) < 8 || watch == nil {
		t.Fatalf("found %d commands and watch %q in the walkthrough; the parser no longer matches the doc", len(steps), watch)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	sctx, stopSandbox := context.WithCancel(ctx)
	var sbOut lockedBuffer
	sandboxDone := make(chan int, 1)
	go func() {
		sandboxDone <- Main(sctx, []string{"sandbox", "--dry-run", "--addr", "127.0.0.1:0"}, strings.NewReader(""), &sbOut, &sbOut)
	}()
	defer func() {
		stopSandbox()
		if code := <-sandboxDone; code != ExitOK {
			t.Errorf("sandbox exited %d after Ctrl-C, want 0", code)
		}
	}()
	env := map[string]string{}
	exportRE := regexp.MustCompile(`(?m)^  export ([A-Z_]+)=(\S+)$`)
	for len(env) < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("the sandbox never printed its three export lines:\n%s", sbOut.String())
		case code := <-sandboxDone:
			t.Fatalf("the sandbox exited %d:\n%s", code, sbOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		for _, m := range exportRE.FindAllStringSubmatch(sbOut.String(), -1) {
			env[m[1]] = m[2]
		}
	}
	if env[envProject] != testProject || env[envEmulatorHost] == "" || env[envPubSubHost] == "" {
		t.Fatalf("export lines give %v", env)
	}
	run := func(args []string) (int, string, string) {
		for i, a := range args {
			args[i] = strings.TrimPrefix(a, "internal/cli/") // the doc runs from the repository root
		}
		return runWithEnv(t, withEnv(ctx, env), args...)
	}
	var watchCode chan int
	for _, st := range steps {
		if watchCode == nil && st.want == ExitOK && len(st.args) > 1 && st.args[0] == "enforce" && !strings.Contains(st.line, "--dry-run") {
			// Terminal 3: the watch the doc starts before the fix.
			watchCode = make(chan int, 1)
			wctx, wcancel := context.WithTimeout(ctx, time.Minute)
			defer wcancel()
			ready := make(chan struct{})
			wctx = context.WithValue(wctx, watchReadyKey{}, func(string) { close(ready) })
			go func() {
				code, _, _ := runWithEnv(t, withEnv(wctx, env), append(watch, "--timeout", "50s")...)
				watchCode <- code
			}()
			select {
			case <-ready:
			case <-ctx.Done():
				t.Fatal("watch never subscribed")
			}
		}
		code, out, errOut := run(st.args)
		if st.want >= 0 && code != st.want {
			t.Errorf("%s\n  exit %d, the doc says %d\nstdout:\n%s\nstderr:\n%s", st.line, code, st.want, out, errOut)
		}
		if st.want < 0 && code != ExitOK && code != ExitNonCompliant {
			t.Errorf("%s\n  exit %d; the doc shows it working (add the exit status to the doc if it is meant to fail)\nstderr:\n%s", st.line, code, errOut)
		}
	}
	if watchCode == nil {
		t.Fatal("the walkthrough has no enforce that fixes storefront")
	}
	if code := <-watchCode; code != ExitOK {
		t.Errorf("watch %v exited %d, the doc says it exits after its --count", watch, code)
	}
}
