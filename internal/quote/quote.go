// Package quote renders text that came from outside (a socket client, a
// labels file) for an error message, bounded, so that an error never
// repeats megabytes of what it complains about. The socket's limit,
// documented in docs/socket.md, is this package's MaxBytes.
package quote

import (
	"strconv"
	"unicode/utf8"
)

// MaxBytes bounds how much of a string an error message repeats.
const MaxBytes = 64

// Bounded is s Go-quoted, so that control characters and invalid UTF-8
// are escaped, and cut to MaxBytes (before escaping) with "…" when longer.
func Bounded(s string) string {
	if len(s) <= MaxBytes {
		return strconv.Quote(s)
	}
	return strconv.Quote(Truncate(s, MaxBytes)) + "…"
}

// Truncate cuts s to at most n bytes without splitting a character.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
