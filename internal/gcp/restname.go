package gcp

import (
	"fmt"
	"strings"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// checkRESTName refuses a resource name the REST clients would not send as
// one path: the discovery-based clients expand names such as
// projects/P/secrets/S/versions/V as {+name}, which leaves reserved
// characters (? # / :) as they are, so a name carrying them would change
// the request's path or query. Every segment must be a non-empty run of
// letters, digits, - _ . (not "." or ".."). The names iapguard sends are
// validated where they enter (configuration, events, records); this keeps
// the adapters safe on their own. The error wraps iapsetup.ErrPermanent.
func checkRESTName(name string) error {
	for seg := range strings.SplitSeq(name, "/") {
		ok := seg != "" && seg != "." && seg != ".."
		for i := 0; ok && i < len(seg); i++ {
			c := seg[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		}
		if !ok {
			return fmt.Errorf("resource name %q is not a plain resource path: %w", name, iapsetup.ErrPermanent)
		}
	}
	return nil
}

// checkRESTID is checkRESTName for one segment (a project or folder id).
func checkRESTID(id string) error {
	if strings.Contains(id, "/") {
		return fmt.Errorf("resource id %q holds a '/': %w", id, iapsetup.ErrPermanent)
	}
	return checkRESTName(id)
}
