package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/iapguard/iapguard/internal/gcp"
	"github.com/iapguard/iapguard/pkg/outcome"
)

// writeOutput writes v as JSON when format is json, else calls table.
func writeOutput(w io.Writer, format string, v any, table func(io.Writer)) error {
	if format == outputJSON {
		return writeJSON(w, v)
	}
	table(w)
	return nil
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// dash renders an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortBackend renders a backend service path as "global/NAME" or
// "REGION/NAME".
func shortBackend(path string) string {
	ref, err := gcp.ParseBackendRef(path)
	if err != nil {
		return path
	}
	if ref.Region == "" {
		return "global/" + ref.Name
	}
	return ref.Region + "/" + ref.Name
}

// shortResource renders a resource name without its project prefix.
func shortResource(name string) string {
	for _, sep := range []string{"/locations/", "/global/", "/regions/"} {
		if i := strings.Index(name, sep); i >= 0 {
			rest := name[i+len(sep):]
			if sep == "/locations/" {
				return strings.Replace(rest, "/services/", "/", 1)
			}
			if sep == "/regions/" {
				return rest
			}
			return "global/" + rest
		}
	}
	return name
}

// ingressWords spells Cloud Run's ingress values as gcloud does
// (--ingress=all|internal|internal-and-cloud-load-balancing): text output
// uses these; JSON output keeps the API's values, as the outcome schema
// does.
var ingressWords = strings.NewReplacer(
	"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "internal-and-cloud-load-balancing",
	"INGRESS_TRAFFIC_INTERNAL_ONLY", "internal",
	"INGRESS_TRAFFIC_ALL", "all",
	"INGRESS_TRAFFIC_NONE", "none",
	"INGRESS_TRAFFIC_UNSPECIFIED", "unspecified",
)

// gcloudIngress rewrites the API's ingress values in s in gcloud's words.
func gcloudIngress(s string) string { return ingressWords.Replace(s) }

// changeTextFields renders a change: "F + ADDED", "F - REMOVED" or
// "F: BEFORE → AFTER" (ingress values in gcloud's words).
func changeTextFields(field, before, after string) string {
	if field == "ingress" {
		before, after = gcloudIngress(before), gcloudIngress(after)
	}
	switch {
	case before == "":
		return field + " + " + after
	case after == "":
		return field + " - " + before
	}
	return field + ": " + before + " → " + after
}

// outcomeLine renders an outcome message as one line (watch, replay),
// stamped with the outcome's time, or with byTrigger the time of the
// change that caused it (when known).
func outcomeLine(m *outcome.Message, byTrigger bool) string {
	res := m.Resource.Service
	if res != "" && m.Resource.Region != "" {
		res = m.Resource.Region + "/" + res
	}
	res = cmp.Or(res, shortResource(m.Resource.Name))
	trig := m.Trigger.Method
	if i := strings.LastIndex(trig, ".Services."); i >= 0 {
		trig = trig[i+len(".Services."):]
	} else if parts := strings.Split(trig, "."); len(parts) > 2 && (parts[0] == "v1" || parts[0] == "beta" || parts[0] == "alpha") {
		trig = strings.Join(parts[2:], ".")
	}
	if m.Trigger.Principal != "" {
		trig += " by " + m.Trigger.Principal
	}
	var cs []string
	for _, c := range m.Changes {
		cs = append(cs, changeTextFields(c.Field, c.Before, c.After))
	}
	detail := strings.Join(cs, "; ")
	if m.Reason != "" {
		detail = m.Reason
		if len(cs) > 0 {
			detail += "; changes: " + strings.Join(cs, "; ")
		}
	}
	detail = cmp.Or(detail, "no change")
	kind := string(m.Outcome)
	if m.DryRun {
		kind += " (dry run)"
	}
	t := m.Time
	if byTrigger && !m.Trigger.Time.IsZero() {
		t = m.Trigger.Time
	}
	when := "-"
	if !t.IsZero() {
		when = t.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s  %-21s %-28s %-40s %s", when, kind, res, dash(trig), detail)
}

// outcomeNonCompliant reports whether an outcome means a service is (or,
// for a dry run, still is) not compliant.
func outcomeNonCompliant(m *outcome.Message) bool {
	switch m.Outcome {
	case outcome.Conflict, outcome.Failed:
		return true
	case outcome.Rejected:
		return m.Resource.Service != ""
	case outcome.Remediated:
		return m.DryRun
	}
	return false
}

// ---- progress ----------------------------------------------------------------

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws one line in place on a terminal, and nothing when w
// is not a terminal: "[=====     ] 3/10 services" (start, add), or a
// status line (status).
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	total int
	done  int
	what  string
	last  time.Time // when status last drew
	shown bool
}

func newProgressBar(w io.Writer, enabled bool, what string) *progressBar {
	w = rawWriter(w)
	return &progressBar{w: w, on: enabled && isTerminal(w), what: what}
}

// rawWriter is the terminal under iapctl's escaper: progress lines are
// iapctl's own numbers and words and need their carriage return and
// erase-line sequence, which the escaper would print as text (and hide
// the terminal behind, so no progress showed at all).
func rawWriter(w io.Writer) io.Writer {
	if e, ok := w.(*escaper); ok {
		return e.w
	}
	return w
}

// start adds total to the work to do (once per project when several
// projects are scanned).
func (p *progressBar) start(total int) {
	p.mu.Lock()
	p.total += total
	p.mu.Unlock()
	p.draw()
}

func (p *progressBar) add(n int) {
	p.mu.Lock()
	p.done += n
	p.mu.Unlock()
	p.draw()
}

func (p *progressBar) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || p.total == 0 {
		return
	}
	const width = 30
	fill := width * p.done / p.total
	p.put(fmt.Sprintf("[%s%s] %d/%d %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.done, p.total, p.what))
}

// status draws line() at most ten times a second (line is not called
// otherwise).
func (p *progressBar) status(line func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.put(line())
}

// put replaces the line with s (p.mu held).
func (p *progressBar) put(s string) {
	fmt.Fprint(p.w, "\r\033[K"+s)
	p.shown = true
}

// finish clears the line (before other output, and at the end).
func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
