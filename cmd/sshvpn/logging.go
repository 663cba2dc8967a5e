package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
)

// newLogger is every command's logger: lines on w in format, without the
// attributes that say nothing (a nil error, an empty list), which would
// read as err=<nil>, routes=[] or drops=map[].
func newLogger(w io.Writer, level slog.Leveler, format logFormat) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == logJSON {
		return slog.New(tidyHandler{slog.NewJSONHandler(w, opts)})
	}
	return slog.New(tidyHandler{slog.NewTextHandler(w, opts)})
}

// logFormat is --log-format: key=value text for people, or one JSON
// object a line for a log collector.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string {
	if *f == "" {
		return string(logText)
	}
	return string(*f)
}

// Set implements flag.Value.
func (f *logFormat) Set(s string) error {
	switch logFormat(s) {
	case logText, logJSON:
		*f = logFormat(s)
		return nil
	}
	return fmt.Errorf("unknown log format %q (want text or json)", s)
}

// logFormatUsage is --log-format's help, the same for every command.
const logFormatUsage = "log line `format`: text (key=value) or json (one object a line)"

// tidyHandler drops empty attributes before its Handler formats them.
type tidyHandler struct{ slog.Handler }

func (h tidyHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if !empty(a) {
			out.AddAttrs(a)
		}
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h tidyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var kept []slog.Attr
	for _, a := range attrs {
		if !empty(a) {
			kept = append(kept, a)
		}
	}
	return tidyHandler{h.Handler.WithAttrs(kept)}
}

func (h tidyHandler) WithGroup(name string) slog.Handler {
	return tidyHandler{h.Handler.WithGroup(name)}
}

// empty reports an attribute with nothing to say: a nil value or error,
// an empty slice or map, an empty group.
func empty(a slog.Attr) bool {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		return len(v.Group()) == 0
	case slog.KindAny:
		x := v.Any()
		if x == nil {
			return true
		}
		switch rv := reflect.ValueOf(x); rv.Kind() {
		case reflect.Slice, reflect.Map:
			return rv.Len() == 0
		case reflect.Pointer, reflect.Interface:
			return rv.IsNil()
		}
	}
	return false
}
