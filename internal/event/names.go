package event

import "strings"

// Name rules for the resources an event names. An event naming something
// Google could never have created (a service "a..b", a 128-character
// project) is malformed: it is rejected with the rule it breaks, without a
// single API call, rather than reconciled into a NOT_FOUND that ends
// failed. The checks are plain loops, not regexps: they run per event and
// cost nothing at process start (see internal/boundedre).

// MaxServiceName is the longest Cloud Run service name. The Cloud Run Admin
// API v2 (google.cloud.run.v2.CreateServiceRequest.service_id) documents
// that the id "must begin with letter, and cannot end with hyphen; must
// contain fewer than 50 characters"; Cloud Run service names are RFC 1035
// labels (lower-case letters, digits and hyphens).
const MaxServiceName = 49

// ServiceNameRule, ProjectRule, RegionRule and ComputeNameRule describe, for
// people, the names the Valid* functions accept.
const (
	ServiceNameRule = "a Cloud Run service name is 1 to 49 lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen"
	ProjectRule     = "a project is a project number (digits) or a project id: at most 30 lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen, optionally scoped by a domain (example.com:my-project)"
	RegionRule      = "a region looks like us-central1 or europe-west4: lower-case words joined by hyphens, ending in a digit"
	ComputeNameRule = "a Compute resource name is 1 to 63 lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen"
)

// rfc1035Label reports whether s is 1 to max lower-case letters, digits and
// hyphens, starting with a letter and not ending with a hyphen.
func rfc1035Label(s string, max int) bool {
	if s == "" || len(s) > max || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidServiceName reports whether s can name a Cloud Run service.
func ValidServiceName(s string) bool { return rfc1035Label(s, MaxServiceName) }

// ValidComputeName reports whether s can name a Compute backend service or
// network endpoint group (RFC 1035, at most 63 characters).
func ValidComputeName(s string) bool { return rfc1035Label(s, 63) }

// ValidProject reports whether s is a project number or a project id.
//
// Resource Manager's project ids are 6 to 30 characters; the lower bound
// is not checked because the emulator's test projects ("p1") are shorter,
// so a 2- to 5-character id still reaches the reconciler (which reports
// what it finds). Everything else is Google's rule: at most 30 characters,
// a lower-case letter first, lower-case letters, digits and hyphens, no
// trailing hyphen; a domain-scoped id ("example.com:my-project") has a
// domain of lower-case letters, digits, dots and hyphens before the colon.
// Project numbers are 1 to 20 digits, not starting with 0.
func ValidProject(s string) bool {
	if s != "" && s[0] >= '1' && s[0] <= '9' && len(s) <= 20 && strings.Trim(s, "0123456789") == "" {
		return true
	}
	if domain, id, ok := strings.Cut(s, ":"); ok {
		if !validDomain(domain) {
			return false
		}
		s = id
	}
	return rfc1035Label(s, 30)
}

// validDomain accepts the domain of a domain-scoped project id: dot-separated
// labels of lower-case letters, digits and hyphens, at most 253 characters.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ValidRegion reports whether s has the shape of a Google Cloud region:
// two or more hyphen-joined words of lower-case letters, the last followed
// by digits (us-central1, europe-west4, northamerica-northeast2), at most
// 40 characters.
func ValidRegion(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	digits := strings.TrimRight(s, "0123456789")
	if len(digits) == len(s) {
		return false
	}
	words := strings.Split(digits, "-")
	if len(words) < 2 {
		return false
	}
	for _, w := range words {
		if w == "" || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			return false
		}
	}
	return true
}
