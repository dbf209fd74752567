package event

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/iapguard/iapguard/eventarc"
)

// CloudEvent types the decoder understands.
const (
	AuditLogWritten  = eventarc.AuditLogWritten
	MessagePublished = eventarc.MessagePublished
)

// Eventarc's audit-log extension attributes. They are lower case on the
// wire; Google's hand-written examples use camelCase (methodName), so they
// are looked up case-insensitively.
const (
	extServiceName  = "servicename"
	extMethodName   = "methodname"
	extResourceName = "resourcename"
	extRecordedTime = "recordedtime"
)

// Decode decides what the CloudEvent e asks for. e is an Eventarc
// audit-log event (google.cloud.audit.log.v1.written, data = LogEntry) or a
// Pub/Sub messagePublished event whose message data is a replay message or
// a LogEntry. Other event types yield a Skip.
//
// The error, always wrapping ErrMalformed, is for events that are invalid
// CloudEvents, have missing, truncated or mistyped data, or whose Eventarc
// extension attributes (servicename, methodname, resourcename) contradict
// the payload. Even then the returned Decision's Trigger holds what could
// be read (at least the event's id, source and type), for reporting.
func Decode(e cloudevents.Event) (Decision, error) {
	tr := Trigger{EventID: e.ID(), Source: e.Source(), Type: e.Type(), Time: e.Time(), Via: ViaEventarc}
	if err := e.Validate(); err != nil {
		return Decision{Trigger: tr}, fmt.Errorf("%w: invalid CloudEvent: %w", ErrMalformed, err)
	}
	switch e.Type() {
	case AuditLogWritten:
		return decodeAuditEvent(e, tr)
	case MessagePublished:
		tr.Via = ViaPubSubReplay
		return decodeMessagePublished(e, tr)
	}
	return Decision{Trigger: tr, Skip: fmt.Sprintf("event type %q is not handled", e.Type())}, nil
}

func decodeAuditEvent(e cloudevents.Event, tr Trigger) (Decision, error) {
	if err := checkJSONData(e); err != nil {
		return Decision{Trigger: tr}, err
	}
	le, err := parseEntry(e.Data())
	if err != nil {
		return Decision{Trigger: tr}, err
	}
	p := le.ProtoPayload
	for _, c := range []struct{ ext, payload string }{
		{extServiceName, p.ServiceName},
		{extMethodName, p.MethodName},
		{extResourceName, p.ResourceName},
	} {
		if v, ok := extension(e, c.ext); ok && v != c.payload {
			return Decision{Trigger: tr}, fmt.Errorf("%w: extension %s=%q contradicts the payload's %q", ErrMalformed, c.ext, v, c.payload)
		}
	}
	return decideEntry(le, tr)
}

// checkJSONData requires non-empty data whose content type, if given, is JSON.
func checkJSONData(e cloudevents.Event) error {
	if ct := e.DataContentType(); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "text/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("%w: data content type %q is not JSON", ErrMalformed, ct)
		}
	}
	if len(e.Data()) == 0 {
		return fmt.Errorf("%w: event has no data", ErrMalformed)
	}
	return nil
}

// extension returns the string value of e's extension attribute name,
// matched case-insensitively.
func extension(e cloudevents.Event, name string) (string, bool) {
	for k, v := range e.Extensions() {
		if strings.EqualFold(k, name) {
			if s, err := types.ToString(v); err == nil {
				return s, true
			}
			return fmt.Sprint(v), true
		}
	}
	return "", false
}

// maxBody bounds what FromHTTP reads: a Pub/Sub message is at most 10 MB,
// which base64 and the JSON envelope grow to under 14 MB.
const maxBody = 16 << 20

// FromHTTP reads the CloudEvent in r, in binary content mode (ce-* headers,
// the body is the data; what Eventarc sends) or structured content mode
// (Content-Type application/cloudevents+json). Extension attribute names
// come out lower case whatever case they were sent in. Errors wrap
// ErrMalformed, except a failure to read the body.
func FromHTTP(r *http.Request) (cloudevents.Event, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return cloudevents.Event{}, fmt.Errorf("reading request body: %w", err)
		}
		if len(b) > maxBody {
			return cloudevents.Event{}, fmt.Errorf("%w: request body exceeds %d bytes", ErrMalformed, maxBody)
		}
		body = b
	}
	msg := cehttp.NewMessage(r.Header, io.NopCloser(bytes.NewReader(body)))
	defer msg.Finish(nil)
	ev, err := binding.ToEvent(r.Context(), msg)
	if err != nil {
		if errors.Is(err, binding.ErrUnknownEncoding) {
			return cloudevents.Event{}, fmt.Errorf("%w: request is not a CloudEvent (no ce-specversion header, Content-Type %q)", ErrMalformed, r.Header.Get("Content-Type"))
		}
		return cloudevents.Event{}, fmt.Errorf("%w: reading CloudEvent from HTTP request: %w", ErrMalformed, err)
	}
	return *ev, nil
}
