// Package core holds the state and machinery shared by every API surface of
// the emulator: the project table, per-method call accounting, fault
// injection (latency, error rates, quotas, forced etag races), the caller
// identity and the audit log that every mutation writes to.
//
// API surfaces (cloudrun, compute, serviceusage, iapapi, logging) receive a
// *Core and must, for every call they serve:
//   - call Begin(ctx, method) first and return its error as-is when non-nil
//     (gRPC surfaces get this for free from the server interceptor installed by
//     the emulator package; REST surfaces call BeginHTTP);
//   - record one audit entry per accepted mutation with Audit.Record.
package core

import (
	"log/slog"
	"time"
)

// Core is shared by all API surfaces of one emulator instance.
type Core struct {
	Projects *Projects
	Stats    *Stats
	Faults   *Faults
	Audit    *AuditLog
	// Accounts is the directory of service accounts IAM policy writes
	// check members against.
	Accounts *Accounts
	// DefaultPrincipal is the caller identity recorded in audit entries when
	// the request does not name one (see PrincipalHeader).
	DefaultPrincipal string
	Log              *slog.Logger
	now              func() time.Time
}

// New returns a Core with the given projects and default principal.
func New(principal string, projects ...Project) *Core {
	if principal == "" {
		principal = DefaultPrincipal
	}
	c := &Core{
		Projects:         NewProjects(projects...),
		Stats:            NewStats(),
		Faults:           NewFaults(),
		DefaultPrincipal: principal,
		Log:              slog.New(slog.DiscardHandler),
		now:              time.Now,
	}
	c.Audit = newAuditLog(c)
	c.Accounts = newAccounts(c)
	return c
}

// Now returns the emulator's current time.
func (c *Core) Now() time.Time { return c.now() }

// SetNow replaces the emulator's clock (tests).
func (c *Core) SetNow(f func() time.Time) { c.now = f }

// DefaultPrincipal is recorded as the caller when nobody else is named.
const DefaultPrincipal = "developer@example.com"
