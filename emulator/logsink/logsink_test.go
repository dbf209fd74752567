package logsink

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/deploy"
	"github.com/iapguard/iapguard/internal/event"
)

const topic = "projects/host/topics/iapguard-replay"

func newPubSub(t *testing.T) *pstest.Server {
	t.Helper()
	srv := pstest.NewServerWithAddress("127.0.0.1:0")
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func newCore() *core.Core {
	return core.New("", core.Project{ID: "host", Number: 1}, core.Project{ID: "team-a", Number: 2}, core.Project{ID: "outside", Number: 3})
}

// record writes one audit entry as a surface would.
func record(c *core.Core, project, service, method, resource string) *core.LogEntry {
	p, _ := c.Projects.Lookup(project)
	return c.Audit.Record(core.Record{Project: p, ServiceName: service, MethodName: method, ResourceName: resource,
		Location: "us-central1", Request: map[string]any{"@type": "type.googleapis.com/synthetic"}, ResourceType: "cloud_run_revision"})
}

func TestSinkRoutesWhatTheTriggersSelect(t *testing.T) {
	t.Parallel()
	run := "projects/team-a/locations/us-central1/services/web"
	tests := []struct {
		name     string
		projects []string
		project  string
		service  string
		method   string
		routed   bool
	}{
		{name: "run v2 update in a covered project", projects: []string{"team-a"}, project: "team-a", service: "run.googleapis.com", method: event.RunV2UpdateService, routed: true},
		{name: "compute patch, organisation sink", project: "outside", service: "compute.googleapis.com", method: "v1.compute.backendServices.patch", routed: true},
		{name: "project not under the sink", projects: []string{"team-a"}, project: "outside", service: "run.googleapis.com", method: event.RunV2UpdateService},
		{name: "method no trigger names", project: "team-a", service: "run.googleapis.com", method: "google.cloud.run.v2.Services.GetService"},
		{name: "delete is not routed", project: "team-a", service: "run.googleapis.com", method: "google.cloud.run.v2.Services.DeleteService"},
		{name: "method of another service", project: "team-a", service: "compute.googleapis.com", method: event.RunV2UpdateService},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv := newCore(), newPubSub(t)
			s, err := NewSink(c, &srv.GServer, SinkOptions{Topic: topic, Projects: tc.projects})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			e := record(c, tc.project, tc.service, tc.method, run)
			msgs := srv.Messages()
			if !tc.routed {
				if len(msgs) != 0 || s.Stats() != (SinkStats{}) {
					t.Errorf("routed %d messages (stats %+v), want none", len(msgs), s.Stats())
				}
				return
			}
			if len(msgs) != 1 || s.Stats() != (SinkStats{Routed: 1}) {
				t.Fatalf("routed %d messages (stats %+v), want 1", len(msgs), s.Stats())
			}
			m := msgs[0]
			want, _ := json.Marshal(e)
			if m.Topic != topic || string(m.Data) != string(want) {
				t.Errorf("message on %s with data %s; want the LogEntry JSON on %s", m.Topic, m.Data, topic)
			}
			if got := m.Attributes[TimestampAttribute]; got != e.Timestamp.UTC().Format(time.RFC3339Nano) {
				t.Errorf("attribute %s = %q, want the entry's timestamp", TimestampAttribute, got)
			}
			// What the function receives decodes as a log-sink entry for the same target.
			d, err := event.DecodeLogEntry(m.Data)
			if err != nil || d.Trigger.Via != event.ViaLogSink {
				t.Errorf("DecodeLogEntry = %+v, %v", d, err)
			}
		})
	}
}

