package core

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"google.golang.org/grpc/codes"
)

// Grantable is the set of predefined roles IAM lets a SetIamPolicy grant on
// one kind of resource: a role is grantable on a resource when it holds at
// least one permission that applies to it (cloud.google.com/iam/docs/
// roles-overview, "Role grants"; iam.roles.queryGrantableRoles). Basic roles
// (owner, editor, viewer) are grantable everywhere.
//
// Where the emulator differs: the sets list the predefined roles known to
// apply (not every role Google has that happens to carry one of the
// resource's permissions), and custom roles (projects/P/roles/R,
// organizations/O/roles/R) are accepted without checking that they exist.
type Grantable map[string]bool

// NewGrantable returns the set of the basic roles and roles.
func NewGrantable(roles ...string) Grantable {
	g := Grantable{"roles/owner": true, "roles/editor": true, "roles/viewer": true}
	for _, r := range roles {
		g[r] = true
	}
	return g
}

// Check returns Google's 400 INVALID_ARGUMENT for the first predefined role
// that is not grantable here, nil when there is none. The text is IAM's
// (terraform-provider-google issue 19803: "Role roles/... is not supported
// for this resource.").
func (g Grantable) Check(roles ...string) *Error {
	for _, r := range roles {
		if !strings.HasPrefix(r, "roles/") || g[r] {
			continue
		}
		return &Error{Code: codes.InvalidArgument, Reason: "badRequest",
			Message: "Role " + r + " is not supported for this resource."}
	}
	return nil
}

// WithCondRole is the role name IAM shows for a conditional binding in a
// policy read with a requested version below 3: the condition is dropped
// and the role becomes ROLE_withcond_HASH (cloud.google.com/iam/docs/
// policies#versions, "Policy versions": version-1 readers see the
// conditional bindings under a modified role name). Where the emulator
// differs: the hash is the first 20 hex digits of SHA-256 over the
// condition's expression, title and description; Google's is opaque.
func WithCondRole(role, expression, title, description string) string {
	h := sha256.Sum256([]byte(expression + "\x00" + title + "\x00" + description))
	return role + "_withcond_" + hex.EncodeToString(h[:])[:20]
}

// ErrV1OverConditions is IAM's refusal of a version-1 (or unversioned) write
// that carries an etag onto a policy holding conditional bindings: "any
// operation that ... removes any role binding ... from a policy that
// includes conditions must specify version 3"; only a blind write (no etag)
// may overwrite it (google.iam.v1.Policy.version). The wording is the
// emulator's: no recorded answer was found.
func ErrV1OverConditions() *Error {
	return &Error{Code: codes.InvalidArgument, Reason: "badRequest",
		Message: "The policy has conditional role bindings: a write that carries the etag must use policy version 3."}
}
