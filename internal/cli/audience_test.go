package cli

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/compute/v1"

	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/pkg/iapauth"
)

func TestAudience(t *testing.T) {
	t.Parallel()
	ts := startStack(t, false)
	ctx := t.Context()
	const number = 123456789012

	// A service behind a regional backend service.
	if _, err := ts.clients.CreateService(ctx, testProject, testRegion, demo.ServiceSpec{Name: "internal-api", Labels: map[string]string{"iap": "enabled"}}); err != nil {
		t.Fatal(err)
	}
	cs := ts.clients.Compute
	op, err := cs.RegionNetworkEndpointGroups.Insert(testProject, testRegion, &compute.NetworkEndpointGroup{
		Name: "internal-api-neg", NetworkEndpointType: "SERVERLESS", CloudRun: &compute.NetworkEndpointGroupCloudRun{Service: "internal-api"},
	}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RegionOperations.Wait(testProject, testRegion, op.Name).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	neg, err := cs.RegionNetworkEndpointGroups.Get(testProject, testRegion, "internal-api-neg").Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	op, err = cs.RegionBackendServices.Insert(testProject, testRegion, &compute.BackendService{
		Name: "internal-api-backend", LoadBalancingScheme: "INTERNAL_MANAGED", Protocol: "HTTPS",
		Backends: []*compute.Backend{{Group: neg.SelfLink}},
	}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RegionOperations.Wait(testProject, testRegion, op.Name).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}

	id := func(region, name string) uint64 {
		t.Helper()
		_, id, ok := ts.st.Emu.Compute.LookupBackendService(testProject, region, name)
		if !ok {
			t.Fatalf("backend service %s/%s not found", region, name)
		}
		return id
	}
	for _, tc := range []struct {
		service, project string
		want             []audienceItem
	}{
		{"storefront", testProject, []audienceItem{{
			Audience: iapauth.BackendServiceAudience(number, id("", "storefront-backend")), Kind: "global-backend-service",
			BackendService: "projects/demo-project/global/backendServices/storefront-backend",
		}}},
		{"internal-api", testProject, []audienceItem{{
			Audience: iapauth.RegionalBackendServiceAudience(number, testRegion, id(testRegion, "internal-api-backend")), Kind: "regional-backend-service",
			BackendService: "projects/demo-project/regions/us-central1/backendServices/internal-api-backend",
		}}},
		{"reports", testProject, []audienceItem{{Audience: "/projects/123456789012/locations/us-central1/services/reports", Kind: "cloud-run"}}},
		// The project number works as --project too.
		{"reports", testNumber, []audienceItem{{Audience: "/projects/123456789012/locations/us-central1/services/reports", Kind: "cloud-run"}}},
	} {
		t.Run(tc.service+"/"+tc.project, func(t *testing.T) {
			out := ts.mustRun(t, ExitOK, "audience", tc.service, "--project", tc.project, "--region", testRegion, "-o", "json")
			var rep audienceReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.ProjectNumber != number {
				t.Errorf("projectNumber = %d", rep.ProjectNumber)
			}
			if diff := cmp.Diff(tc.want, rep.Audiences); diff != "" {
				t.Errorf("audiences (-want +got):\n%s", diff)
			}
		})
	}
	golden(t, "audience-reports.golden", ts.mustRun(t, ExitOK, "audience", "reports", "--project", testProject, "--region", testRegion))

	// Once enforced, IAP is on where the audience comes from.
	ts.mustRun(t, ExitOK, "enforce", "reports", "--project", testProject, "--region", testRegion)
	out := ts.mustRun(t, ExitOK, "audience", "reports", "--project", testProject, "--region", testRegion, "-o", "json")
	var rep audienceReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Audiences) != 1 || !rep.Audiences[0].IAPEnabled || rep.Mode != "direct" {
		t.Errorf("after enforce: %+v", rep)
	}
}
