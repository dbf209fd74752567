package outcome

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	pubsub "google.golang.org/api/pubsub/v1"
	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/emulatortest"
)

const publishMethod = "google.pubsub.v1.Publisher.Publish"

// startEmulator starts an emulator with topic (when not empty) and
// returns it with a REST Pub/Sub client pointed at it, built as the
// function builds it against an emulator: an endpoint and no credentials.
func startEmulator(t *testing.T, topic string) (*emulator.Emulator, *pubsub.Service) {
	t.Helper()
	var topics []string
	if topic != "" {
		topics = append(topics, topic)
	}
	em := emulatortest.StartPubSub(t, topics...)
	s, err := pubsub.NewService(t.Context(), option.WithEndpoint("http://"+em.Addr()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return em, s
}

// TestPublisherKeepsOrderPerResource publishes outcomes for two services
// concurrently, each service's in sequence, through the REST client to the
// emulator, and checks that Pub/Sub got every message intact (data,
// attributes) with its resource as ordering key, in order per key.
func TestPublisherKeepsOrderPerResource(t *testing.T) {
	ctx := t.Context()
	const topic = "projects/demo-project/topics/iapguard-outcomes"
	em, client := startEmulator(t, topic)
	p := NewPublisher(client, "demo-project", "iapguard-outcomes")
	if p.Topic() != topic {
		t.Errorf("Topic() = %q, want %q", p.Topic(), topic)
	}

	services := []string{"hello", "world"}
	const perService = 5
	sent := map[string]*Message{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			for i := range perService {
				m := example()
				m.Resource.Service = svc
				m.Resource.Name = "projects/demo-project/locations/us-central1/services/" + svc
				m.DurationMs = int64(i)
				id, err := p.Publish(ctx, m)
				if err != nil {
					t.Errorf("Publish(%s #%d): %v", svc, i, err)
					continue
				}
				mu.Lock()
				sent[id] = m
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	got := map[string][]int64{}
	msgs := em.PubSub.Messages()
	if len(msgs) != len(services)*perService {
		t.Errorf("%d messages on the topic, want %d", len(msgs), len(services)*perService)
	}
	for _, pm := range msgs {
		m, err := Unmarshal(pm.Data)
		if err != nil {
			t.Fatalf("message %s: %v", pm.ID, err)
		}
		want := sent[pm.ID]
		if want == nil {
			t.Errorf("message %s: no Publish returned its id", pm.ID)
			continue
		}
		wantBody, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(pm.Data) != string(wantBody) {
			t.Errorf("message %s: data %s, want %s", pm.ID, pm.Data, wantBody)
		}
		if diff := cmp.Diff(want.Attributes(), pm.Attributes); diff != "" {
			t.Errorf("message %s: attributes (-want +got):\n%s", pm.ID, diff)
		}
		if pm.OrderingKey != m.Resource.Name {
			t.Errorf("message %s: ordering key %q, want the resource %q", pm.ID, pm.OrderingKey, m.Resource.Name)
		}
		got[pm.OrderingKey] = append(got[pm.OrderingKey], m.DurationMs)
	}
	want := map[string][]int64{}
	for _, svc := range services {
		for i := range perService {
			k := "projects/demo-project/locations/us-central1/services/" + svc
			want[k] = append(want[k], int64(i))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages per ordering key (-want +got):\n%s", diff)
	}
}

// A publish the server refuses is an error naming the topic, with the
// client's *googleapi.Error (404) in its chain.
func TestPublisherReportsFailure(t *testing.T) {
	_, client := startEmulator(t, "")
	p := NewPublisher(client, "demo-project", "projects/other/topics/missing")
	_, err := p.Publish(t.Context(), example())
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusNotFound || !strings.Contains(err.Error(), "projects/other/topics/missing") {
		t.Errorf("Publish to a missing topic = %v; want 404 naming the topic", err)
	}
}

// Publish retries what the generated gRPC client retried (here
// UNAVAILABLE, INTERNAL, ABORTED, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,
// CANCELLED and UNKNOWN injected on the emulator's Publish, as their HTTP
// statuses) and nothing else (PERMISSION_DENIED, INVALID_ARGUMENT,
// UNIMPLEMENTED, FAILED_PRECONDITION are one call each).
func TestPublisherRetriesTransientFailures(t *testing.T) {
	const topic = "projects/demo-project/topics/iapguard-outcomes"
	em, client := startEmulator(t, topic)
	p := NewPublisher(client, "demo-project", topic)
	for _, tc := range []struct {
		code     codes.Code
		fail     int
		wantErr  int // HTTP status; 0: published
		wantCall int64
	}{
		{codes.Unavailable, 2, 0, 3},
		{codes.Internal, 1, 0, 2},
		{codes.Aborted, 1, 0, 2},
		{codes.ResourceExhausted, 1, 0, 2},
		{codes.DeadlineExceeded, 1, 0, 2},
		{codes.Canceled, 1, 0, 2}, // 499, sent by the server: not the caller's cancellation
		{codes.Unknown, 1, 0, 2},  // 500
		{codes.Unimplemented, 1, http.StatusNotImplemented, 1},
		{codes.FailedPrecondition, 1, http.StatusBadRequest, 1},
		{codes.PermissionDenied, 1, http.StatusForbidden, 1},
		{codes.InvalidArgument, 1, http.StatusBadRequest, 1},
	} {
		em.Core.Stats.Reset()
		em.PubSub.ClearMessages()
		if err := em.Core.Faults.FailNext(publishMethod, tc.fail, tc.code); err != nil {
			t.Fatal(err)
		}
		_, err := p.Publish(t.Context(), example())
		var ge *googleapi.Error
		switch {
		case tc.wantErr == 0 && err != nil:
			t.Errorf("%s ×%d: Publish = %v, want it retried until published", tc.code, tc.fail, err)
		case tc.wantErr != 0 && (!errors.As(err, &ge) || ge.Code != tc.wantErr):
			t.Errorf("%s: Publish = %v, want HTTP %d", tc.code, err, tc.wantErr)
		}
		if n := em.Core.Stats.Snapshot().Calls[publishMethod]; n != tc.wantCall {
			t.Errorf("%s ×%d: %d Publish calls, want %d", tc.code, tc.fail, n, tc.wantCall)
		}
		if n, want := len(em.PubSub.Messages()), map[bool]int{true: 1, false: 0}[tc.wantErr == 0]; n != want {
			t.Errorf("%s: %d messages published, want %d", tc.code, n, want)
		}
		em.Core.Faults.Reset()
	}
}
