package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
)

// CloudEvent attribute values Eventarc uses for audit-log events.
const (
	SpecVersion  = "1.0"
	EventType    = "google.cloud.audit.log.v1.written"
	DataSchema   = "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/audit/v1/LogEntryData.json"
	ContentType  = "application/json; charset=utf-8"
	auditLogPfx  = "cloudaudit.googleapis.com/"
	sourcePrefix = "//cloudaudit.googleapis.com/"
)

// CloudEventFor renders e as the binary-mode CloudEvent Eventarc POSTs for
// it (shared/reference/audit-events.md §1, checked against the real
// delivery in internal/auditsamples/testdata/cloudevent-structured-audit-storage-objects-create.json):
//
//	ce-specversion  1.0
//	ce-type         google.cloud.audit.log.v1.written
//	ce-source       //cloudaudit.googleapis.com/<logName parent>/logs/<activity|data_access|...>
//	ce-subject      <serviceName>/<resourceName>
//	ce-id           <logName><insertId><timestamp in unix microseconds>
//	ce-time         receiveTimestamp (timestamp when absent)
//	ce-dataschema   .../google/events/cloud/audit/v1/LogEntryData.json
//	ce-servicename, ce-methodname, ce-resourcename: from protoPayload
//	ce-recordedtime timestamp
//	Content-Type    application/json; charset=utf-8
//
// and the body is the LogEntry JSON, without protoPayload's "@type" as
// Eventarc delivers it. Header names are returned in Go's
// canonical form (Ce-Id); HTTP header names are case-insensitive. It fails
// for entries without protoPayload or whose logName is not an audit log.
func CloudEventFor(e *core.LogEntry) (headers http.Header, body []byte, err error) {
	if e == nil || e.ProtoPayload == nil {
		return nil, nil, errors.New("building CloudEvent: entry has no protoPayload")
	}
	parent, logID, ok := strings.Cut(e.LogName, "/logs/")
	if !ok || parent == "" {
		return nil, nil, fmt.Errorf("building CloudEvent: logName %q is not PARENT/logs/LOG_ID", e.LogName)
	}
	logID, err = url.PathUnescape(logID)
	if err != nil {
		return nil, nil, fmt.Errorf("building CloudEvent: logName %q: %w", e.LogName, err)
	}
	kind, ok := strings.CutPrefix(logID, auditLogPfx)
	if !ok || kind == "" {
		return nil, nil, fmt.Errorf("building CloudEvent: logName %q is not a Cloud Audit Logs log", e.LogName)
	}
	// Eventarc delivers the LogEntry as google.events.cloud.audit.v1.LogEntryData,
	// whose protoPayload is a typed AuditLog message: it carries no
	// "@type" (internal/auditsamples/testdata/compute-instances-insert-beta-last.json,
	// Eventarc's own test payload, and the delivered storage CloudEvent
	// cloudevent-structured-audit-storage-objects-create.json). Cloud
	// Logging's view of the same entry (GET /auditlog, ListLogEntries) keeps it.
	data := *e
	pp := *e.ProtoPayload
	pp.Type = ""
	data.ProtoPayload = &pp
	body, err = json.Marshal(&data)
	if err != nil {
		return nil, nil, fmt.Errorf("building CloudEvent: encoding entry: %w", err)
	}
	received := e.ReceiveTimestamp
	if received.IsZero() {
		received = e.Timestamp
	}
	p := e.ProtoPayload
	h := http.Header{}
	h.Set("Ce-Specversion", SpecVersion)
	h.Set("Ce-Type", EventType)
	h.Set("Ce-Source", sourcePrefix+parent+"/logs/"+kind)
	h.Set("Ce-Subject", p.ServiceName+"/"+p.ResourceName)
	h.Set("Ce-Id", e.LogName+e.InsertID+strconv.FormatInt(e.Timestamp.UnixMicro(), 10))
	h.Set("Ce-Time", received.UTC().Format(time.RFC3339Nano))
	h.Set("Ce-Dataschema", DataSchema)
	h.Set("Ce-Servicename", p.ServiceName)
	h.Set("Ce-Methodname", p.MethodName)
	h.Set("Ce-Resourcename", p.ResourceName)
	h.Set("Ce-Recordedtime", e.Timestamp.UTC().Format(time.RFC3339Nano))
	h.Set("Content-Type", ContentType)
	return h, body, nil
}
