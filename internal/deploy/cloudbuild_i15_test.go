package deploy

import (
	"slices"
	"testing"
)

// TestCloudBuildDayOne: the gcloud steps use the current image name
// (google-cloud-cli; cloud-sdk is the legacy name), and the scope secret
// reaches the steps that enable Secret Manager and deploy the function.
func TestCloudBuildDayOne(t *testing.T) {
	b := loadCloudBuild(t)
	if got, want := b.Substitutions["_GCLOUD_IMAGE"], "gcr.io/google.com/cloudsdktool/google-cloud-cli:slim"; got != want {
		t.Errorf("_GCLOUD_IMAGE = %q, want %q", got, want)
	}
	if _, ok := b.Substitutions["_SCOPE_SECRET"]; !ok {
		t.Error("no _SCOPE_SECRET substitution")
	}
	for _, id := range []string{"apis", "service"} {
		i := slices.IndexFunc(b.Steps, func(s cbStep) bool { return s.ID == id })
		if i < 0 {
			t.Fatalf("no step %s", id)
		}
		if !slices.Contains(b.Steps[i].Env, "DEPLOY_SCOPE_SECRET=${_SCOPE_SECRET}") {
			t.Errorf("step %s does not get DEPLOY_SCOPE_SECRET", id)
		}
	}
}
