package emulator_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	cloudasset "google.golang.org/api/cloudasset/v1"
	crm "google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	secretmanager "google.golang.org/api/secretmanager/v1"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
)

// The REST surfaces of Cloud Asset, Secret Manager and Resource Manager
// v3, driven by Google's discovery-based clients (what iapguard's function
// uses): JSON field names, paging, errors with Google's HTTP statuses, and
// each call counted under its gRPC method key.
func TestRESTSurfacesWithOfficialClients(t *testing.T) {
	t.Parallel()
	emu, err := emulator.New(emulator.Options{
		Projects: []core.Project{{ID: "p1", Number: 11, Parent: "folders/10"}, {ID: "p2", Number: 22, Parent: "folders/10"}},
		Folders:  []core.Folder{{ID: "10", Parent: "organizations/1"}, {ID: "20", Parent: "organizations/1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	ctx := context.Background()
	opts := []option.ClientOption{option.WithEndpoint("http://" + emu.Addr() + "/"), option.WithoutAuthentication()}
	httpCode := func(err error) int {
		var ge *googleapi.Error
		if !errors.As(err, &ge) {
			return 0
		}
		return ge.Code
	}

	// Secret Manager: payload as base64 with its CRC-32C, the name in
	// project-number form; a missing version is 404.
	sm, err := secretmanager.NewService(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("signing key \x00\xff")
	if _, err := emu.SecretManager.Put("p1", "k", payload); err != nil {
		t.Fatal(err)
	}
	got, err := sm.Projects.Secrets.Versions.Access("projects/p1/secrets/k/versions/latest").Do()
	if err != nil {
		t.Fatalf("access: %v", err)
	}
	data, err := base64.StdEncoding.DecodeString(got.Payload.Data)
	if err != nil || string(data) != string(payload) {
		t.Errorf("payload = %q (%v), want %q", data, err, payload)
	}
	if want := int64(crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli))); got.Payload.DataCrc32c != want {
		t.Errorf("dataCrc32c = %d, want %d", got.Payload.DataCrc32c, want)
	}
	if got.Name != "projects/11/secrets/k/versions/1" {
		t.Errorf("name = %q, want projects/11/secrets/k/versions/1", got.Name)
	}
	if _, err := sm.Projects.Secrets.Versions.Access("projects/p1/secrets/k/versions/9").Do(); httpCode(err) != http.StatusNotFound {
		t.Errorf("missing version: %v, want 404", err)
	}

	// Resource Manager v3: every page of a search and of a folder list;
	// an unknown project is 403 as Google answers it.
	rm, err := crm.NewService(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	pages := 0
	if err := rm.Projects.Search().Query("parent:folders/10").PageSize(1).Pages(ctx, func(r *crm.SearchProjectsResponse) error {
		pages++
		for _, p := range r.Projects {
			ids = append(ids, p.ProjectId+"="+p.Name+"<"+p.Parent+" "+p.State)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "p1=projects/11<folders/10 ACTIVE,p2=projects/22<folders/10 ACTIVE"; strings.Join(ids, ",") != want || pages < 2 {
		t.Errorf("search = %v in %d pages, want %s in 2 or more", ids, pages, want)
	}
	var folders []string
	if err := rm.Folders.List().Parent("organizations/1").PageSize(1).Pages(ctx, func(r *crm.ListFoldersResponse) error {
		for _, f := range r.Folders {
			folders = append(folders, f.Name)
		}
		return nil
	}); err != nil || strings.Join(folders, ",") != "folders/10,folders/20" {
		t.Errorf("folders = %v, %v; want folders/10, folders/20", folders, err)
	}
	if p, err := rm.Projects.Get("projects/22").Do(); err != nil || p.ProjectId != "p2" {
		t.Errorf("get projects/22 = %+v, %v", p, err)
	}
	if f, err := rm.Folders.Get("folders/10").Do(); err != nil || f.Parent != "organizations/1" {
		t.Errorf("get folders/10 = %+v, %v", f, err)
	}
	if _, err := rm.Projects.Get("projects/nope").Do(); httpCode(err) != http.StatusForbidden {
		t.Errorf("unknown project: %v, want 403", err)
	}

	// Cloud Asset: an empty search and an unsupported asset type (400).
	ca, err := cloudasset.NewService(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ca.V1.SearchAllResources("projects/p1").AssetTypes("run.googleapis.com/Service").Query("labels.iap:*").Do(); err != nil || len(r.Results) != 0 {
		t.Errorf("search = %+v, %v; want nothing", r, err)
	}
	if _, err := ca.V1.SearchAllResources("projects/p1").AssetTypes("compute.googleapis.com/Instance").Do(); httpCode(err) != http.StatusBadRequest {
		t.Errorf("unsupported asset type: %v, want 400", err)
	}

	// A query parameter the method does not take is refused as Google's
	// transcoding refuses it.
	resp, err := http.Get("http://" + emu.Addr() + "/v3/projects:search?bogus=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `Unknown name \"bogus\"`) {
		t.Errorf("unknown parameter: %d %s", resp.StatusCode, body)
	}

	calls := emu.Core.Stats.Snapshot().Calls
	for m, n := range map[string]int64{
		"google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion": 2,
		"google.cloud.resourcemanager.v3.Projects.SearchProjects":                2,
		"google.cloud.resourcemanager.v3.Folders.ListFolders":                    2,
		"google.cloud.resourcemanager.v3.Projects.GetProject":                    2,
		"google.cloud.resourcemanager.v3.Folders.GetFolder":                      1,
		"google.cloud.asset.v1.AssetService.SearchAllResources":                  2,
	} {
		if calls[m] < n {
			t.Errorf("%s counted %d times, want at least %d", m, calls[m], n)
		}
	}
}

// The APIs served through Google's transcoding answer REST errors with
// code, message and status and no "errors" array, while Compute keeps the
// older shape with it (recorded real traffic: every 4xx of
// run.googleapis.com/v2, pubsub.googleapis.com/v1, cloudasset,
// secretmanager and cloudresourcemanager in k8s-config-connector
// v1.155.1's recordings, against compute.googleapis.com's 698 404s with
// errors[]). The error's text the discovery clients print follows the
// shape: "googleapi: Error 404: MESSAGE" without ", notFound".
func TestRESTErrorShapes(t *testing.T) {
	t.Parallel()
	emu, err := emulator.New(emulator.Options{Projects: []core.Project{{ID: "p1", Number: 11}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		errorsArray              bool
	}{
		{"cloud run v2 get", http.MethodGet, "/v2/projects/p1/locations/us-central1/services/missing", "", http.StatusNotFound, false},
		{"cloud run v2 patch", http.MethodPatch, "/v2/projects/p1/locations/us-central1/services/missing?updateMask=labels", "{}", http.StatusNotFound, false},
		{"pubsub publish", http.MethodPost, "/v1/projects/p1/topics/missing:publish", `{"messages":[{"data":"eA=="}]}`, http.StatusNotFound, false},
		{"secret manager access", http.MethodGet, "/v1/projects/p1/secrets/missing/versions/1:access", "", http.StatusNotFound, false},
		{"resource manager get", http.MethodGet, "/v3/projects/missing", "", http.StatusForbidden, false},
		{"compute get", http.MethodGet, "/compute/v1/projects/p1/global/backendServices/missing", "", http.StatusNotFound, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+emu.Addr()+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var env struct {
				Error map[string]json.RawMessage `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				t.Fatalf("decoding the error: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if _, ok := env.Error["errors"]; ok != tc.errorsArray {
				t.Errorf("error members %v: errors array present %v, want %v", slices.Sorted(maps.Keys(env.Error)), ok, tc.errorsArray)
			}
			for _, k := range []string{"code", "message"} {
				if _, ok := env.Error[k]; !ok {
					t.Errorf("error lacks %q: %v", k, slices.Sorted(maps.Keys(env.Error)))
				}
			}
		})
	}
}
