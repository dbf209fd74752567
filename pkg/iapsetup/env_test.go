package iapsetup_test

import (
	run "cloud.google.com/go/run/apiv2"
	"context"
	"testing"
	"time"

	"github.com/iapguard/iapguard/emulator/cloudrun"
	"github.com/iapguard/iapguard/emulator/emulatortest"
	"github.com/iapguard/iapguard/internal/gcp"
)

// testEnv is a running emulator (emulatortest) with internal/gcp clients
// pointed at it, as the function points them (Options.EmulatorHost).
type testEnv struct {
	*emulatortest.Env
	Clients *gcp.Clients
	// User is a gRPC Cloud Run client on the same emulator, with the same
	// principal, for tests that change services behind the reconciler's
	// back (iapguard's own Cloud Run client is REST, Clients.Run).
	User *run.ServicesClient
}

// envOptions adjust startEnv.
type envOptions struct {
	// Run configures the Cloud Run surface (LRO mode).
	Run cloudrun.Options
	// Client adjusts the client options before gcp.NewClients.
	Client func(*gcp.Options)
}

// startEnv starts an emulator and clients that live until the test ends.
func startEnv(t testing.TB, o envOptions) *testEnv {
	t.Helper()
	e := emulatortest.Start(t, emulatortest.Options{Run: o.Run})
	co := gcp.Options{EmulatorHost: e.Addr, Principal: emulatortest.Principal, OperationTimeout: 10 * time.Second, PollInterval: time.Millisecond, RecordKey: emulatortest.RecordKey}
	if o.Client != nil {
		o.Client(&co)
	}
	cl, err := gcp.NewClients(context.Background(), co)
	if err != nil {
		t.Fatalf("gcp.NewClients: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	rc, err := run.NewServicesClient(context.Background(), gcp.EmulatorGRPCOptions(e.Addr, emulatortest.Principal)...)
	if err != nil {
		t.Fatalf("run.NewServicesClient: %v", err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return &testEnv{Env: e, Clients: cl, User: rc}
}
