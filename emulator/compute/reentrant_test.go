package compute

import (
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/iapguard/iapguard/emulator/core"
)

// TestReentrantAuditListener: audit listeners run inside Record; one that
// polls the operation synchronously must neither deadlock nor see DONE
// before the last entry exists.
func TestReentrantAuditListener(t *testing.T) {
	e := newEnv(t)
	e.s.SetOperationDelay(-1)
	defer func(d time.Duration) { completionGrace = d }(completionGrace)
	completionGrace = 10 * time.Millisecond
	type seen struct {
		last   bool
		status string
		err    error
	}
	polls := make(chan seen, 4)
	stop := e.c.Audit.Listen(func(en *core.LogEntry) {
		if en.Operation == nil {
			return
		}
		op, err := e.svc.GlobalOperations.Get(projID, en.Operation.ID).Do()
		s := seen{last: en.Operation.Last, err: err}
		if op != nil {
			s.status = op.Status
		}
		polls <- s
	})
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		op, err := e.svc.BackendServices.Insert(projID, &compute.BackendService{Name: "r-bs"}).Do()
		if err != nil {
			t.Errorf("insert: %v", err)
			return
		}
		if _, err := e.svc.GlobalOperations.Wait(projID, op.Name).Do(); err != nil {
			t.Errorf("wait: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: insert+wait did not return")
	}
	for _, want := range []seen{{last: false, status: "RUNNING"}, {last: true, status: "RUNNING"}} {
		got := <-polls
		if got != want {
			t.Errorf("listener poll %+v, want %+v", got, want)
		}
	}
}
