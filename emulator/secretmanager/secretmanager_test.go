package secretmanager_test

import (
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iapguard/iapguard/emulator"
)

// The official client works unchanged against the emulated Secret Manager:
// create, add versions, access by number and latest, and Google's errors.
func TestOfficialClient(t *testing.T) {
	t.Parallel()
	em, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	ctx := t.Context()
	c, err := secretmanager.NewClient(ctx, option.WithEndpoint(em.Addr()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	s, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/demo-project", SecretId: "k"})
	if err != nil || s.GetName() != "projects/123456789012/secrets/k" {
		t.Fatalf("CreateSecret = %v, %v", s, err)
	}
	if _, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/demo-project", SecretId: "k"}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second CreateSecret: %v, want AlreadyExists", err)
	}
	if _, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/demo-project/secrets/k/versions/latest"}); status.Code(err) != codes.NotFound {
		t.Errorf("latest of a secret without versions: %v, want NotFound", err)
	}
	for _, d := range []string{"one", "two"} {
		if _, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/demo-project/secrets/k", Payload: &secretmanagerpb.SecretPayload{Data: []byte(d)}}); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string][2]string{
		"projects/demo-project/secrets/k/versions/latest": {"projects/123456789012/secrets/k/versions/2", "two"},
		"projects/123456789012/secrets/k/versions/1":      {"projects/123456789012/secrets/k/versions/1", "one"},
	} {
		r, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name})
		if err != nil || r.GetName() != want[0] || string(r.GetPayload().GetData()) != want[1] || r.GetPayload().DataCrc32C == nil {
			t.Errorf("AccessSecretVersion(%s) = %v, %v; want %v", name, r, err, want)
		}
	}
	for name, code := range map[string]codes.Code{
		"projects/demo-project/secrets/k/versions/3":       codes.NotFound,
		"projects/demo-project/secrets/nope/versions/1":    codes.NotFound,
		"projects/unknown-project/secrets/k/versions/1":    codes.PermissionDenied,
		"projects/demo-project/secrets/k/versions/0":       codes.InvalidArgument,
		"projects/demo-project/secrets/k":                  codes.InvalidArgument,
		"projects/demo-project/secrets/k/versions/1/extra": codes.InvalidArgument,
	} {
		if _, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name}); status.Code(err) != code {
			t.Errorf("AccessSecretVersion(%s): %v, want %s", name, err, code)
		}
	}
	big := make([]byte, 64<<10+1)
	if _, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/demo-project/secrets/k", Payload: &secretmanagerpb.SecretPayload{Data: big}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("oversized payload: %v, want InvalidArgument", err)
	}
}
