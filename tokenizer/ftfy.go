package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// maxDecodeLength is ftfy's default max_decode_length: longer lines are
// fixed in pieces of this many code points.
const maxDecodeLength = 1_000_000

// fixText is ftfy.fix_text with its default configuration (ftfy 6.3.1):
// each line (up to and including its '\n') is fixed on its own, and the
// fixers repeat until the line stops changing.
func fixText(text string) string {
	unescape := true
	var out strings.Builder
	out.Grow(len(text))
	for len(text) > 0 {
		end := strings.IndexByte(text, '\n') + 1
		if end == 0 {
			end = len(text)
		}
		if utf8.RuneCountInString(text[:end]) > maxDecodeLength {
			end = runeOffset(text, maxDecodeLength)
		}
		segment := text[:end]
		text = text[end:]
		// unescape_html="auto": a '<' suggests real HTML, where entities
		// are probably meant literally. ftfy keeps that decision for every
		// later line too.
		if unescape && strings.Contains(segment, "<") {
			unescape = false
		}
		out.WriteString(fixSegment(segment, unescape))
	}
	return out.String()
}

func runeOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

// fixSegment is ftfy's fix_and_explain loop without the explanations.
func fixSegment(text string, unescape bool) string {
	for {
		orig := text
		if unescape {
			text = ftfyUnescapeHTML(text)
		}
		text = fixEncoding(text)
		text = fixC1Controls(text)
		text = mapRunes(text, latinLigatures)
		text = mapRunes(text, widthMap)
		text = uncurlQuotes(text)
		text = fixLineBreaks(text)
		// fix_surrogates has nothing to do: Go strings hold no surrogates.
		text = removeTerminalEscapes(text)
		text = removeControlChars(text)
		text = norm.NFC.String(text)
		if text == orig {
			return text
		}
	}
}

// ftfyUnescapeHTML is ftfy.fixes.unescape_html: only complete references
// "&#?[0-9A-Za-z]{1,24};", named ones also in all-capitals ("&EACUTE;"),
// numeric ones only if Python's unescape consumes the ';'.
func ftfyUnescapeHTML(text string) string {
	if !strings.Contains(text, "&") {
		return text
	}
	var b strings.Builder
	for {
		amp := strings.IndexByte(text, '&')
		if amp < 0 {
			break
		}
		b.WriteString(text[:amp])
		text = text[amp:]
		i := 1
		if i < len(text) && text[i] == '#' {
			i++
		}
		start := i
		for i < len(text) && i-start < 24 && isASCIIAlnum(text[i]) {
			i++
		}
		if i == start || i >= len(text) || text[i] != ';' {
			// No match here; the regex resumes at the next character.
			b.WriteByte('&')
			text = text[1:]
			continue
		}
		ref := text[:i+1]
		b.WriteString(ftfyEntity(ref))
		text = text[i+1:]
	}
	b.WriteString(text)
	return b.String()
}

func ftfyEntity(ref string) string {
	if strings.HasPrefix(ref, "&#") {
		unescaped := pythonHTMLUnescape(ref)
		if strings.Contains(unescaped, ";") {
			return ref
		}
		return unescaped
	}
	name := ref[1:]
	if value, ok := html5Entity(name); ok {
		return value
	}
	// chardata.HTML_ENTITIES also holds the all-capitals spelling of every
	// lowercase name, when that spelling is not itself decodable.
	lower := strings.ToLower(name)
	if name == strings.ToUpper(name) && lower != name {
		if value, ok := html5Entity(lower); ok && pythonHTMLUnescape(ref) == ref {
			return pythonUpper(value)
		}
	}
	return ref
}

