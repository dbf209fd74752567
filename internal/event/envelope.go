package event

import (
	"encoding/json"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// AuditLogDataSchema is the dataschema Eventarc sets on audit-log events.
const AuditLogDataSchema = "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/audit/v1/LogEntryData.json"

// MessagePublishedDataSchema is the dataschema of messagePublished events.
const MessagePublishedDataSchema = "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/pubsub/v1/MessagePublishedData.json"

const jsonUTF8 = "application/json; charset=utf-8"

// NewAuditLogEvent wraps LogEntry JSON in the CloudEvent Eventarc delivers
// for it, with the attribute values observed on a real delivery
// (internal/auditsamples/testdata/cloudevent-structured-audit-storage-objects-create.json):
// id = logName+insertId+timestamp in unix µs, source
// //cloudaudit.googleapis.com/<parent>/logs/<log>, subject
// serviceName/resourceName, time = receiveTimestamp, extensions servicename,
// methodname, resourcename and recordedtime (= timestamp). For the
// emulator's Eventarc stand-in and tests. Errors wrap ErrMalformed.
func NewAuditLogEvent(entry []byte) (cloudevents.Event, error) {
	le, err := parseEntry(entry)
	if err != nil {
		return cloudevents.Event{}, err
	}
	src, id, ok := auditSourceAndID(le)
	if !ok {
		return cloudevents.Event{}, fmt.Errorf("%w: log entry lacks logName or insertId", ErrMalformed)
	}
	p := le.ProtoPayload
	e := cloudevents.New(cloudevents.CloudEventsVersionV1)
	e.SetID(id)
	e.SetSource(src)
	e.SetType(AuditLogWritten)
	e.SetSubject(p.ServiceName + "/" + p.ResourceName)
	e.SetDataSchema(AuditLogDataSchema)
	if t, ok := entryTime(le.ReceiveTimestamp); ok {
		e.SetTime(t)
	}
	for k, v := range map[string]string{
		extServiceName: p.ServiceName, extMethodName: p.MethodName,
		extResourceName: p.ResourceName, extRecordedTime: le.Timestamp,
	} {
		if v != "" {
			e.SetExtension(k, v)
		}
	}
	if err := e.SetData(jsonUTF8, entry); err != nil {
		return cloudevents.Event{}, fmt.Errorf("setting event data: %w", err)
	}
	e.DataBase64 = false // JSON: structured mode renders it as "data", not "data_base64"
	return e, nil
}

// PubSubMessage is a published Pub/Sub message, as carried in
// messagePublished event data.
type PubSubMessage struct {
	Data        []byte            `json:"data,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	MessageID   string            `json:"messageId"`
	PublishTime time.Time         `json:"publishTime"`
	OrderingKey string            `json:"orderingKey,omitempty"`
}

// NewMessagePublishedEvent wraps m, published on topic
// projects/<project>/topics/<topic> and delivered through subscription (a
// full subscription name), in the CloudEvent Eventarc delivers: type
// MessagePublished, id = message id, source
// //pubsub.googleapis.com/projects/<project>/topics/<topic>, time = publish
// time, data = {"message":{…},"subscription":…} with messageId and
// publishTime also in snake case, as Eventarc writes them.
func NewMessagePublishedEvent(project, topic, subscription string, m PubSubMessage) (cloudevents.Event, error) {
	type wireMessage struct {
		PubSubMessage
		MessageIDSnake   string    `json:"message_id"`
		PublishTimeSnake time.Time `json:"publish_time"`
	}
	data, err := json.Marshal(struct {
		Message      wireMessage `json:"message"`
		Subscription string      `json:"subscription"`
	}{wireMessage{m, m.MessageID, m.PublishTime}, subscription})
	if err != nil {
		return cloudevents.Event{}, fmt.Errorf("encoding messagePublished data: %w", err)
	}
	e := cloudevents.New(cloudevents.CloudEventsVersionV1)
	e.SetID(m.MessageID)
	e.SetSource("//pubsub.googleapis.com/projects/" + project + "/topics/" + topic)
	e.SetType(MessagePublished)
	e.SetDataSchema(MessagePublishedDataSchema)
	e.SetTime(m.PublishTime)
	if err := e.SetData("application/json", data); err != nil {
		return cloudevents.Event{}, fmt.Errorf("setting event data: %w", err)
	}
	e.DataBase64 = false
	return e, nil
}
