// Package pubsubrest publishes to Pub/Sub through Google's discovery-based
// REST client (google.golang.org/api/pubsub/v1) with the retry settings
// the generated client (cloud.google.com/go/pubsub/v2/apiv1) gives
// Publish. The function publishes outcomes and replay messages this way:
// the generated client's gRPC and protobuf packages cost about 0.14 ms of
// package initialisation at every process start.
package pubsubrest

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	pubsub "google.golang.org/api/pubsub/v1"

	"github.com/iapguard/iapguard/internal/gcperr"
)

// Timeout bounds one Publish with its retries when ctx has no deadline of
// its own (the generated client's 60 s).
const Timeout = 60 * time.Second

// RetryHTTPCodes are the HTTP statuses of the gRPC codes the generated
// client retries Publish on, as Google maps them (google/rpc/code.proto):
// ABORTED 409, CANCELLED 499, INTERNAL and UNKNOWN 500, RESOURCE_EXHAUSTED
// 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504. They are the codes of the
// generated client's own REST transport for Publish.
var RetryHTTPCodes = []int{http.StatusConflict, 499, http.StatusInternalServerError,
	http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// Retryer is the retry policy of Publish: an answer with one of
// RetryHTTPCodes, or a transport failure before any answer (a refused or
// reset connection: what gRPC reports as UNAVAILABLE), is retried after a
// jittered exponential pause (100 ms doubling fourfold up to 60 s, the
// generated client's backoff). The caller's cancellation and deadline are
// not retried, nor is any other answer.
func Retryer() gax.Retryer {
	return &retryer{bo: gax.Backoff{Initial: 100 * time.Millisecond, Max: 60 * time.Second, Multiplier: 4}}
}

type retryer struct{ bo gax.Backoff }

func (r *retryer) Retry(err error) (time.Duration, bool) {
	if Retryable(err) {
		return r.bo.Pause(), true
	}
	return 0, false
}

// Retryable reports whether Retryer retries err.
func Retryable(err error) bool {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return slices.Contains(RetryHTTPCodes, ge.Code)
	}
	return gcperr.IsTransportFailure(err)
}

// Publish sends msgs to topic (projects/P/topics/T) through s, retried as
// Retryer says within Timeout (or ctx's own deadline), and returns the
// server's message ids. The error of the last attempt keeps the client's
// *googleapi.Error in its chain.
func Publish(ctx context.Context, s *pubsub.Service, topic string, msgs []*pubsub.PubsubMessage) ([]string, error) {
	var res *pubsub.PublishResponse
	err := gax.Invoke(ctx, func(ctx context.Context, _ gax.CallSettings) error {
		var err error
		res, err = s.Projects.Topics.Publish(topic, &pubsub.PublishRequest{Messages: msgs}).Context(ctx).Do()
		return err
	}, gax.WithTimeout(Timeout), gax.WithRetry(Retryer))
	if err != nil {
		return nil, err
	}
	return res.MessageIds, nil
}
