package server

import (
	"strconv"
	"unicode/utf8"
)

// maxQuoted bounds how much of a client's string an error message repeats.
const maxQuoted = 64

// Quote renders a string a client sent for use in an error message sent
// back: Go-quoted, so that control characters and invalid UTF-8 are
// escaped, and cut to a few dozen bytes, so that a client cannot make the
// daemon echo megabytes.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(truncateUTF8(s, maxQuoted)) + "…"
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
