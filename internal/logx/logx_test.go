package logx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestNewUsesCloudLoggingFieldNames(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		want  string
	}{
		{"debug", slog.LevelDebug, "DEBUG"},
		{"info", slog.LevelInfo, "INFO"},
		{"warning", slog.LevelWarn, "WARNING"},
		{"error", slog.LevelError, "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			New(&buf, slog.LevelDebug).Log(t.Context(), tt.level, "hello", Trace("p", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, buf.String())
			}
			if got["severity"] != tt.want || got["message"] != "hello" {
				t.Errorf("severity/message = %v/%v, want %s/hello", got["severity"], got["message"], tt.want)
			}
			if got[TraceKey] != "projects/p/traces/0af7651916cd43dd8448eb211c80319c" {
				t.Errorf("trace = %v", got[TraceKey])
			}
			if _, ok := got["level"]; ok {
				t.Error("level key still present")
			}
		})
	}
}

func TestTraceGarbage(t *testing.T) {
	if a := Trace("p", "garbage"); a.Key != "" {
		t.Errorf("Trace(garbage) = %v, want empty", a)
	}
}
