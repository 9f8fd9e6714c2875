package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// slogHCLog lets hashicorp/raft, which logs through hclog, write to the node's slog.Logger.
// Raft's own debug and trace lines are dropped below Config.RaftLogLevel.
type slogHCLog struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []any
}

func newHCLog(l *slog.Logger, level hclog.Level) hclog.Logger {
	return &slogHCLog{l: l, level: level}
}

func (h *slogHCLog) slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (h *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Warn && msg == firstElection && argValue(args, "last-leader-id") == "" {
		// A node that never saw a leader since it started elects one: every start of a
		// lone voter (a plain dmq server) does, so it is news, not a warning. A follower
		// that lost its leader still warns.
		level = hclog.Info
	}
	if level == hclog.Off || (level != hclog.NoLevel && level < h.level) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		all = append(all, "component", h.name)
	}
	all = append(append(all, h.args...), args...)
	for i, a := range all {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			// hclog.Fmt("%+v", v): a value to format, as hclog's own writer does.
			format, _ := f[0].(string)
			all[i] = fmt.Sprintf(format, f[1:]...)
		}
	}
	h.l.Log(context.Background(), h.slogLevel(level), msg, all...)
}

// firstElection is raft's line when a follower's heartbeat timeout fires.
const firstElection = "heartbeat timeout reached, starting election"

// argValue is the value after key in hclog's key/value args, as text ("" if absent).
func argValue(args []any, key string) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

func (h *slogHCLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHCLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHCLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHCLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHCLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *slogHCLog) IsTrace() bool                 { return h.level <= hclog.Trace }
func (h *slogHCLog) IsDebug() bool                 { return h.level <= hclog.Debug }
func (h *slogHCLog) IsInfo() bool                  { return h.level <= hclog.Info }
func (h *slogHCLog) IsWarn() bool                  { return h.level <= hclog.Warn }
func (h *slogHCLog) IsError() bool                 { return h.level <= hclog.Error }
func (h *slogHCLog) ImpliedArgs() []any            { return h.args }
func (h *slogHCLog) Name() string                  { return h.name }
func (h *slogHCLog) SetLevel(level hclog.Level)    { h.level = level }
func (h *slogHCLog) GetLevel() hclog.Level         { return h.level }

func (h *slogHCLog) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *slogHCLog) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *slogHCLog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}

func (h *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(opts).Writer()
}
