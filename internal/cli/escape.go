package cli

import (
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// escaper writes what it is given with every control character other than
// new line and tab escaped as \u00XX (and each byte that is not UTF-8 as
// \ufffd, the replacement character, valid in text and in JSON): outcome reasons, principals, annotations and labels come from
// whoever can edit a service or publish an event, and ESC, BEL, CSI or a
// carriage return in them could erase or forge lines of iapctl's output or
// retitle the terminal. \u00XX is also a valid escape inside JSON strings,
// so --json output stays valid JSON (Go's encoder escapes C0 controls
// itself, but not DEL or the C1 range).
type escaper struct {
	w io.Writer
	// partial holds the start of a UTF-8 sequence split across writes.
	partial []byte
}

func newEscaper(w io.Writer) *escaper { return &escaper{w: w} }

func (e *escaper) Write(p []byte) (int, error) {
	n := len(p)
	b := append(e.partial, p...)
	e.partial = nil
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		if !utf8.FullRune(b) && len(b) < utf8.UTFMax {
			e.partial = append([]byte(nil), b...)
			break
		}
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, `\ufffd`...)
		case r != '\n' && r != '\t' && unicode.IsControl(r):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}
