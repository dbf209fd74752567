package secretmanager

import (
	"context"
	"net/http"
	"strings"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/internal/rest"
)

// RESTPath reports whether path is served by ServeREST: Secret Manager v1
// over REST/JSON, as Google transcodes it
// (google/cloud/secretmanager/v1/service.proto), the one method iapguard
// calls:
//
//	GET /v1/{name=projects/*/secrets/*/versions/*}:access   AccessSecretVersion
//
// The discovery-based client (google.golang.org/api/secretmanager/v1)
// works against it with option.WithEndpoint("http://ADDR/") and no
// credentials. Counted, faulted and audited as the gRPC method. Every
// other Secret Manager method is gRPC only here (the tests create secrets
// through the gRPC client or Put).
func RESTPath(path string) bool {
	segs := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	return len(segs) == 6 && segs[0] == "projects" && segs[2] == "secrets" && segs[4] == "versions"
}

// ServeREST serves AccessSecretVersion at
// /v1/projects/P/secrets/S/versions/V:access.
func (s *Server) ServeREST(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/"), ":access")
	if !ok || r.Method != http.MethodGet || !RESTPath(r.URL.Path) {
		rest.NotFound(w, r)
		return
	}
	rest.Serve(w, r, s.c, "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion", func(ctx context.Context, q *rest.Query, _ []byte) (proto.Message, error) {
		if err := q.Bind(); err != nil {
			return nil, err
		}
		return s.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name})
	})
}
