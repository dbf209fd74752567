package cli

// Replay input, bounded: files are streamed (never read whole), every event
// is held to the function's per-event cap (functions.MaxRequestBytes), and
// a file is checked completely — JSON, sizes, event shapes — before any
// event is replayed, which also counts the events for the progress line and
// for "M not started" on an interrupt.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/iapguard/iapguard/functions"
)

// maxEventBytes is the function's per-event cap: a delivery over it is
// rejected there, so replay refuses it too.
const maxEventBytes = functions.MaxRequestBytes

// maxBuffered bounds what the JSON decoder may hold ahead of its position:
// well above any event under maxEventBytes, far below a runaway value.
const maxBuffered = 4 * maxEventBytes

// eventFiles expands the FILE|DIR arguments into files: a directory gives
// its *.json files in name order.
func eventFiles(args []string) ([]string, error) {
	var files []string
	for _, path := range args {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("reading events: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, path)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(path, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", path, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("directory %s has no *.json files", path)
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	return files, nil
}

// guardedReader stops a JSON decoder from buffering more than maxBuffered
// bytes past its position: one value that large is over the per-event cap.
type guardedReader struct {
	r    io.Reader
	read int64
	dec  *json.Decoder
}

var errValueTooLarge = errors.New("value too large")

func (g *guardedReader) Read(p []byte) (int, error) {
	if g.dec != nil && g.read-g.dec.InputOffset() > maxBuffered {
		return 0, errValueTooLarge
	}
	if len(p) > 64<<10 {
		p = p[:64<<10] // small reads, so the check above runs often
	}
	n, err := g.r.Read(p)
	g.read += int64(n)
	return n, err
}

// streamEvents reads the events of one file in order and calls fn with
// each (n counts from 1). The file holds one JSON value — an event, or an
// array of events as `gcloud logging read --format=json` writes — or
// several values one after another (JSON lines). Each event must be at
// most maxEventBytes; an event that is not one of the three kinds, or too
// large, ends the stream with an error naming its place.
func streamEvents(path, topic string, fn func(n int, ev cloudevents.Event) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading events: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	g := &guardedReader{r: br}
	dec := json.NewDecoder(g)
	g.dec = dec
	first, err := firstByte(br)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	inArray := first == '['
	if inArray {
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("%s: %s", path, jsonProblem(err, dec))
		}
	}
	n := 0
	for {
		if inArray && !dec.More() {
			if _, err := dec.Token(); err != nil {
				return fmt.Errorf("%s: %s", path, jsonProblem(err, dec))
			}
			if _, err := dec.Token(); err != io.EOF {
				return fmt.Errorf("%s: more data after the array of events (at byte %d): want one array, or one event per value", path, dec.InputOffset())
			}
			return nil
		}
		start := dec.InputOffset()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF && !inArray {
			if n == 0 {
				return fmt.Errorf("%s: the file is empty: want a CloudEvent, a LogEntry, a replay message or a JSON array of them", path)
			}
			return nil
		}
		n++
		where := path
		if inArray || n > 1 {
			where = fmt.Sprintf("%s: item %d", path, n)
		}
		if errors.Is(err, errValueTooLarge) {
			return fmt.Errorf("%s (from byte %d) is over %d MiB, the most the function accepts for one event", where, start, maxEventBytes>>20)
		}
		if err != nil {
			return fmt.Errorf("%s: %s", where, jsonProblem(err, dec))
		}
		if size := dec.InputOffset() - start; size > maxEventBytes {
			return fmt.Errorf("%s is %d bytes, over the %d MiB the function accepts for one event", where, size, maxEventBytes>>20)
		}
		ev, err := parseEvent(raw, topic, n)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := fn(n, ev); err != nil {
			return err
		}
	}
}

// firstByte peeks at the first byte that is not white space.
func firstByte(br *bufio.Reader) (byte, error) {
	for i := 1; ; i++ {
		b, err := br.Peek(i)
		if len(b) < i {
			if err == io.EOF || err == nil {
				return 0, errors.New("the file is empty: want a CloudEvent, a LogEntry, a replay message or a JSON array of them")
			}
			return 0, err
		}
		switch c := b[i-1]; c {
		case ' ', '\t', '\r', '\n':
			if i > 4096 {
				return 0, errors.New("no JSON in the first 4 KiB")
			}
			continue
		default:
			return c, nil
		}
	}
}

// jsonProblem words a JSON syntax error for people: where, and what.
func jsonProblem(err error, dec *json.Decoder) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("the JSON ends early, at byte %d (a truncated file?)", dec.InputOffset())
	}
	return err.Error()
}

// jsonKind names the kind of a JSON value by its first byte.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
