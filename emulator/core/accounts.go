package core

import (
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Accounts is the emulator's directory of service accounts: what IAM
// consults when a SetIamPolicy names a serviceAccount: member.
//
// Google rejects a policy naming a service account that does not exist with
// 400 INVALID_ARGUMENT "Service account EMAIL does not exist." — and, IAM
// being eventually consistent, it keeps doing so for a while after the
// account was created (google-cloud-go issue 11482: SetIamPolicy right after
// a successful serviceAccounts.get still fails with InvalidArgument;
// terraform-provider-google issues 9969 and 18024, and
// cloud.google.com/iam/docs/overview#consistency). The emulator reproduces
// both: an account created through Create (Service Usage's
// generateServiceIdentity calls it) is visible to IAM only after the
// propagation window (SetPropagation; 0 by default).
//
// Which accounts exist:
//   - those added with Add (tests, the --service-account flag) — at once;
//   - those created with Create, once the window has passed;
//   - for every emulated project, the Compute default service account
//     NUMBER-compute@developer.gserviceaccount.com and the Cloud Run service
//     agent service-NUMBER@serverless-robot-prod.iam.gserviceaccount.com
//     (Google creates both when the Compute and Cloud Run APIs are enabled,
//     and the emulator serves both APIs).
//
// Every other serviceAccount: member does not exist. Where the emulator is
// kinder than Google: user:, group: and domain: members are not checked
// (Google rejects unknown users and groups too), and deleted: and
// principal:// members are accepted as written.
type Accounts struct {
	projects *Projects
	now      func() time.Time

	mu      sync.Mutex
	visible map[string]time.Time // lower-cased email → when IAM sees it
	window  time.Duration
}

func newAccounts(c *Core) *Accounts {
	return &Accounts{projects: c.Projects, now: c.Now, visible: map[string]time.Time{}}
}

// SetPropagation sets how long after Create an account stays invisible to
// IAM policy writes.
func (a *Accounts) SetPropagation(d time.Duration) {
	a.mu.Lock()
	a.window = max(d, 0)
	a.mu.Unlock()
}

// Add registers service accounts that exist already (visible at once).
func (a *Accounts) Add(emails ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range emails {
		a.visible[strings.ToLower(e)] = time.Time{}
	}
}

// Create records that an account was created now: IAM sees it after the
// propagation window. Creating an account that exists changes nothing.
func (a *Accounts) Create(email string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := strings.ToLower(email)
	if _, ok := a.visible[k]; !ok {
		a.visible[k] = a.now().Add(a.window)
	}
}

// Exists reports whether IAM sees the service account now.
func (a *Accounts) Exists(email string) bool {
	k := strings.ToLower(email)
	a.mu.Lock()
	at, ok := a.visible[k]
	a.mu.Unlock()
	if ok {
		return !a.now().Before(at)
	}
	local, domain, _ := strings.Cut(k, "@")
	var number string
	switch domain {
	case "developer.gserviceaccount.com":
		number, ok = strings.CutSuffix(local, "-compute")
	case "serverless-robot-prod.iam.gserviceaccount.com":
		number, ok = strings.CutPrefix(local, "service-")
	}
	if !ok || !positiveNumber(number) {
		return false
	}
	_, ok = a.projects.Lookup(number)
	return ok
}

// CheckMembers returns Google's 400 INVALID_ARGUMENT for the first
// serviceAccount: member IAM does not see, nil when there is none.
func (a *Accounts) CheckMembers(members ...string) *Error {
	for _, m := range members {
		email, ok := strings.CutPrefix(m, "serviceAccount:")
		if !ok || a.Exists(email) {
			continue
		}
		// The text is Google's (google-cloud-go issue 11482,
		// terraform-provider-google issue 9969).
		return &Error{Code: codes.InvalidArgument, Reason: "badRequest",
			Message: "Service account " + email + " does not exist."}
	}
	return nil
}
