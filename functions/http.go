package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/iapguard/iapguard/internal/event"
)

// MaxRequestBytes bounds the body of one delivery. Eventarc audit-log
// events carry one LogEntry (Cloud Logging caps an entry at 256 KiB), and
// messagePublished events carry a replay message or a log-sink LogEntry,
// base64-encoded (under 350 KiB), so 1 MiB leaves room without letting a
// caller make an instance buffer arbitrary amounts.
const MaxRequestBytes = 1 << 20

// HTTPHandler serves h as the EnforceIAP function: the handler that
// functions-framework-go runs for FunctionName (registered with
// functions.HTTP), and that internal/stack and the benchmarks serve, so
// every path to the function is this one.
func HTTPHandler(h *Handler) http.Handler {
	return LazyHTTPHandler(func() (*Handler, error) { return h, nil })
}

// LazyHTTPHandler is HTTPHandler for a handler built on first use: get is
// called on every request (it must be cheap after the first call and safe
// for concurrent use); its error answers the request with HTTP 500, so
// Eventarc keeps the event until the function is fixed.
//
// Each POST is decoded in its own goroutine with internal/event.FromHTTP
// (binary or structured content mode) and handled there by Handler.Handle;
// nothing is shared between requests. This replaces the CloudEvents SDK's
// HTTP receive handler (cloudevents.NewHTTPReceiveHandler, which
// functions-framework-go uses for CloudEvent functions): it hands requests
// to per-request consumer goroutines over one shared unbuffered channel, so
// a consumer that gives up when its own request is cancelled can leave
// another request's event waiting for the next delivery (cloudevents/sdk-go
// issues 1224 and 1332; docs/security.md G-3).
//
// Answers (Eventarc acknowledges 2xx and redelivers anything else):
//   - 204 when Handle returns nil: the event is done, including malformed
//     or foreign events, which get a rejected or skipped outcome;
//   - 204 for a CloudEvent request that cannot be decoded (bad structured
//     JSON, bad attribute values, a body over MaxRequestBytes): a rejected
//     outcome is published, as Handle does for malformed events, because a
//     redelivery would be the same request;
//   - 500 when Handle returns an error (transient failure; Eventarc
//     redelivers), when the rejected outcome cannot be published, when the
//     body cannot be read, or when the function is misconfigured;
//   - 400 when the request is not a CloudEvent at all (neither a
//     ce-specversion header nor an application/cloudevents Content-Type):
//     Eventarc never sends one, so there is no event to report on;
//   - 405 for methods other than POST.
func LazyHTTPHandler(get func() (*Handler, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveEvent(w, r, get)
	})
}

func serveEvent(w http.ResponseWriter, r *http.Request, get func() (*Handler, error)) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "EnforceIAP accepts CloudEvents by POST", http.StatusMethodNotAllowed)
		return
	}
	h, err := get()
	if err != nil {
		logConfigError(misconfigLog, err, "EnforceIAP is misconfigured; answered 500 so Eventarc keeps the event until it is fixed")
		http.Error(w, "the function is misconfigured; see its logs", http.StatusInternalServerError)
		return
	}
	if !isCloudEventRequest(r) {
		h.log.Warn("request is not a CloudEvent; answered 400", "contentType", r.Header.Get("Content-Type"))
		http.Error(w, "not a CloudEvent: want a ce-specversion header (binary mode) or Content-Type application/cloudevents+json (structured mode)", http.StatusBadRequest)
		return
	}
	body, err := readBody(w, r)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		reply(w, h.Reject(r.Context(), partialEvent(r, body), fmt.Errorf("%w: request body exceeds %d bytes", event.ErrMalformed, MaxRequestBytes)))
		return
	case err != nil:
		h.log.Warn("reading the request body; answered 500 so Eventarc redelivers", "err", err)
		http.Error(w, "reading the request body failed", http.StatusInternalServerError)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	e, err := event.FromHTTP(r)
	if err != nil {
		// FromHTTP's errors all wrap ErrMalformed once the body is read.
		reply(w, h.Reject(r.Context(), partialEvent(r, body), err))
		return
	}
	reply(w, h.Handle(r.Context(), e))
}

// reply answers 204 for nil and 500 with err's text otherwise.
func reply(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readBody reads at most MaxRequestBytes of r's body; beyond that the
// error is an *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		return b, fmt.Errorf("reading request body: %w", err)
	}
	return b, nil
}

// isCloudEventRequest reports whether r claims to carry a CloudEvent: in
// binary content mode (a ce-specversion header) or structured content mode
// (Content-Type application/cloudevents+json, or any application/cloudevents
// type, which FromHTTP then judges). This is the SDK's own test
// (cloudevents/sdk-go protocol/http NewMessage).
func isCloudEventRequest(r *http.Request) bool {
	if r.Header.Get("ce-specversion") != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && strings.HasPrefix(mt, "application/cloudevents")
}

// partialEvent gathers what identifies an undecodable CloudEvent — id,
// source and type — from binary-mode headers or, leniently, from a
// structured-mode body, for the rejected outcome. It never fails: missing
// values stay empty. Like Handle for malformed events, it takes no resource
// name from an event it cannot read.
func partialEvent(r *http.Request, body []byte) cloudevents.Event {
	e := cloudevents.New()
	var s struct {
		ID     any `json:"id"`
		Source any `json:"source"`
		Type   any `json:"type"`
	}
	if r.Header.Get("ce-specversion") == "" {
		_ = json.Unmarshal(body, &s) // best effort: a broken body leaves the fields empty
	}
	pick := func(header string, v any) string {
		if h := r.Header.Get(header); h != "" {
			return h
		}
		if str, ok := v.(string); ok {
			return str
		}
		return ""
	}
	e.SetID(pick("ce-id", s.ID))
	e.SetSource(pick("ce-source", s.Source))
	e.SetType(pick("ce-type", s.Type))
	return e
}

// Reject acknowledges a CloudEvent that could not be decoded at all: it
// publishes a rejected outcome naming what e (a partial event: id, source
// and type, any of them possibly empty) could tell, with cause as the
// reason. It returns only a publish failure (the
// delivery is then answered 500 and redelivered), as Handle does for
// malformed events.
func (h *Handler) Reject(ctx context.Context, e cloudevents.Event, cause error) error {
	ctx, cancel, log := h.begin(ctx, e)
	defer cancel()
	start := h.now()
	trig := toTrigger(event.Trigger{Via: event.ViaEventarc}, e)
	log.Warn("undecodable CloudEvent request; acknowledged with a rejected outcome", "err", cause)
	return h.publish(ctx, h.rejectedMessage(trig, malformedReason(cause), start))
}
