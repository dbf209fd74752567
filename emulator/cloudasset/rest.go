package cloudasset

import (
	"context"
	"net/http"
	"strings"

	"cloud.google.com/go/asset/apiv1/assetpb"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/internal/rest"
)

// RESTVerb ends the path of SearchAllResources over REST/JSON, as Google
// transcodes it (google/cloud/asset/v1/asset_service.proto):
//
//	GET /v1/{scope=*/*}:searchAllResources?query=&assetTypes=&pageSize=&pageToken=&orderBy=&readMask=
//
// The discovery-based client (google.golang.org/api/cloudasset/v1) works
// against it with option.WithEndpoint("http://ADDR/") and no credentials.
// Counted, faulted and audited as the gRPC method.
const RESTVerb = ":searchAllResources"

// ServeREST serves SearchAllResources at /v1/SCOPE:searchAllResources.
func (s *Server) ServeREST(w http.ResponseWriter, r *http.Request) {
	scope, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/"), RESTVerb)
	if !ok || r.Method != http.MethodGet || strings.Count(scope, "/") != 1 {
		rest.NotFound(w, r)
		return
	}
	rest.Serve(w, r, s.c, "google.cloud.asset.v1.AssetService.SearchAllResources", func(ctx context.Context, q *rest.Query, _ []byte) (proto.Message, error) {
		if err := q.Bind("query", "asset_types", "page_size", "page_token", "order_by", "read_mask"); err != nil {
			return nil, err
		}
		return s.SearchAllResources(ctx, &assetpb.SearchAllResourcesRequest{
			Scope: scope, Query: q.Str("query"), AssetTypes: q.Strs("asset_types"),
			PageSize: q.Int32("page_size"), PageToken: q.Str("page_token"),
			OrderBy: q.Str("order_by"), ReadMask: q.FieldMask("read_mask"),
		})
	})
}
