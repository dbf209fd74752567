package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// Issue #19 item 9: a forged principal or reason with ESC/BEL/CR made
// `iapctl watch` erase its own line and print a fake one, or retitle the
// terminal. Every byte iapctl writes passes the escaper.
func TestEscaperNeutralisesControlCharacters(t *testing.T) {
	var b bytes.Buffer
	w := newEscaper(&b)
	attack := "ok\r\x1b[2K\x1b]0;pwned\x07compliant by admin\u009b31m\x7f\tend\n"
	// Split mid-rune: the C1 CSI is two bytes in UTF-8.
	mid := len("ok\r\x1b[2K\x1b]0;pwned\x07compliant by admin") + 1
	if _, err := w.Write([]byte(attack[:mid])); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(attack[mid:])); err != nil {
		t.Fatal(err)
	}
	want := `ok\u000d\u001b[2K\u001b]0;pwned\u0007compliant by admin\u009b31m\u007f` + "\tend\n"
	if got := b.String(); got != want {
		t.Errorf("escaped\n got %q\nwant %q", got, want)
	}
}

// The outcome line iapctl watch prints for a forged message carries no
// control character, and JSON output stays valid JSON.
func TestWatchLineAndJSONEscaped(t *testing.T) {
	m := &outcome.Message{Outcome: outcome.Compliant, Resource: outcome.Resource{Name: "projects/p/locations/r/services/s", Project: "p", Region: "r", Service: "s"},
		Trigger: outcome.Trigger{Principal: "eve\x1b[1A\x1b[2K\u009b"}, Reason: "x\r\x07"}
	var b bytes.Buffer
	w := newEscaper(&b)
	if _, err := w.Write([]byte(outcomeLine(m, true) + "\n")); err != nil {
		t.Fatal(err)
	}
	for _, c := range b.Bytes() {
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			t.Fatalf("control byte %#x in %q", c, b.String())
		}
	}
	b.Reset()
	enc, _ := json.Marshal(m)
	if _, err := w.Write(enc); err != nil {
		t.Fatal(err)
	}
	var back outcome.Message
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Trigger.Principal != m.Trigger.Principal {
		t.Errorf("escaped JSON %q: %v (principal %q)", b.String(), err, back.Trigger.Principal)
	}
}

// TestEscaperKeepsJSONValid: a byte that is not UTF-8 (a replay file can
// carry one into --json output) becomes U+FFFD, never an escape JSON
// does not have.
func TestEscaperKeepsJSONValid(t *testing.T) {
	var buf bytes.Buffer
	if _, err := newEscaper(&buf).Write([]byte("{\"reason\":\"a\xffb\x1b[2K\"}\n")); err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
		t.Fatalf("escaped output %q is not JSON: %v", buf.String(), err)
	}
	if want := "a\ufffdb\x1b[2K"; v["reason"] != want {
		t.Errorf("reason = %q, want %q", v["reason"], want)
	}
}

// TestProgressSeesTheTerminalUnderTheEscaper: progress writes to the stream
// the escaper wraps (on a terminal it would otherwise never draw).
func TestProgressSeesTheTerminalUnderTheEscaper(t *testing.T) {
	var buf bytes.Buffer
	if got := rawWriter(newEscaper(&buf)); got != &buf {
		t.Errorf("rawWriter(escaper) = %T, want the wrapped writer", got)
	}
	if p := newProgressBar(newEscaper(&buf), true, "services"); p.w != &buf {
		t.Errorf("progress bar writes to %T, want the wrapped writer", p.w)
	}
}
