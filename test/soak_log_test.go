package test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSoakLogCounts checks the soak's log reader on its own: the soak only
// ever sees clean logs, so without this its credential scan and its retry
// counters could be broken and the soak would still pass.
func TestSoakLogCounts(t *testing.T) {
	type counts struct {
		ConflictRetries, Transient, Unavailable, Exhausted, Secrets int
	}
	for _, tc := range []struct {
		name  string
		lines []string
		want  counts
	}{
		{
			name: "writes with conflict retries",
			lines: []string{
				`{"message":"updated IAM policy","attempts":3}`,
				`{"message":"updated service","attempts":1}`,
				`{"message":"enabled IAP","attempts":2}`,
			},
			want: counts{ConflictRetries: 3},
		},
		{
			name:  "failed writes name their attempts",
			lines: []string{`{"message":"reconcile failed","error":"set IAM policy (after 4 attempts); patch backend (after 2 attempts)"}`},
			want:  counts{ConflictRetries: 4},
		},
		{
			name: "transient failures and injected errors",
			lines: []string{
				`{"message":"transient failure; returning an error so Eventarc redelivers","err":"rpc error: code = Unavailable desc = The service is currently unavailable."}`,
				`{"message":"reconcile failed","error":"Quota exceeded (injected)."}`,
			},
			want: counts{Transient: 1, Unavailable: 1, Exhausted: 1},
		},
		{
			name: "credential-like text",
			lines: []string{
				`{"message":"request","header":"Authorization: Bearer abcdefgh.ijkl"}`,
				`{"message":"token ya29.a0AfH6SMB"}`,
				`{"message":"jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}`,
				`{"message":"-----BEGIN PRIVATE KEY-----"}`,
			},
			want: counts{Secrets: 4},
		},
		{
			name:  "ordinary lines",
			lines: []string{`{"message":"reconciled","outcome":"compliant","principal":"bearer@example.com"}`, ``},
			want:  counts{},
		},
		{
			name:  "text that is not JSON is scanned too",
			lines: []string{`GET / Authorization: Bearer abcdefghijk`, `{"message":"updated IAM policy","attempts":`},
			want:  counts{Secrets: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l soakLog
			for _, line := range tc.lines {
				// Split each line over two writes: lines are counted only
				// once complete.
				b := []byte(line + "\n")
				if _, err := l.Write(b[:len(b)/2]); err != nil {
					t.Fatal(err)
				}
				if _, err := l.Write(b[len(b)/2:]); err != nil {
					t.Fatal(err)
				}
			}
			s := l.snapshot()
			got := counts{s.conflictRetries, s.transient, s.unavailable, s.exhausted, len(s.secrets)}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("counts (-want +got):\n%s", d)
			}
		})
	}
}
