package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// docReplayExamples returns the JSON examples of docs/replay-message.md.
func docReplayExamples(f *testing.F) [][]byte {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "replay-message.md"))
	if err != nil {
		f.Fatalf("reading the replay message documentation: %v", err)
	}
	var out [][]byte
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(b, -1) {
		out = append(out, bytes.TrimSpace(m[1]))
	}
	for _, m := range regexp.MustCompile(`--message='([^']*)'`).FindAllSubmatch(b, -1) {
		out = append(out, m[1])
	}
	if len(out) < 4 {
		f.Fatalf("found %d examples in docs/replay-message.md, want at least 4", len(out))
	}
	return out
}

// FuzzReplayMessage: whatever the bytes, ParseReplayMessage does not panic;
// it either rejects them as malformed or returns a message that is valid,
// names only concrete resources, survives a round trip, is decoded the
// same way when it arrives through Eventarc from the replay topic, and
// selects no more than the input asked for (no widening).
func FuzzReplayMessage(f *testing.F) {
	for _, ex := range docReplayExamples(f) {
		f.Add(ex)
	}
	for _, s := range replaySeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"version":1,"project":"p","region":"r","servce":"s"}`,
		`{"version":1,"project":"p","region":"-","service":"s"}`,
		`{"version":1,"project":"p/../q","region":"r"}`,
		`{"version":1,"project":"p","region":"r","service":"s"} {}`,
		`{"version":1.0,"project":"123456789012","region":"r","service":"s","requestedBy":"a@b"}`,
		`{"Version":1,"PROJECT":"p","Region":"r"}`,
		`[{"version":1,"project":"p"}]`,
		`{"version":1,"project":"p","service":"s"}`,
		`{"version":1,"project":"p","region":"r","service":null}`,
		"{\"version\":1,\"project\":\"p\\u002fq\"}",
		`{"version":1,"project":"p","region":"r","service":"billing","service":""}`,
		"{\"version\":1,\"project\":\"p\",\"region\":\"r\",\"service\":\"s\",\"\u017fervice\":\"\"}",
	} {
		f.Add([]byte(s))
	}
	for _, e := range sampleEntries(f)[:2] {
		f.Add(e) // log entries are not replay messages
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseReplayMessage(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			checkReplayPathAgrees(t, data, nil)
			return
		}
		if verr := m.Validate(); verr != nil {
			t.Fatalf("accepted a message that does not validate: %+v: %v", m, verr)
		}
		for what, v := range map[string]string{"project": m.Project, "region": m.Region, "service": m.Service} {
			if strings.ContainsAny(v, "/ *") || v == "-" || v == "_" {
				t.Fatalf("accepted %s %q, which is not a concrete name", what, v)
			}
		}
		tg := m.Target()
		if (tg.Kind == TargetService) != (m.Service != "") || tg.Project != m.Project || tg.Region != m.Region {
			t.Fatalf("target %+v does not match message %+v", tg, m)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseReplayMessage(b)
		if err != nil {
			t.Fatalf("round trip of %+v: %v", m, err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("round trip changed the message (-first +again):\n%s", diff)
		}
		checkNoWidening(t, data, m)
		checkReplayPathAgrees(t, data, &m)
	})
}

// checkNoWidening: when the object names a service or region with a
// non-empty string value, the parsed message keeps one, so a replay cannot
// silently select more than was asked for. An accepted object never gives
// a member twice (in any letter case): encoding/json would keep the last
// one, so {"service":"billing","service":""} would select the whole region.
func checkNoWidening(t *testing.T, data []byte, m ReplayMessage) {
	t.Helper()
	members, dup := topMembers(data)
	if dup {
		t.Fatalf("accepted %q, which gives a member more than once", data)
	}
	for k, v := range members {
		var s string
		if json.Unmarshal(v, &s) != nil || s == "" {
			continue
		}
		switch {
		case strings.EqualFold(k, "service") && m.Service == "":
			t.Fatalf("service %q was asked for but the message selects %s", s, m.Target())
		case strings.EqualFold(k, "region") && m.Region == "":
			t.Fatalf("region %q was asked for but the message selects %s", s, m.Target())
		}
	}
}

// topMembers returns the members of the JSON object data, and whether a
// name occurs twice ignoring case (as encoding/json matches names: simple
// Unicode case folding, the same as strings.EqualFold).
func topMembers(data []byte) (map[string]json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	out := map[string]json.RawMessage{}
	seen := map[string]bool{}
	dup := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out, dup
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return out, dup
		}
		for prev := range seen {
			if strings.EqualFold(prev, k) {
				dup = true
			}
		}
		seen[k] = true
		out[k] = v
	}
	return out, dup
}

// checkReplayPathAgrees: the same bytes published on the replay topic and
// delivered by Eventarc are decoded as ParseReplayMessage decides (want nil:
// rejected), unless they are a log entry (the log-sink path).
func checkReplayPathAgrees(t *testing.T, data []byte, want *ReplayMessage) {
	t.Helper()
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) == nil && hasKeyFold(probe, "protoPayload") {
		return
	}
	d, err := Decode(pubsubEvent(t, data))
	checkInvariant(t, d, err)
	if want == nil {
		if err == nil {
			t.Fatalf("ParseReplayMessage rejects %q but the replay path accepts it: %+v", data, d)
		}
		return
	}
	if err != nil {
		t.Fatalf("ParseReplayMessage accepts %q but the replay path rejects it: %v", data, err)
	}
	if diff := cmp.Diff([]Target{want.Target()}, d.Targets); diff != "" {
		t.Fatalf("replay path targets (-want +got):\n%s", diff)
	}
	if d.Trigger.Method != ReplayMethod || d.Trigger.Principal != want.RequestedBy {
		t.Fatalf("replay trigger %+v, want method %s and principal %q", d.Trigger, ReplayMethod, want.RequestedBy)
	}
}
