// Command iapctl is iapguard's operator tool: the local sandbox and emulator,
// audits, one-off enforcement, replay, watching outcomes and diagnosis.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/iapguard/iapguard/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
