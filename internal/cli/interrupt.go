package cli

// Interrupts (Ctrl-C, SIGTERM: cmd/iapctl cancels the command's context).
// A command that works through many services stops starting new work,
// lets the reconciles already under way finish (their writes are
// read-modify-writes, so stopping one midway leaves the service partly
// changed), prints what was done and ends with one line
// "interrupted: N done, M not started" and exit status 130, as shells
// report a command ended by SIGINT.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// ExitInterrupted is the exit status of a command stopped by an interrupt
// (128 + SIGINT, as shells report it).
const ExitInterrupted = 130

// interruptGrace bounds how long work already under way may go on after an
// interrupt before it is abandoned.
const interruptGrace = 20 * time.Second

// interruptedError ends a command that was interrupted.
type interruptedError struct {
	done, notStarted int
	// abandoned were under way and did not finish within interruptGrace.
	abandoned int
	// projects not scanned at all (--all-projects); their services are not
	// counted.
	projectsNotStarted int
	// unit names what is counted ("service(s)", "event(s)").
	unit string
	// more is added at the end (e.g. what replay did not read).
	more string
}

func (e *interruptedError) Error() string {
	msg := fmt.Sprintf("interrupted: %d done, %d not started", e.done, e.notStarted)
	if e.unit != "" {
		msg = fmt.Sprintf("interrupted: %d %s done, %d not started", e.done, e.unit, e.notStarted)
	}
	if e.projectsNotStarted > 0 {
		msg += fmt.Sprintf(", %d project(s) not scanned", e.projectsNotStarted)
	}
	if e.abandoned > 0 {
		msg += fmt.Sprintf("; %d stopped midway and may be partly changed: run the command again to finish them", e.abandoned)
	}
	return msg + e.more
}

// interrupted reports whether ctx was ended by an interrupt rather than by
// its deadline (--timeout).
func interrupted(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// isCtxErr reports whether err is a cancellation or a deadline.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// finishContext returns the context to run units of work in: it carries
// ctx's values and deadline (--timeout still applies), but an interrupt of
// ctx reaches it only interruptGrace later, so that work under way can
// finish cleanly. The caller checks ctx itself before starting each unit.
func finishContext(ctx context.Context) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if dl, ok := ctx.Deadline(); ok {
		var cancelDL context.CancelFunc
		work, cancelDL = context.WithDeadline(work, dl)
		prev := cancel
		cancel = func() { cancelDL(); prev() }
	}
	stop := context.AfterFunc(ctx, func() {
		if !interrupted(ctx) {
			cancel()
			return
		}
		t := time.NewTimer(interruptGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-work.Done():
		}
	})
	return work, func() {
		stop()
		cancel()
	}
}

// scanHooks let tests interrupt a scan at a known point (a context value,
// since tests run commands in parallel).
type scanHooks struct {
	parallelism int                           // reconciles at once (0: serviceParallelism)
	starting    func(ref iapsetup.ServiceRef) // called as a reconcile starts
	replaying   func(n int)                   // called as replay hands its nth input to the handler
}

type scanHooksKey struct{}

func hooksOf(ctx context.Context) scanHooks {
	h, _ := ctx.Value(scanHooksKey{}).(scanHooks)
	return h
}
