package iapauth

import (
	"fmt"
	"strconv"
)

// The aud claim of an IAP assertion names the IAP-protected resource, in one
// of the forms below. The audience always uses the project NUMBER, never the
// project ID, and the backend service's numeric ID, never its name.
//
// Google's "Securing your app with signed headers" page
// (https://cloud.google.com/iap/docs/signed-headers-howto, "Verifying the JWT
// payload") lists:
//   - Compute Engine and GKE (load balancer backend service):
//     /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID
//   - Cloud Run with IAP enabled on the service itself:
//     /projects/PROJECT_NUMBER/locations/REGION/services/SERVICE_NAME
//   - App Engine: /projects/PROJECT_NUMBER/apps/PROJECT_ID (not used here).
//
// The regional backend service form replaces global/ with regions/REGION/,
// following the backend service's own resource path. Google's page does not
// spell it out in the copy we could consult; if a regional load balancer's
// tokens are rejected with an audience error, the log line prints the aud the
// token carried, which is the value to configure.

// BackendServiceAudience is the aud IAP puts in assertions for a global
// external Application Load Balancer backend service (the ID is
// compute.BackendService.Id; `gcloud compute backend-services describe NAME
// --global --format='value(id)'`).
func BackendServiceAudience(projectNumber int64, backendID uint64) string {
	return "/projects/" + strconv.FormatInt(projectNumber, 10) +
		"/global/backendServices/" + strconv.FormatUint(backendID, 10)
}

// RegionalBackendServiceAudience is the aud for a regional backend service
// (regional external or internal Application Load Balancer).
func RegionalBackendServiceAudience(projectNumber int64, region string, backendID uint64) string {
	return fmt.Sprintf("/projects/%d/regions/%s/backendServices/%d", projectNumber, region, backendID)
}

// CloudRunAudience is the aud for Cloud Run's built-in IAP (iapEnabled on the
// service, no load balancer in front).
func CloudRunAudience(projectNumber int64, region, service string) string {
	return fmt.Sprintf("/projects/%d/locations/%s/services/%s", projectNumber, region, service)
}
