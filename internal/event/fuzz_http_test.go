package event

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
)

// headerBlock renders e's attributes as the binary-mode HTTP headers
// Eventarc sends, one "Name: value" per line.
func headerBlock(e cloudevents.Event) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	line("ce-specversion", e.SpecVersion())
	line("ce-type", e.Type())
	line("ce-source", e.Source())
	line("ce-id", e.ID())
	if !e.Time().IsZero() {
		line("ce-time", e.Time().Format(time.RFC3339Nano))
	}
	line("ce-subject", e.Subject())
	line("ce-dataschema", e.DataSchema())
	for k, v := range e.Extensions() {
		line("ce-"+k, fmt.Sprint(v))
	}
	line("Content-Type", e.DataContentType())
	return b.String()
}

// requestFrom builds the POST Eventarc would make from a header block and a
// body. Lines that are not "Name: value" are ignored.
func requestFrom(headers string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	for _, l := range strings.Split(headers, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) == "" {
			continue
		}
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return r
}

// FuzzFromHTTP: whatever headers and body reach the function, reading the
// CloudEvent and deciding what it asks for does not panic and fails only
// with ErrMalformed; and the headers cannot redirect work — when an
// audit-log event is accepted, its decision is exactly the one its LogEntry
// payload alone yields (extension attributes may only make it fail).
func FuzzFromHTTP(f *testing.F) {
	for _, entry := range sampleEntries(f) {
		if e, err := NewAuditLogEvent(entry); err == nil {
			f.Add(headerBlock(e), entry)
			// The same event in structured content mode.
			if s, err := e.MarshalJSON(); err == nil {
				f.Add("Content-Type: application/cloudevents+json; charset=utf-8\n", s)
			}
		}
		e := pubsubEvent(f, entry)
		f.Add(headerBlock(e), e.Data())
	}
	for _, r := range replaySeeds {
		e := pubsubEvent(f, []byte(r))
		f.Add(headerBlock(e), e.Data())
	}
	synth := mustJSON(f, synthEntry(RunServiceName, RunV2UpdateService, "projects/p1/locations/us-central1/services/hello"))
	if e, err := NewAuditLogEvent(synth); err == nil {
		f.Add(headerBlock(e), synth)
		// An extension that contradicts the payload.
		f.Add(strings.Replace(headerBlock(e), "services/hello", "services/other", 1), synth)
	}
	f.Add("Content-Type: text/plain\n", []byte("hello"))
	f.Fuzz(func(t *testing.T, headers string, body []byte) {
		ev, err := FromHTTP(requestFrom(headers, body))
		if err != nil {
			checkInvariant(t, Decision{}, err)
			return
		}
		d, err := Decode(ev)
		checkInvariant(t, d, err)
		if err != nil || ev.Type() != AuditLogWritten {
			return
		}
		alone, err := DecodeLogEntry(ev.Data())
		if err != nil {
			t.Fatalf("the event is accepted but its LogEntry alone is not: %v", err)
		}
		ignoreTrigger := cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Trigger" }, cmp.Ignore())
		if diff := cmp.Diff(alone, d, ignoreTrigger); diff != "" {
			t.Fatalf("the headers changed the decision (-payload alone +event):\n%s", diff)
		}
	})
}