// pythonUpper is str.upper() for the values of HTML entities: the full
// uppercase mapping, which expands ß and the Latin ligatures.
func pythonUpper(s string) string {
	var b strings.Builder
	for _, r := range s {
		if special, ok := upperSpecial[r]; ok {
			b.WriteString(special)
			continue
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// upperSpecial lists SpecialCasing.txt's unconditional uppercase expansions
// for characters that HTML entities produce.
var upperSpecial = map[rune]string{
	'ß': "SS", 'ŉ': "ʼN", 'ǰ': "J̌", 'ΐ': "Ϊ́", 'ΰ': "Ϋ́",
	'ﬀ': "FF", 'ﬁ': "FI", 'ﬂ': "FL", 'ﬃ': "FFI", 'ﬄ': "FFL", 'ﬅ': "ST", 'ﬆ': "ST",
}

// fixC1Controls reads C1 controls U+0080..U+009F as the Windows-1252
// characters they most likely were (ftfy's sloppy-windows-1252 keeps the
// five undefined ones as they are).
func fixC1Controls(text string) string {
	return mapRunes(text, func(r rune) (string, bool) {
		if 0x80 <= r && r <= 0x9f {
			return string(sloppyWindows1252[r-0x80]), true
		}
		return "", false
	})
}

// sloppyWindows1252 is bytes 0x80..0x9F in ftfy's sloppy-windows-1252.
var sloppyWindows1252 = []rune("€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ")

// mapRunes replaces each rune for which replace reports true.
func mapRunes(text string, replace func(rune) (string, bool)) string {
	var b *strings.Builder
	for i, r := range text {
		repl, ok := replace(r)
		if !ok {
			if b != nil {
				b.WriteRune(r)
			}
			continue
		}
		if b == nil {
			b = &strings.Builder{}
			b.Grow(len(text))
			b.WriteString(text[:i])
		}
		b.WriteString(repl)
	}
	if b == nil {
		return text
	}
	return b.String()
}

// latinLigatures is ftfy's fix_latin_ligatures table; ligatures such as æ
// that are used on purpose are left alone.
func latinLigatures(r rune) (string, bool) {
	switch r {
	case 'Ĳ':
		return "IJ", true
	case 'ĳ':
		return "ij", true
	case 'ŉ':
		return "ʼn", true
	case 'Ǳ':
		return "DZ", true
	case 'ǲ':
		return "Dz", true
	case 'ǳ':
		return "dz", true
	case 'Ǆ':
		return "DŽ", true
	case 'ǅ':
		return "Dž", true
	case 'ǆ':
		return "dž", true
	case 'Ǉ':
		return "LJ", true
	case 'ǈ':
		return "Lj", true
	case 'ǉ':
		return "lj", true
	case 'Ǌ':
		return "NJ", true
	case 'ǋ':
		return "Nj", true
	case 'ǌ':
		return "nj", true
	case 'ﬀ':
		return "ff", true
	case 'ﬁ':
		return "fi", true
	case 'ﬂ':
		return "fl", true
	case 'ﬃ':
		return "ffi", true
	case 'ﬄ':
		return "ffl", true
	case 'ﬅ':
		return "ſt", true
	case 'ﬆ':
		return "st", true
	}
	return "", false
}

// widthMap is ftfy's fix_character_width: U+3000 becomes a space and the
// halfwidth and fullwidth forms U+FF01..U+FFEF their NFKC equivalents.
func widthMap(r rune) (string, bool) {
	if r == 0x3000 {
		return " ", true
	}
	if r < 0xff01 || r > 0xffef {
		return "", false
	}
	alt := norm.NFKC.String(string(r))
	return alt, alt != string(r)
}

// uncurlQuotes is ftfy's uncurl_quotes.
func uncurlQuotes(text string) string {
	return mapRunes(text, func(r rune) (string, bool) {
		switch {
		case r == 0x2bc || (0x2018 <= r && r <= 0x201b):
			return "'", true
		case 0x201c <= r && r <= 0x201f:
			return `"`, true
		}
		return "", false
	})
}

var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n")

// fixLineBreaks is ftfy's fix_line_breaks. The replacements are applied in
// order in ftfy, but none can create another's input, so one pass is equal.
func fixLineBreaks(text string) string {
	if !strings.ContainsAny(text, "\r\u2028\u2029\u0085") {
		return text
	}
	return lineBreaks.Replace(text)
}

// removeTerminalEscapes is ftfy's remove_terminal_escapes, deleting
// "\x1b[" digits-or-semicolons letter.
func removeTerminalEscapes(text string) string {
	if !strings.Contains(text, "\x1b[") {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, "\x1b[")
		if i < 0 {
			break
		}
		j := i + 2
		for j < len(text) && (('0' <= text[j] && text[j] <= '9') || text[j] == ';') {
			j++
		}
		if j < len(text) && (('a' <= text[j] && text[j] <= 'z') || ('A' <= text[j] && text[j] <= 'Z')) {
			b.WriteString(text[:i])
			text = text[j+1:]
			continue
		}
		b.WriteString(text[:i+1])
		text = text[i+1:]
	}
	b.WriteString(text)
	return b.String()
}

// removeControlChars is ftfy's remove_control_chars: C0 controls other
// than tab and line breaks, DEL, deprecated format characters, BOM and the
// interlinear annotation characters.
func removeControlChars(text string) string {
	return mapRunes(text, func(r rune) (string, bool) {
		switch {
		case r <= 0x08, r == 0x0b, 0x0e <= r && r <= 0x1f, r == 0x7f,
			0x206a <= r && r <= 0x206f, r == 0xfeff, 0xfff9 <= r && r <= 0xfffc:
			return "", true
		}
		return "", false
	})
}
