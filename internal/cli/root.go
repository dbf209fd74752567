// Package cli implements iapctl's commands as values that tests run
// in-process: Main(ctx, args, stdin, stdout, stderr) → exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK = 0
	// ExitError: bad usage or an error that stopped the command.
	ExitError = 1
	// ExitNonCompliant: the command worked and found (or left) a labelled
	// service that is not compliant.
	ExitNonCompliant = 2
	// ExitInterrupted (130): see interrupt.go.
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// withCode makes the command exit with code; err (may be nil) is printed.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Main runs iapctl with args and returns the exit code. Errors are printed as
// one line on stderr, never a stack trace.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.WithValue(ctx, probedKey{}, new(sync.Map)))
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	var ie *interruptedError
	switch {
	case errors.As(err, &ie):
		fmt.Fprintln(stderr, "iapctl:", ie)
		return ExitInterrupted
	case errors.Is(ctx.Err(), context.Canceled) && causedByCancel(err):
		// Interrupted (Ctrl-C) in a command that has nothing to count: the
		// cancellation, not the errors it caused, is the news.
		fmt.Fprintln(stderr, "iapctl: interrupted")
		return ExitInterrupted
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(stderr, "iapctl:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "iapctl:", err)
	return ExitError
}

// causedByCancel reports whether err comes from a cancelled context (often
// flattened to text on its way up, hence the text checks).
func causedByCancel(err error) bool {
	msg := err.Error()
	return errors.Is(err, context.Canceled) || strings.Contains(msg, "context canceled") || strings.Contains(msg, "code = Canceled")
}

type streams struct {
	in       io.Reader
	out, err io.Writer
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	// Human output carries text others wrote: control characters are escaped.
	s := &streams{in: stdin, out: newEscaper(stdout), err: newEscaper(stderr)}
	root := &cobra.Command{
		Use:   "iapctl",
		Short: "Keep Cloud Run services labelled iap=enabled behind Identity-Aware Proxy",
		Long: `iapctl is iapguard's operator tool.

It talks to real Google Cloud through Application Default Credentials, or to
the local emulator when IAPGUARD_EMULATOR_HOST is set.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newEmulatorCmd(s), newSandboxCmd(s), newDeployCmd(s), newAuditCmd(s), newEnforceCmd(s),
		newReplayCmd(s), newWatchCmd(s), newDoctorCmd(s), newAudienceCmd(s))
	return root
}
