package tokenizer

import (
	"html"
	"strings"
	"unicode/utf8"
)

// pythonHTMLUnescape is Python's html.unescape: named references with or
// without ';' (longest legacy prefix wins: "&ampx" is "&x"), decimal and hex
// references, with the HTML5 replacements for invalid numbers. Go's
// html.UnescapeString differs for invalid code points and long names, so
// only the table lookup is delegated to it.
func pythonHTMLUnescape(s string) string {
	amp := strings.IndexByte(s, '&')
	if amp < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for amp >= 0 {
		b.WriteString(s[:amp])
		s = s[amp:]
		replacement, consumed := unescapeReference(s)
		if consumed == 0 {
			b.WriteByte('&')
			consumed = 1
		} else {
			b.WriteString(replacement)
		}
		s = s[consumed:]
		amp = strings.IndexByte(s, '&')
	}
	b.WriteString(s)
	return b.String()
}

// unescapeReference decodes the reference at the start of s (which begins
// with '&'), returning how many bytes it used; 0 means s does not start with
// something Python's pattern matches.
func unescapeReference(s string) (string, int) {
	if len(s) < 2 {
		return "", 0
	}
	if s[1] == '#' {
		return numericReference(s)
	}
	// Python: [^\t\n\f <&#;]{1,32};?
	end := 1
	for count := 0; count < 32 && end < len(s); count++ {
		r, size := utf8.DecodeRuneInString(s[end:])
		if r == '\t' || r == '\n' || r == '\f' || r == ' ' || r == '<' || r == '&' || r == '#' || r == ';' {
			break
		}
		end += size
	}
	if end == 1 {
		return "", 0
	}
	if end < len(s) && s[end] == ';' {
		end++
	}
	name := s[1:end]
	if value, ok := html5Entity(name); ok {
		return value, end
	}
	// Only the leading ASCII-alphanumeric run can hold a known name.
	alnum := 0
	for alnum < len(name) && isASCIIAlnum(name[alnum]) {
		alnum++
	}
	for x := min(len(name)-1, alnum); x > 1; x-- {
		if value, ok := html5Entity(name[:x]); ok {
			return value + name[x:], end
		}
	}
	return "&" + name, end
}

func isASCIIAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

func isASCIIHex(c byte) bool {
	return ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') || ('0' <= c && c <= '9')
}

// numericReference handles "&#123;" and "&#x7B;" (';' optional).
func numericReference(s string) (string, int) {
	start, base := 2, 10
	digit := func(c byte) bool { return '0' <= c && c <= '9' }
	if len(s) > 2 && '0' <= s[2] && s[2] <= '9' {
		// decimal
	} else if len(s) > 3 && (s[2] == 'x' || s[2] == 'X') && isASCIIHex(s[3]) {
		start, base, digit = 3, 16, isASCIIHex
	} else {
		return "", 0
	}
	end := start
	num := 0
	for end < len(s) && digit(s[end]) {
		if num <= 0x10FFFF {
			num = num*base + hexValue(s[end])
		}
		end++
	}
	if end < len(s) && s[end] == ';' {
		end++
	}
	return charReference(num), end
}

func hexValue(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

// invalidCharrefs is html._invalid_charrefs: numbers the HTML5 spec maps
// to other characters (mostly Windows-1252 readings of C1 controls).
var invalidCharrefs = map[int]string{
	0x00: "\ufffd", 0x0d: "\r", 0x80: "\u20ac", 0x81: "\u0081", 0x82: "\u201a",
	0x83: "\u0192", 0x84: "\u201e", 0x85: "\u2026", 0x86: "\u2020", 0x87: "\u2021",
	0x88: "\u02c6", 0x89: "\u2030", 0x8a: "\u0160", 0x8b: "\u2039", 0x8c: "\u0152",
	0x8d: "\u008d", 0x8e: "\u017d", 0x8f: "\u008f", 0x90: "\u0090", 0x91: "\u2018",
	0x92: "\u2019", 0x93: "\u201c", 0x94: "\u201d", 0x95: "\u2022", 0x96: "\u2013",
	0x97: "\u2014", 0x98: "\u02dc", 0x99: "\u2122", 0x9a: "\u0161", 0x9b: "\u203a",
	0x9c: "\u0153", 0x9d: "\u009d", 0x9e: "\u017e", 0x9f: "\u0178",
}

func charReference(num int) string {
	if s, ok := invalidCharrefs[num]; ok {
		return s
	}
	if (0xD800 <= num && num <= 0xDFFF) || num > 0x10FFFF {
		return "\ufffd"
	}
	if isInvalidCodepoint(num) {
		return ""
	}
	return string(rune(num))
}

// isInvalidCodepoint is html._invalid_codepoints: controls and
// noncharacters that Python drops.
func isInvalidCodepoint(n int) bool {
	switch {
	case 0x1 <= n && n <= 0x8, n == 0xb, 0xe <= n && n <= 0x1f, 0x7f <= n && n <= 0x9f,
		0xfdd0 <= n && n <= 0xfdef:
		return true
	}
	return n&0xfffe == 0xfffe
}

// html5Entity looks name up in the HTML5 named character reference table
// (Python's html.entities.html5, which Go's html package also carries).
// Names are ASCII letters and digits, with ';' or one of the legacy names
// allowed without it.
func html5Entity(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	body := strings.TrimSuffix(name, ";")
	if body == "" {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		if !isASCIIAlnum(body[i]) {
			return "", false
		}
	}
	if value, ok := entityExceptions[name]; ok {
		return value, true
	}
	ref := "&" + name
	value := html.UnescapeString(ref)
	if value == ref {
		return "", false
	}
	// When name itself is unknown Go falls back to a legacy prefix and
	// copies the rest of the name, so the result ends in a letter or digit
	// (plus the ';'); no entity's own value ends that way.
	tail := strings.TrimSuffix(value, ";")
	if tail != value && !strings.HasSuffix(name, ";") {
		return "", false
	}
	if tail != "" && isASCIIAlnum(tail[len(tail)-1]) {
		return "", false
	}
	return value, true
}

// entityExceptions are the names the probing above cannot read from Go's
// table: Go lacks nGt; and nLt;, and fjlig;'s value ends in a letter.
var entityExceptions = map[string]string{
	"fjlig;": "fj",
	"nGt;":   "\u226b\u20d2",
	"nLt;":   "\u226a\u20d2",
}
