package server

import "github.com/clipd/clipd/internal/quote"

// Quote renders a string a client sent for use in an error message sent
// back: Go-quoted, so that control characters and invalid UTF-8 are
// escaped, and cut to a few dozen bytes, so that a client cannot make the
// daemon echo megabytes.
func Quote(s string) string { return quote.Bounded(s) }

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string { return quote.Truncate(s, n) }
