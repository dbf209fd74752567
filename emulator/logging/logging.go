// Package logging emulates Cloud Logging's read path over the emulator's
// audit log: google.logging.v2.LoggingServiceV2/ListLogEntries, enough for
// cloud.google.com/go/logging/logadmin's Client.Entries (and therefore for
// operators' tools that query audit entries) to work unchanged against the
// emulator's gRPC endpoint.
//
// Google requires logging.logEntries.list (roles/logging.viewer; private
// logs need more) on each resource name; the emulator checks no
// permissions. The method key for core.Begin is
// google.logging.v2.LoggingServiceV2.ListLogEntries; the gRPC interceptor
// installed by the emulator calls it.
//
// Request handling:
//   - resource_names must be non-empty and name projects ("projects/ID" or
//     "projects/NUMBER"); entries whose logName belongs to one of them are
//     listed. An unknown project answers PERMISSION_DENIED, as Google does
//     for projects the caller cannot see. Organizations, folders, billing
//     accounts and log views are rejected with INVALID_ARGUMENT.
//   - order_by is "timestamp asc" (the default) or "timestamp desc"; ties are
//     ordered by insertId.
//   - page_size defaults to 50 and must be 0..1000; page_token is opaque and
//     only valid with the same resource names, filter and order.
//   - filter is the subset of the Logging query language described in
//     filter.go; anything outside it is INVALID_ARGUMENT, never ignored.
//
// Entries are converted from core.LogEntry (JSON) to loggingpb.LogEntry with
// proto_payload = Any(google.cloud.audit.AuditLog) through protojson with
// DiscardUnknown. Fields the AuditLog proto of
// google.golang.org/genproto/googleapis/cloud/audit does not have are lost:
// protoPayload.@type (implied by the Any) and
// authorizationInfo[].permissionType. Everything else the emulator records
// survives.
//
// Other LoggingServiceV2 methods (WriteLogEntries, ListLogs, TailLogEntries,
// ...) answer UNIMPLEMENTED.
package logging

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	loggingpb "cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	auditpb "google.golang.org/genproto/googleapis/cloud/audit"
	ltype "google.golang.org/genproto/googleapis/logging/type"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iapguard/iapguard/emulator/core"
)

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// Server implements google.logging.v2.LoggingServiceV2 (ListLogEntries only).
type Server struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	c *core.Core
}

// New returns a Cloud Logging server over c's audit log.
func New(c *core.Core) *Server { return &Server{c: c} }

// Register registers the LoggingServiceV2 service on g.
func (s *Server) Register(g *grpc.Server) { loggingpb.RegisterLoggingServiceV2Server(g, s) }

// pageToken is the decoded page_token: the sort key of the last entry
// returned and a hash of the query it belongs to.
type pageToken struct {
	Time     time.Time `json:"t"`
	InsertID string    `json:"i"`
	Query    uint64    `json:"q"`
}

