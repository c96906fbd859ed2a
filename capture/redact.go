package capture

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
)

// redactedPassword stands for a password, as url.URL.Redacted writes it.
const redactedPassword = "xxxxx"

// Redact is a source as status, logs and errors may show it: the password
// of a URL's userinfo (rtsp://user:secret@cam/1) replaced by "xxxxx". Any
// other source, and a URL without a password, is returned as it is.
func Redact(source string) string {
	scheme, rest, found := strings.Cut(source, "://")
	if !found {
		return source
	}
	if u, err := url.Parse(source); err == nil {
		if _, ok := u.User.Password(); !ok {
			return source
		}
		return u.Redacted()
	}
	// url.Parse refuses what ffmpeg may still take (a "%" not followed
	// by two hex digits): the userinfo is then found as both find it, up
	// to the last "@" before the path, query or fragment.
	authority := rest
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority = rest[:end]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return source
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return source
	}
	return scheme + "://" + user + ":" + redactedPassword + rest[at:]
}

// RedactIn is text (an error, a helper's output) with every occurrence of
// source in it redacted.
func RedactIn(text, source string) string {
	if shown := Redact(source); shown != source {
		return strings.ReplaceAll(text, source, shown)
	}
	return text
}

// redactedError is err shown as msg, its source redacted.
type redactedError struct {
	err error
	msg string
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// redactLog is log with source redacted from every message and string or
// error attribute: ffmpeg's stderr and its errors quote the URL as given.
func redactLog(log *slog.Logger, source string) *slog.Logger {
	if Redact(source) == source {
		return log
	}
	return slog.New(redactHandler{Handler: log.Handler(), source: source})
}

type redactHandler struct {
	slog.Handler
	source string
}

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, RedactIn(r.Message, h.source), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return redactHandler{Handler: h.Handler.WithAttrs(red), source: h.source}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{Handler: h.Handler.WithGroup(name), source: h.source}
}

func (h redactHandler) attr(a slog.Attr) slog.Attr {
	switch v := a.Value.Resolve(); v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(RedactIn(v.String(), h.source))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			a.Value = slog.StringValue(RedactIn(err.Error(), h.source))
		}
	case slog.KindGroup:
		group := v.Group()
		red := make([]slog.Attr, len(group))
		for i, g := range group {
			red[i] = h.attr(g)
		}
		a.Value = slog.GroupValue(red...)
	}
	return a
}
