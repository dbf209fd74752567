// Package logx configures log/slog for Cloud Logging: JSON on stdout with
// the field names Cloud Logging's structured-logging agent recognises
// (severity, message, time, logging.googleapis.com/trace).
package logx

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// TraceKey is the structured-logging field that links a log line to a trace.
const TraceKey = "logging.googleapis.com/trace"

// New returns a JSON logger writing to w at level.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.String("severity", Severity(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	}))
}

// Severity maps a slog level to Cloud Logging's severity names.
func Severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

// Trace returns the Cloud Logging trace attribute for a W3C traceparent
// ("00-TRACEID-SPANID-FLAGS") in project, or an empty attr.
func Trace(project, traceparent string) slog.Attr {
	parts := strings.Split(traceparent, "-")
	if project == "" || len(parts) != 4 || len(parts[1]) != 32 {
		return slog.Attr{}
	}
	return slog.String(TraceKey, "projects/"+project+"/traces/"+parts[1])
}

type ctxKey struct{}

// With returns ctx carrying l.
func With(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// From returns the logger in ctx, or slog.Default().
func From(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
