package emulator

import (
	"context"
	"net/http"
	"strings"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/proto"

	"github.com/iapguard/iapguard/emulator/internal/rest"
)

// PubSubMaxRESTBody is the largest JSON body Pub/Sub's REST front end
// takes (10 MiB, "Request payload size exceeds the limit"); the data is
// base64 there, so a request near PubSubMaxRequestBytes of data only fits
// over gRPC.
const PubSubMaxRESTBody = 10 << 20

// pubSubRESTPath reports whether path is a Pub/Sub v1 REST path: a
// project's topics, subscriptions, snapshots or schemas (what Google
// serves at pubsub.googleapis.com/v1/projects/P/...).
func pubSubRESTPath(path string) bool {
	segs := strings.SplitN(strings.TrimPrefix(path, "/v1/"), "/", 4)
	if len(segs) < 3 || segs[0] != "projects" {
		return false
	}
	coll, _, _ := strings.Cut(segs[2], ":")
	switch coll {
	case "topics", "subscriptions", "snapshots", "schemas":
		return true
	}
	return false
}

// servePubSubREST serves Pub/Sub v1's Publish over REST/JSON, as Google
// transcodes it (google/pubsub/v1/pubsub.proto):
//
//	POST /v1/{topic=projects/*/topics/*}:publish   Publisher.Publish (body: PublishRequest)
//
// The body is the PublishRequest in proto3 JSON (data as base64), the
// topic taken from the path; the answer is {"messageIds": [...]}. The
// call goes through the same limitedPublisher as gRPC, counted, faulted
// and audited under the same method key, so Google's limits and an
// unknown topic (404 NOT_FOUND) answer as they do there. Every other
// Pub/Sub REST path is 404, as a path the emulator does not serve: the
// tests and iapctl reach the rest of Pub/Sub over gRPC.
func (e *Emulator) servePubSubREST(w http.ResponseWriter, r *http.Request) {
	topic, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/"), ":publish")
	segs := strings.Split(topic, "/")
	if !ok || r.Method != http.MethodPost || len(segs) != 4 || segs[0] != "projects" || segs[1] == "" || segs[2] != "topics" || segs[3] == "" {
		rest.NotFound(w, r)
		return
	}
	rest.ServeLimited(w, r, e.Core, "google.pubsub.v1.Publisher.Publish", PubSubMaxRESTBody, func(ctx context.Context, q *rest.Query, body []byte) (proto.Message, error) {
		if err := q.Bind(); err != nil {
			return nil, err
		}
		req := &pubsubpb.PublishRequest{}
		if err := rest.Unmarshal(body, req); err != nil {
			return nil, err
		}
		req.Topic = topic
		return e.publisher.Publish(ctx, req)
	})
}
