package event

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sampleEntries returns the LogEntry of every real sample (the data member
// of whole-CloudEvent samples).
func sampleEntries(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join(auditlogDir(f), "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no real samples: %v", err)
	}
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if strings.HasPrefix(filepath.Base(p), "cloudevent-") {
			var env struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(b, &env); err != nil {
				f.Fatal(err)
			}
			b = env.Data
		}
		out = append(out, b)
	}
	return out
}

var replaySeeds = []string{
	`{"version":1,"project":"p1","region":"us-central1","service":"hello"}`,
	`{"version":1,"project":"p1"}`,
	`{"version":2,"project":"p1"}`,
}

// FuzzDecode: whatever the type and data, Decode does not panic, and either
// returns an ErrMalformed error or a decision with exactly one of Targets,
// Compute and Skip.
func FuzzDecode(f *testing.F) {
	for _, e := range sampleEntries(f) {
		f.Add(AuditLogWritten, e)
		ev := pubsubEvent(f, e)
		f.Add(MessagePublished, ev.Data())
	}
	for _, r := range replaySeeds {
		ev := pubsubEvent(f, []byte(r))
		f.Add(MessagePublished, ev.Data())
	}
	f.Add(AuditLogWritten, mustJSON(f, synthEntry(ComputeServiceName, "v1.compute.backendServices.patch", "projects/p1/global/backendServices/web", withOp(false, true))))
	f.Add(AuditLogWritten, mustJSON(f, synthEntry(RunServiceName, RunV1ReplaceService, "namespaces/p1/services/s", withPayload("request", obj{"name": "projects/p1/locations/r1/services/s"}))))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e := rawAuditEvent(data)
		e.SetType(typ)
		d, err := Decode(e)
		checkInvariant(t, d, err)
	})
}

// FuzzDecodeLogEntry: DecodeLogEntry does not panic, keeps the decision
// invariant, and agrees with the Eventarc and log-sink paths.
func FuzzDecodeLogEntry(f *testing.F) {
	for _, e := range sampleEntries(f) {
		f.Add(e)
	}
	f.Add(mustJSON(f, synthEntry(ComputeServiceName, "beta.compute.regionNetworkEndpointGroups.insert", "projects/1/regions/r/networkEndpointGroups/n", withOp(true, true))))
	f.Add(mustJSON(f, synthEntry(RunServiceName, RunV2SetIamPolicy, "projects/p/locations/r/services/s", withStatus(5, "NOT_FOUND"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeLogEntry(data)
		checkInvariant(t, d, err)
		viaEventarc, err2 := Decode(rawAuditEvent(data))
		checkInvariant(t, viaEventarc, err2)
		if errors.Is(err, ErrMalformed) != errors.Is(err2, ErrMalformed) {
			t.Fatalf("DecodeLogEntry error %v, Eventarc path error %v", err, err2)
		}
		if err != nil {
			return
		}
		viaSink, err3 := Decode(pubsubEvent(t, data))
		if err3 != nil {
			t.Fatalf("log-sink path error %v for an entry DecodeLogEntry accepts", err3)
		}
		for name, other := range map[string]Decision{"eventarc": viaEventarc, "log-sink": viaSink} {
			if diff := cmp.Diff(d, other, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Trigger" }, cmp.Ignore())); diff != "" {
				t.Fatalf("%s path disagrees (-log-entry +%s):\n%s", name, name, diff)
			}
		}
	})
}
