package emulator_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/event"
)

// receiver collects CloudEvents POSTed by the Eventarc stand-in.
type receiver struct {
	mu     sync.Mutex
	events []event.Decision
	heads  []http.Header
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ce, err := event.FromHTTP(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d, err := event.Decode(ce)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.events = append(r.events, d)
	r.heads = append(r.heads, req.Header.Clone())
	r.mu.Unlock()
}

func (r *receiver) methods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.events {
		out = append(out, d.Trigger.Method)
	}
	return out
}

// TestOfficialClientsBuildLoadBalancerAndReceiveEvents is the emulator's
// acceptance test: a program using only the official Google clients builds a
// whole external HTTPS load balancer in front of a labelled Cloud Run
// service, patches the backend's IAP, and receives the resulting CloudEvents
// at a URL of its choosing.
func TestOfficialClientsBuildLoadBalancerAndReceiveEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rcv := &receiver{}
	sink := httptest.NewServer(rcv)
	defer sink.Close()

	start := time.Now()
	emu, err := emulator.New(emulator.Options{DeliverTo: []string{sink.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	t.Logf("emulator ready in %s", time.Since(start))

	clients, err := demo.Dial(ctx, emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer clients.Close()
	p, region := emulator.DefaultProject.ID, "us-central1"
	if _, err := clients.CreateService(ctx, p, region, demo.ServiceSpec{Name: "hello", Labels: map[string]string{"iap": "enabled"}, Public: true}); err != nil {
		t.Fatal(err)
	}
	lb, err := clients.BuildLoadBalancer(ctx, p, region, demo.LBSpec{Service: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if err := clients.SetBackendIAP(ctx, p, lb.BackendService, true); err != nil {
		t.Fatal(err)
	}
	bs, err := clients.Compute.BackendServices.Get(p, lb.BackendService).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if bs.Iap == nil || !bs.Iap.Enabled {
		t.Fatalf("backend IAP = %+v, want enabled", bs.Iap)
	}
	if len(bs.UsedBy) != 1 || !strings.HasSuffix(bs.UsedBy[0].Reference, "/global/urlMaps/"+lb.URLMap) {
		t.Errorf("backend usedBy = %+v, want the URL map", bs.UsedBy)
	}

	if err := emu.Delivery.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"google.cloud.run.v2.Services.CreateService":    false,
		"google.cloud.run.v2.Services.SetIamPolicy":     false,
		"v1.compute.regionNetworkEndpointGroups.insert": false,
		"v1.compute.backendServices.insert":             false,
		"v1.compute.backendServices.patch":              false,
	}
	for _, m := range rcv.methods() {
		if _, ok := want[m]; ok {
			want[m] = true
		}
	}
	for m, seen := range want {
		if !seen {
			t.Errorf("no CloudEvent for %s; got %v", m, rcv.methods())
		}
	}
	// URL maps, proxies, certificates and forwarding rules have no trigger.
	for _, m := range rcv.methods() {
		if strings.Contains(m, "urlMaps") || strings.Contains(m, "targetHttpsProxies") || strings.Contains(m, "forwardingRules") {
			t.Errorf("delivered %s, which no trigger in eventarc/ matches", m)
		}
	}
	rcv.mu.Lock()
	h := rcv.heads[0]
	rcv.mu.Unlock()
	for _, k := range []string{"Ce-Specversion", "Ce-Type", "Ce-Source", "Ce-Subject", "Ce-Id", "Ce-Time", "Ce-Methodname", "Ce-Servicename", "Ce-Resourcename", "Ce-Recordedtime", "Ce-Dataschema"} {
		if h.Get(k) == "" {
			t.Errorf("delivery lacks header %s", k)
		}
	}
}

func TestEnvAndControlAPI(t *testing.T) {
	emu, err := emulator.New(emulator.Options{Projects: []core.Project{{ID: "p1", Number: 11}, {ID: "p2", Number: 22}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	env := emu.Env()
	if len(env) != 2 || env[0] != "IAPGUARD_EMULATOR_HOST="+emu.Addr() || env[1] != "PUBSUB_EMULATOR_HOST="+emu.Addr() {
		t.Errorf("Env() = %v", env)
	}
	base := "http://" + emu.Addr() + emulator.ControlPrefix

	body := `{"latency":[{"method":"compute.*","duration":"1ms"}],"quotas":[{"api":"run","class":"write","perMinute":60}],"failNext":[{"method":"compute.backendServices.get","count":1,"code":"UNAVAILABLE"}],"computeQuotaStatus":429}`
	resp, err := http.Post(base+"faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("POST faults = %d, want 204", resp.StatusCode)
	}
	for _, bad := range []string{`{`, `{"errors":[{"method":"*","rate":2,"code":"UNAVAILABLE"}]}`, `{"failNext":[{"method":"*","count":1,"code":"NOPE"}]}`, `{"quotas":[{"api":"run","class":"sideways","perMinute":1}]}`, `{"computeQuotaStatus":500}`} {
		resp, err := http.Post(base+"faults", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST faults %s = %d, want 400", bad, resp.StatusCode)
		}
	}
	// One failing compute call, counted.
	r, err := http.Get("http://" + emu.Addr() + "/compute/v1/projects/p1/global/backendServices/x")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("injected failure: status %d, want 503", r.StatusCode)
	}
	resp, err = http.Get(base + "stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var snap core.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatalf("stats: %v: %s", err, b)
	}
	if snap.Calls["compute.backendServices.get"] != 1 || snap.Faults["compute.backendServices.get"] != 1 {
		t.Errorf("stats = %+v, want one faulted compute.backendServices.get", snap)
	}
	for _, path := range []string{"nope", "health"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusOK
		if path == "nope" {
			want = http.StatusNotFound
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestPubSubSharesTheAddress checks the official Pub/Sub client works against
// the emulator's one address, as PUBSUB_EMULATOR_HOST users expect.
func TestPubSubSharesTheAddress(t *testing.T) {
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	client, err := pubsub.NewClient(ctx, "demo-project", option.WithEndpoint(emu.Addr()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic := "projects/demo-project/topics/t"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: "projects/demo-project/subscriptions/s", Topic: topic}); err != nil {
		t.Fatal(err)
	}
	pub := client.Publisher("t")
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("hi")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	pub.Stop()
	got := make(chan string, 1)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go func() {
		_ = client.Subscriber("s").Receive(sctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			select {
			case got <- string(m.Data):
			default:
			}
			scancel()
		})
	}()
	select {
	case m := <-got:
		if m != "hi" {
			t.Errorf("received %q, want hi", m)
		}
	case <-ctx.Done():
		t.Fatal("no message received")
	}
	if n := emu.Core.Stats.Snapshot().Calls["google.pubsub.v1.Publisher.Publish"]; n != 1 {
		t.Errorf("Publish calls counted = %d, want 1", n)
	}
}

// TestFaultConfigAllOrNothing: a body with one rule its setter rejects
// installs none of its rules: its reset (applied first) does not happen.
func TestFaultConfigAllOrNothing(t *testing.T) {
	const method = "compute.backendServices.get"
	for _, tc := range []struct {
		name, body string
		wantErr    bool
	}{
		{name: "valid", body: `{"reset":true}`},
		{name: "bad error rate", body: `{"reset":true,"errors":[{"method":"*","rate":2,"code":"INTERNAL"}]}`, wantErr: true},
		{name: "bad pattern", body: `{"reset":true,"races":[{"method":"[","count":1}]}`, wantErr: true},
		{name: "bad compute quota status", body: `{"reset":true,"computeQuotaStatus":500}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fc emulator.FaultConfig
			if err := json.Unmarshal([]byte(tc.body), &fc); err != nil {
				t.Fatal(err)
			}
			c := core.New("")
			if err := c.Faults.FailNext(method, 1, codes.Unavailable); err != nil {
				t.Fatal(err)
			}
			err := fc.Apply(c.Faults)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Apply(%s) error = %v, want error %v", tc.body, err, tc.wantErr)
			}
			// The earlier rule survives exactly when the body is rejected.
			if failed := c.Begin(context.Background(), method) != nil; failed != tc.wantErr {
				t.Errorf("after Apply(%s): call failed = %v, want %v", tc.body, failed, tc.wantErr)
			}
		})
	}
}
