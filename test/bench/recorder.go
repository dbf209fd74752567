package bench

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
)

// Call is one API call seen by the recorder: its method (the emulator's
// method key for gRPC, "VERB /path" for REST) and when it was sent and
// answered, as the caller saw it.
type Call struct {
	Method     string
	Start, End time.Time
}

// recorder is a reverse proxy between the function and the emulator. It
// records when each call started and ended so the critical path can be
// counted directly (Rounds), independently of the latency estimate. It
// speaks HTTP/1.1 and unencrypted HTTP/2 on both sides, so gRPC (Cloud Run)
// and REST (Compute, Service Usage, Pub/Sub's Publish) pass through
// unchanged. The proxy hop costs well under a millisecond on loopback.
type recorder struct {
	ln  net.Listener
	srv *http.Server
	tr  *http.Transport

	mu    sync.Mutex
	calls []Call
}

func startRecorder(emulatorAddr string) (*recorder, error) {
	target, err := url.Parse("http://" + emulatorAddr)
	if err != nil {
		return nil, fmt.Errorf("parsing emulator address: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the recorder: %w", err)
	}
	var up http.Protocols
	up.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &up, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: true}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      log.New(discard{}, "", 0),
	}
	rec := &recorder{ln: ln, tr: tr}
	var down http.Protocols
	down.SetHTTP1(true)
	down.SetUnencryptedHTTP2(true)
	rec.srv = &http.Server{
		Protocols:         &down,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(discard{}, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := Call{Method: methodOf(r), Start: time.Now()}
			rp.ServeHTTP(w, r)
			c.End = time.Now()
			rec.mu.Lock()
			rec.calls = append(rec.calls, c)
			rec.mu.Unlock()
		}),
	}
	go func() {
		if err := rec.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("bench recorder stopped: %v", err)
		}
	}()
	return rec, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func methodOf(r *http.Request) string {
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return core.MethodKey(r.URL.Path)
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/projects/") &&
		strings.Contains(r.URL.Path, "/topics/") && strings.HasSuffix(r.URL.Path, ":publish") {
		// Pub/Sub's Publish over REST (the function's publishers): keyed as
		// its gRPC twin, so it is told apart from the Google API calls.
		return "google.pubsub.v1.Publisher.Publish"
	}
	return r.Method + " " + r.URL.Path
}

// Addr is where the function should send its calls.
func (r *recorder) Addr() string { return r.ln.Addr().String() }

// Between returns the calls that started in [from, to]: Google API calls
// and, separately, Pub/Sub calls.
func (r *recorder) Between(from, to time.Time) (api, pubsub []Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.calls {
		switch {
		case c.Start.Before(from) || c.Start.After(to):
		case strings.HasPrefix(c.Method, "google.pubsub."):
			pubsub = append(pubsub, c)
		default:
			api = append(api, c)
		}
	}
	return api, pubsub
}

func (r *recorder) Close() {
	_ = r.srv.Close()
	r.tr.CloseIdleConnections()
}
