package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean returns the text that the original feeds to its split pattern:
// whitespace_clean(basic_clean(text)).lower(), that is ftfy.fix_text (see
// the package documentation for what is reproduced), html.unescape twice,
// runs of whitespace collapsed to one space, stripped, lowercased with
// Python's str.lower rules. Invalid UTF-8 bytes read as U+FFFD, since
// Python strings cannot hold them.
func Clean(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = fixText(text)
	text = pythonHTMLUnescape(pythonHTMLUnescape(text))
	text = collapseSpace(text)
	return pythonLower(text)
}

// isPythonSpace is str.isspace(), which Python's re uses for \s and
// str.strip() for what to strip; unlike unicode.IsSpace it includes the
// information separators U+001C..U+001F.
func isPythonSpace(r rune) bool {
	switch {
	case r < 0x80:
		return r == ' ' || ('\t' <= r && r <= '\r') || (0x1c <= r && r <= 0x1f)
	case r == 0x85 || r == 0xa0 || r == 0x1680 || r == 0x2028 || r == 0x2029 ||
		r == 0x202f || r == 0x205f || r == 0x3000:
		return true
	default:
		return 0x2000 <= r && r <= 0x200a
	}
}

// collapseSpace is re.sub(r'\s+', ' ', text).strip().
func collapseSpace(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	pendingSpace := false
	for _, r := range text {
		if isPythonSpace(r) {
			pendingSpace = true
			continue
		}
		if pendingSpace && b.Len() > 0 {
			b.WriteByte(' ')
		}
		pendingSpace = false
		b.WriteRune(r)
	}
	return b.String()
}

// pythonLower is Python's str.lower(): the full lowercase mapping, whose
// only unconditional multi-rune case is U+0130 → "i̇", plus the Final_Sigma
// rule that lowers a word-final Σ to ς. Go's unicode.ToLower does neither.
func pythonLower(text string) string {
	ascii := true
	for i := 0; i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(text)
	}
	runes := []rune(text)
	var b strings.Builder
	b.Grow(len(text))
	for i, r := range runes {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3a3:
			if finalSigma(runes, i) {
				b.WriteRune(0x3c2)
			} else {
				b.WriteRune(0x3c3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma follows CPython's handle_capital_sigma: Σ preceded by a cased
// letter and not followed by one, skipping case-ignorable runes both ways.
func finalSigma(runes []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(runes[j]) {
		j--
	}
	if j < 0 || !isCased(runes[j]) {
		return false
	}
	j = i + 1
	for j < len(runes) && isCaseIgnorable(runes[j]) {
		j++
	}
	return j == len(runes) || !isCased(runes[j])
}

// isCased is the Unicode derived property Cased.
func isCased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// isCaseIgnorable is the Unicode derived property Case_Ignorable: marks,
// format characters, modifiers, and the Word_Break MidLetter, MidNumLet and
// Single_Quote characters.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '^', '`', 0xa8, 0xad, 0xaf, 0xb4, 0xb7, 0xb8, 0x387, 0x55f, 0x5f4,
		0x2018, 0x2019, 0x2024, 0x2027, 0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// splitPieces walks text like the original's findall with
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// compiled with IGNORECASE by Python's regex module: at each position the
// first alternative that matches wins, and runes matching none (whitespace)
// are skipped. A hand-written scanner because RE2's \s is ASCII-only.
func splitPieces(text string, emit func(piece string)) {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		rest := text[i:]
		if r == '<' {
			if n := foldPrefix(rest, startOfText); n > 0 {
				emit(rest[:n])
				i += n
				continue
			}
			if n := foldPrefix(rest, endOfText); n > 0 {
				emit(rest[:n])
				i += n
				continue
			}
		}
		if r == '\'' {
			if n := contraction(rest); n > 0 {
				emit(rest[:n])
				i += n
				continue
			}
		}
		switch {
		case unicode.IsLetter(r):
			end := i + size
			for end < len(text) {
				next, n := utf8.DecodeRuneInString(text[end:])
				if !unicode.IsLetter(next) {
					break
				}
				end += n
			}
			emit(text[i:end])
			i = end
		case unicode.IsNumber(r):
			emit(rest[:size])
			i += size
		case unicode.Is(unicode.White_Space, r):
			i += size
		default:
			end := i + size
			for end < len(text) {
				next, n := utf8.DecodeRuneInString(text[end:])
				if unicode.IsLetter(next) || unicode.IsNumber(next) || unicode.Is(unicode.White_Space, next) {
					break
				}
				end += n
			}
			emit(text[i:end])
			i = end
		}
	}
}

var contractions = []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// contraction returns the byte length of the contraction text starts with,
// or 0.
func contraction(text string) int {
	for _, c := range contractions {
		if n := foldPrefix(text, c); n > 0 {
			return n
		}
	}
	return 0
}

// foldPrefix reports the byte length of the prefix of text that equals
// pattern under simple case folding (IGNORECASE: "ſ" matches "s"), or 0.
func foldPrefix(text, pattern string) int {
	n := 0
	for _, p := range pattern {
		if n >= len(text) {
			return 0
		}
		r, size := utf8.DecodeRuneInString(text[n:])
		if !foldEqual(r, p) {
			return 0
		}
		n += size
	}
	return n
}

func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(b); f != b; f = unicode.SimpleFold(f) {
		if f == a {
			return true
		}
	}
	return false
}