// ListLogEntries lists audit entries of the named projects.
func (s *Server) ListLogEntries(ctx context.Context, req *loggingpb.ListLogEntriesRequest) (*loggingpb.ListLogEntriesResponse, error) {
	if len(req.GetResourceNames()) == 0 {
		return nil, core.Errorf(codes.InvalidArgument, "resource_names: at least one resource name is required")
	}
	var prefixes []string
	for _, rn := range req.GetResourceNames() {
		id, ok := strings.CutPrefix(rn, "projects/")
		if !ok || id == "" || strings.Contains(id, "/") {
			return nil, core.Errorf(codes.InvalidArgument,
				"resource_names: %q is not supported by the emulator (only projects/PROJECT)", rn)
		}
		p, found := s.c.Projects.Lookup(id)
		if !found {
			return nil, core.Errorf(codes.PermissionDenied,
				"The caller does not have permission to list log entries of %s (or it does not exist).", rn)
		}
		prefixes = append(prefixes, "projects/"+p.ID+"/logs/", "projects/"+p.NumberString()+"/logs/")
	}

	desc := false
	switch strings.Join(strings.Fields(req.GetOrderBy()), " ") {
	case "", "timestamp", "timestamp asc":
	case "timestamp desc":
		desc = true
	default:
		return nil, core.Errorf(codes.InvalidArgument, "order_by %q: want \"timestamp asc\" or \"timestamp desc\"", req.GetOrderBy())
	}

	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		return nil, core.Errorf(codes.InvalidArgument, "page_size %d: want 0..%d", size, maxPageSize)
	case size == 0:
		size = defaultPageSize
	}

	f, err := parseFilter(req.GetFilter())
	if err != nil {
		return nil, core.Errorf(codes.InvalidArgument, "filter: %v", err)
	}

	query := queryHash(req)
	var after *pageToken
	if t := req.GetPageToken(); t != "" {
		tok, err := decodeToken(t)
		if err != nil || tok.Query != query {
			return nil, core.Errorf(codes.InvalidArgument, "page_token is invalid or belongs to another query")
		}
		after = tok
	}

	var matched []*core.LogEntry
	for _, e := range s.c.Audit.Entries() {
		if !hasAnyPrefix(e.LogName, prefixes) {
			continue
		}
		if !f.eval(&entryView{e: e}) {
			continue
		}
		matched = append(matched, e)
	}
	sort.SliceStable(matched, func(i, j int) bool {
		if desc {
			return less(matched[j], matched[i])
		}
		return less(matched[i], matched[j])
	})
	if after != nil {
		i := sort.Search(len(matched), func(i int) bool {
			c := compareKey(matched[i], after.Time, after.InsertID)
			if desc {
				return c < 0
			}
			return c > 0
		})
		matched = matched[i:]
	}

	resp := &loggingpb.ListLogEntriesResponse{}
	for i, e := range matched {
		if i == size {
			last := matched[i-1]
			resp.NextPageToken = encodeToken(pageToken{Time: last.Timestamp, InsertID: last.InsertID, Query: query})
			break
		}
		pe, err := EntryProto(e)
		if err != nil {
			return nil, core.Errorf(codes.Internal, "converting entry %s: %v", e.InsertID, err)
		}
		resp.Entries = append(resp.Entries, pe)
	}
	return resp, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func compareKey(e *core.LogEntry, t time.Time, insertID string) int {
	if c := e.Timestamp.Compare(t); c != 0 {
		return c
	}
	return strings.Compare(e.InsertID, insertID)
}

func less(a, b *core.LogEntry) bool { return compareKey(a, b.Timestamp, b.InsertID) < 0 }

func queryHash(req *loggingpb.ListLogEntriesRequest) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%q|%q|%q", req.GetResourceNames(), req.GetFilter(), req.GetOrderBy())
	return h.Sum64()
}

func encodeToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (*pageToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decoding page token: %w", err)
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("decoding page token: %w", err)
	}
	return &t, nil
}

// EntryProto converts an emulator audit entry to the Cloud Logging API's
// LogEntry, with proto_payload an Any holding google.cloud.audit.AuditLog.
// Fields the AuditLog proto lacks (authorizationInfo[].permissionType) are
// dropped.
func EntryProto(e *core.LogEntry) (*loggingpb.LogEntry, error) {
	out := &loggingpb.LogEntry{
		LogName:          e.LogName,
		Resource:         &monitoredres.MonitoredResource{Type: e.Resource.Type, Labels: e.Resource.Labels},
		Timestamp:        timestamppb.New(e.Timestamp),
		ReceiveTimestamp: timestamppb.New(e.ReceiveTimestamp),
		Severity:         ltype.LogSeverity(ltype.LogSeverity_value[e.Severity]),
		InsertId:         e.InsertID,
		Labels:           e.Labels,
	}
	if e.Operation != nil {
		out.Operation = &loggingpb.LogEntryOperation{
			Id: e.Operation.ID, Producer: e.Operation.Producer, First: e.Operation.First, Last: e.Operation.Last,
		}
	}
	if e.ProtoPayload != nil {
		b, err := json.Marshal(e.ProtoPayload)
		if err != nil {
			return nil, fmt.Errorf("encoding protoPayload: %w", err)
		}
		var al auditpb.AuditLog
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &al); err != nil {
			return nil, fmt.Errorf("decoding protoPayload as AuditLog: %w", err)
		}
		a, err := anypb.New(&al)
		if err != nil {
			return nil, fmt.Errorf("wrapping AuditLog: %w", err)
		}
		out.Payload = &loggingpb.LogEntry_ProtoPayload{ProtoPayload: a}
	}
	return out, nil
}
