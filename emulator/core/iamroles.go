package core

import (
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
