package iapsetup

import (
	"fmt"
	"slices"
	"strings"

	"github.com/iapguard/iapguard/internal/boundedre"
	"github.com/iapguard/iapguard/pkg/iapsetup/access"
)

// Access: who may pass IAP (docs/access.md).
//
// A service labelled iap-access=NAME gets roles/iap.httpsResourceAccessor
// for the members of the access policy NAME on its IAP resource: each
// fronting backend service in load-balancer mode, Cloud Run's built-in IAP
// resource in direct mode. The policies are read, validated and looked up by
// pkg/iapsetup/access (Options.AccessPolicies).
//
// iapguard records the members it granted in the service annotation
// accessAnnotation and only ever removes members recorded there that the
// policy no longer lists; members anyone else granted are kept.
const (
	// accessAnnotation records, as a sorted comma-separated list, the members
	// iapguard granted roles/iap.httpsResourceAccessor on the service's IAP
	// resources. It is written in the same UpdateService call as the other
	// service fields, after the grants succeeded.
	accessAnnotation = "iapguard.dev/access-granted"
	// roleAccessor is the IAP-secured Web App User role.
	roleAccessor = "roles/iap.httpsResourceAccessor"
	// maxAccessAnnotation bounds the annotation value iapguard writes.
	maxAccessAnnotation = 64 << 10
)

// containsMember reports whether ms holds m, ignoring case (IAM treats
// emails and domains case-insensitively).
func containsMember(ms []string, m string) bool {
	return slices.ContainsFunc(ms, func(x string) bool { return strings.EqualFold(x, m) })
}

// parseGranted reads accessAnnotation: valid, non-public members only;
// anything else (hand edits) is ignored and dropped on the next write.
func parseGranted(v string) []string {
	var out []string
	for _, m := range strings.Split(v, ",") {
		if c, err := access.CanonicalMember(strings.TrimSpace(m)); err == nil {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out) // canonical members: equal if the same
}

// projectNumberFromAgent reads the project number from the IAP service
// agent's email (service-NUMBER@gcp-sa-iap.iam.gserviceaccount.com). The IAP
// API names resources by project number; this avoids a Resource Manager
// call.
func projectNumberFromAgent(agent string) (string, bool) {
	m := agentRE.FindStringSubmatch(strings.ToLower(agent))
	if m == nil {
		return "", false
	}
	return m[1], true
}

var agentRE = boundedre.MustCompile(`^service-([0-9]+)@gcp-sa-iap\.iam\.gserviceaccount\.com$`)

// iapResource is an IAP resource whose IAM policy decides who may pass.
type iapResource struct {
	// Name is the IAP API resource name.
	Name string
	// What describes it for people: "backend service web" or "Cloud Run
	// service hello".
	What string
	// gcloud are the flags of gcloud iap web add-iam-policy-binding that
	// address it.
	gcloud string
}

// projectIAPResource returns projects/NUMBER/iap_web, the project-wide IAP
// resource: a grant there lets a member through every IAP-secured web
// resource of the project.
func projectIAPResource(number string) string { return "projects/" + number + "/iap_web" }

// cloudRunIAPResource returns Cloud Run's built-in IAP resource for a
// service: projects/NUMBER/iap_web/cloud_run-REGION/services/NAME.
func cloudRunIAPResource(number string, ref ServiceRef) iapResource {
	return iapResource{
		Name:   projectIAPResource(number) + "/cloud_run-" + ref.Region + "/services/" + ref.Name,
		What:   "Cloud Run service " + ref.Name,
		gcloud: fmt.Sprintf("--resource-type=cloud-run --service=%s --region=%s --project=%s", ref.Name, ref.Region, ref.Project),
	}
}

// backendIAPResource returns the IAP resource of a backend service:
// projects/NUMBER/iap_web/compute[-REGION]/services/ID (the numeric id when
// known, else the name; the IAP API accepts both).
func backendIAPResource(number string, b BackendService) iapResource {
	typ, region := "compute", ""
	if b.Ref.Region != "" {
		typ, region = "compute-"+b.Ref.Region, " --region="+b.Ref.Region
	}
	id := b.ID
	if id == "" || id == "0" {
		id = b.Ref.Name
	}
	return iapResource{
		Name:   projectIAPResource(number) + "/" + typ + "/services/" + id,
		What:   "backend service " + b.Ref.Name,
		gcloud: fmt.Sprintf("--resource-type=backend-services --service=%s%s --project=%s", b.Ref.Name, region, b.Ref.Project),
	}
}