// The sink selects exactly the methods of the audit-log triggers, which are
// the methods of the filter the deployment gives the real sink.
func TestSinkMatchesTheDeployedFilter(t *testing.T) {
	t.Parallel()
	filter, err := deploy.LogSinkFilter()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := eventarc.Load()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(newCore(), &newPubSub(t).GServer, SinkOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	seen := map[string]bool{}
	for _, tr := range eventarc.AuditLogTriggers(ts) {
		if k := tr.ServiceName + " " + tr.MethodName; !seen[k] {
			seen[k] = true
			want = append(want, k)
		}
		if !strings.Contains(filter, strconv.Quote(tr.MethodName)) || !strings.Contains(filter, strconv.Quote(tr.ServiceName)) {
			t.Errorf("the deployed filter does not select %s %s", tr.ServiceName, tr.MethodName)
		}
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, s.Methods()); diff != "" {
		t.Errorf("sink methods (-triggers +sink):\n%s", diff)
	}
	if !strings.Contains(filter, "cloudaudit.googleapis.com%2Factivity") {
		t.Error("the deployed filter does not restrict to Admin Activity logs, as the sink does")
	}
}

func TestSinkOptions(t *testing.T) {
	t.Parallel()
	c, ps := newCore(), &newPubSub(t).GServer
	for _, bad := range []SinkOptions{
		{Topic: ""},
		{Topic: "iapguard-replay"},
		{Topic: "projects/p/subscriptions/s"},
		{Topic: topic, Triggers: []eventarc.Trigger{{Name: "replay", EventType: eventarc.MessagePublished, Topic: "t", Location: "region"}}},
	} {
		if _, err := NewSink(c, ps, bad); err == nil {
			t.Errorf("NewSink(%+v) = nil error", bad)
		}
	}
}

// receiver records the CloudEvents POSTed to it and answers with the
// statuses in plan, then 204.
type receiver struct {
	mu     sync.Mutex
	plan   []int
	got    []*http.Request
	bodies [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, req)
	r.bodies = append(r.bodies, body)
	code := http.StatusNoContent
	if len(r.plan) > 0 {
		code, r.plan = r.plan[0], r.plan[1:]
	}
	r.mu.Unlock()
	w.WriteHeader(code)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func startPusher(t *testing.T, srv *pstest.Server, opts PushOptions) *Pusher {
	t.Helper()
	opts.Topic = topic
	opts.BackoffBase, opts.BackoffMax = time.Millisecond, 4*time.Millisecond
	p, err := NewPusher(&srv.GServer, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func publish(t *testing.T, srv *pstest.Server, data string) string {
	t.Helper()
	r, err := srv.GServer.Publish(t.Context(), &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: []byte(data), Attributes: map[string]string{"k": "v"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return r.MessageIds[0]
}

func wait(t *testing.T, p *Pusher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// The pusher POSTs each message as the binary-mode messagePublished
// CloudEvent Eventarc sends, which the function's decoder reads back.
func TestPusherDeliversMessagePublishedEvents(t *testing.T) {
	t.Parallel()
	srv := newPubSub(t)
	rcv := &receiver{}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	p := startPusher(t, srv, PushOptions{Targets: []string{hs.URL}})
	id := publish(t, srv, `{"version":1,"project":"team-a","requestedBy":"test"}`)
	wait(t, p)

	if n := rcv.count(); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
	req, body := rcv.got[0], rcv.bodies[0]
	for h, want := range map[string]string{
		"Ce-Specversion": "1.0",
		"Ce-Type":        event.MessagePublished,
		"Ce-Source":      "//pubsub.googleapis.com/" + topic,
		"Ce-Id":          id,
		"Content-Type":   "application/json",
	} {
		if got := req.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	var env struct {
		Message struct {
			Data       []byte            `json:"data"`
			Attributes map[string]string `json:"attributes"`
			MessageID  string            `json:"messageId"`
		} `json:"message"`
		Subscription string `json:"subscription"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if string(env.Message.Data) != `{"version":1,"project":"team-a","requestedBy":"test"}` || env.Message.MessageID != id ||
		env.Message.Attributes["k"] != "v" || env.Subscription != p.Subscription() {
		t.Errorf("envelope = %+v", env)
	}
	r2 := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
	r2.Header = req.Header.Clone()
	ev, err := event.FromHTTP(r2)
	if err != nil {
		t.Fatal(err)
	}
	d, err := event.Decode(ev)
	if err != nil || len(d.Targets) != 1 || d.Targets[0].Project != "team-a" || d.Trigger.Via != event.ViaPubSubReplay {
		t.Errorf("Decode = %+v, %v; want a replay of team-a", d, err)
	}
	if st := p.Stats(); st.Delivered != 1 || st.Acked != 1 || st.Pulled != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// Non-2xx answers are retried until one succeeds; the message is acked once.
func TestPusherRetries(t *testing.T) {
	t.Parallel()
	srv := newPubSub(t)
	rcv := &receiver{plan: []int{500, 429, 503}}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	p := startPusher(t, srv, PushOptions{Targets: []string{hs.URL}})
	id := publish(t, srv, `{}`)
	wait(t, p)
	if n := rcv.count(); n != 4 {
		t.Errorf("%d attempts, want 4 (three failures, then success)", n)
	}
	want := PushStats{Pulled: 1, Attempts: 4, Delivered: 1, Retried: 3, Acked: 1}
	if diff := cmp.Diff(want, p.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if m := srv.Message(id); m == nil || m.Acks != 1 {
		t.Errorf("message %s acks = %+v, want 1", id, m)
	}
}

// A message is given up after MaxAttempts, and acked so it does not loop.
func TestPusherGivesUp(t *testing.T) {
	t.Parallel()
	srv := newPubSub(t)
	rcv := &receiver{plan: []int{500, 500, 500, 500}}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	p := startPusher(t, srv, PushOptions{Targets: []string{hs.URL}, MaxAttempts: 2})
	publish(t, srv, `{}`)
	wait(t, p)
	want := PushStats{Pulled: 1, Attempts: 2, Retried: 1, Dropped: 1, Acked: 1}
	if diff := cmp.Diff(want, p.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

// Every target gets every message; many messages are all delivered once.
func TestPusherFansOut(t *testing.T) {
	t.Parallel()
	srv := newPubSub(t)
	a, b := &receiver{}, &receiver{}
	ha, hb := httptest.NewServer(a), httptest.NewServer(b)
	defer ha.Close()
	defer hb.Close()
	p := startPusher(t, srv, PushOptions{Targets: []string{ha.URL, hb.URL}, Concurrency: 3})
	for i := range 20 {
		publish(t, srv, strconv.Itoa(i))
	}
	wait(t, p)
	if a.count() != 20 || b.count() != 20 {
		t.Errorf("deliveries: %d and %d, want 20 each", a.count(), b.count())
	}
	ids := map[string]bool{}
	for _, r := range a.got {
		ids[r.Header.Get("Ce-Id")] = true
	}
	if len(ids) != 20 {
		t.Errorf("%d distinct event ids, want 20", len(ids))
	}
}

// A redelivery of a message still in flight (its ack deadline passed)
// starts no second delivery; the newer ack id is the one acked.
func TestPusherRedeliveryInFlight(t *testing.T) {
	t.Parallel()
	srv := newPubSub(t)
	block := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-block
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hs.Close()
	p, err := NewPusher(&srv.GServer, PushOptions{Topic: topic, Targets: []string{hs.URL}})
	if err != nil {
		t.Fatal(err)
	}
	msg := &pubsubpb.ReceivedMessage{AckId: "m0:1", Message: &pubsubpb.PubsubMessage{MessageId: "m0", Data: []byte("{}")}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if !p.admit(ctx, msg) {
		t.Fatal("first delivery not admitted")
	}
	if p.admit(ctx, &pubsubpb.ReceivedMessage{AckId: "m0:2", Message: msg.Message}) {
		t.Error("redelivery of an in-flight message admitted as new")
	}
	p.mu.Lock()
	ack := p.inflight["m0"].ackID
	p.mu.Unlock()
	if ack != "m0:2" {
		t.Errorf("ack id = %q, want the redelivery's m0:2", ack)
	}
	close(block)
	p.wg.Wait()
	if st := p.Stats(); st.Pulled != 2 || st.Delivered != 1 {
		t.Errorf("stats = %+v, want 2 pulled, 1 delivered", st)
	}
}

func TestPusherOptions(t *testing.T) {
	t.Parallel()
	ps := &newPubSub(t).GServer
	if _, err := NewPusher(ps, PushOptions{Topic: "t", Targets: []string{"http://x"}}); err == nil {
		t.Error("bad topic accepted")
	}
	if _, err := NewPusher(ps, PushOptions{Topic: topic}); err == nil {
		t.Error("no targets accepted")
	}
	p, err := NewPusher(ps, PushOptions{Topic: topic, Targets: []string{"http://x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Subscription(), "projects/host/subscriptions/eventarc-iapguard-replay-push"; got != want {
		t.Errorf("Subscription() = %q, want %q", got, want)
	}
}

// The pusher renders its envelope itself, as Eventarc sends it; it must be
// byte for byte what the product's envelope builder
// (internal/event.NewMessagePublishedEvent, what iapctl replay sends and the
// decoder is tested against) writes through the CloudEvents SDK.
func TestPusherRenderMatchesEventarcEnvelope(t *testing.T) {
	t.Parallel()
	p, err := NewPusher(&newPubSub(t).GServer, PushOptions{Topic: topic, Targets: []string{"http://127.0.0.1:1/"}})
	if err != nil {
		t.Fatal(err)
	}
	published := time.Date(2026, 12, 7, 3, 4, 5, 123456789, time.UTC)
	for _, m := range []*pubsubpb.PubsubMessage{
		{Data: []byte(`{"version":1}`), MessageId: "17", PublishTime: timestamppb.New(published)},
		{Data: []byte("x"), Attributes: map[string]string{"a": "b"}, MessageId: "18", OrderingKey: "k", PublishTime: timestamppb.New(published.Truncate(time.Second))},
	} {
		header, body, err := p.render(m)
		if err != nil {
			t.Fatal(err)
		}
		segs := strings.Split(topic, "/")
		ev, err := event.NewMessagePublishedEvent(segs[1], segs[3], p.Subscription(), event.PubSubMessage{
			Data: m.GetData(), Attributes: m.GetAttributes(), MessageID: m.GetMessageId(),
			PublishTime: m.GetPublishTime().AsTime(), OrderingKey: m.GetOrderingKey(),
		})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		if err := cehttp.WriteRequest(t.Context(), binding.ToMessage(&ev), req); err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != string(want) {
			t.Errorf("message %s: body\n%s\nwant\n%s", m.GetMessageId(), body, want)
		}
		if diff := cmp.Diff(req.Header, header); diff != "" {
			t.Errorf("message %s: headers (-want +got):\n%s", m.GetMessageId(), diff)
		}
	}
}
