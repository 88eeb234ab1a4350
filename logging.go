package ledger

import (
	"context"
	"log/slog"
	"time"
)

// The ledger's own diagnostics go to Options.Logger (a discarding logger
// when it is nil). Every record carries the attribute "operation" where
// one is concerned. The messages:
//
//	ledger: heartbeat error          WARN (INFO for abortFlagSet): type, message, error
//	ledger: participant crashed      WARN: victim, seen ("lease ended", "stale", "reported")
//	ledger: request retried          INFO: path, attempt, pause, error
//	ledger: stream reconnecting      INFO: pause, error
//	ledger: stream unavailable       WARN: the server does not stream; polling the state
//
// None of them is on the path of a change that succeeds at once.

// discardLogger is the logger of a ledger whose Options.Logger is nil.
var discardLogger = slog.New(slog.DiscardHandler)

// logHeartbeatError logs a heartbeat error of operation id.
func logHeartbeatError(log *slog.Logger, id string, err *HeartbeatError) {
	level := slog.LevelWarn
	if err.Type == HeartbeatAbortFlagSet {
		level = slog.LevelInfo
	}
	if !log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("operation", id), slog.String("type", err.Type.String()), slog.String("message", err.Message),
	}
	if err.Cause != nil {
		attrs = append(attrs, slog.String("error", err.Cause.Error()))
	}
	log.LogAttrs(context.Background(), level, "ledger: heartbeat error", attrs...)
}

// logVerdict logs that this process declared victim crashed in operation
// id; seen says how it knew.
func logVerdict(log *slog.Logger, id string, victim participant, seen string) {
	log.LogAttrs(context.Background(), slog.LevelWarn, "ledger: participant crashed",
		slog.String("operation", id), slog.String("victim", victim.key()), slog.String("seen", seen))
}

// logRetry logs that a request to path is sent again after err.
func logRetry(log *slog.Logger, path string, attempt int, pause time.Duration, err error) {
	log.LogAttrs(context.Background(), slog.LevelInfo, "ledger: request retried",
		slog.String("path", path), slog.Int("attempt", attempt), slog.Duration("pause", pause), slog.String("error", err.Error()))
}

// logReconnect logs that the stream of operation id is opened again after
// pause, having ended with err (nil: the server ended it).
func logReconnect(log *slog.Logger, id string, pause time.Duration, err error) {
	msg := "ended by the server"
	if err != nil {
		msg = err.Error()
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "ledger: stream reconnecting",
		slog.String("operation", id), slog.Duration("pause", pause), slog.String("error", msg))
}
