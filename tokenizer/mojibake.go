package tokenizer

import (
	"bytes"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// This file ports ftfy 6.3.1's fix_encoding: when text looks like UTF-8
// that was decoded with a single-byte encoding ("cafÃ©"), encode it back
// with that encoding and decode it as UTF-8. ftfy's heuristic is data
// (which character sequences are "bad"), so the tables below are
// transcribed from ftfy's badness.py and chardata.py (Apache-2.0).

// singleByteEncoding is one of ftfy's CHARMAP_ENCODINGS.
type singleByteEncoding struct {
	name   string
	sloppy bool
	decode [256]rune
	encode map[rune]byte
	// possible holds the characters of chardata.ENCODING_REGEXES beyond
	// ASCII: what bytes 0x80..0xFF and 0x1A decode to.
	possible map[rune]bool
}

func newSingleByteEncoding(name string, sloppy bool, table *charmap.Charmap) *singleByteEncoding {
	e := &singleByteEncoding{name: name, sloppy: sloppy, encode: make(map[rune]byte), possible: make(map[rune]bool)}
	for b := 0; b < 256; b++ {
		r := rune(b) // latin-1
		if table != nil {
			r = table.DecodeByte(byte(b))
			// Bytes a code page leaves undefined: Python's iso-8859-2
			// reads 0x80..0x9F as C1 controls, ftfy's sloppy codecs read
			// all of them as Latin-1.
			if r == utf8.RuneError {
				r = rune(b)
			}
		}
		e.decode[b] = r
	}
	if sloppy {
		// ftfy lets byte 0x1A stand for U+FFFD in its sloppy codecs.
		e.decode[0x1a] = utf8.RuneError
	}
	for b := 255; b >= 0; b-- {
		e.encode[e.decode[b]] = byte(b)
	}
	for b := 0x80; b < 0x100; b++ {
		e.possible[e.decode[b]] = true
	}
	e.possible[e.decode[0x1a]] = true
	return e
}

// canEncode is chardata.possible_encoding.
func (e *singleByteEncoding) canEncode(text string) bool {
	for _, r := range text {
		if r < 0x80 && r != 0x1a {
			continue
		}
		if !e.possible[r] {
			return false
		}
	}
	return true
}

func (e *singleByteEncoding) encodeString(text string) []byte {
	out := make([]byte, 0, len(text))
	for _, r := range text {
		out = append(out, e.encode[r])
	}
	return out
}

// charmapEncodings is chardata.CHARMAP_ENCODINGS, in the order ftfy tries
// them.
var charmapEncodings = []*singleByteEncoding{
	newSingleByteEncoding("latin-1", false, nil),
	newSingleByteEncoding("sloppy-windows-1252", true, charmap.Windows1252),
	newSingleByteEncoding("sloppy-windows-1251", true, charmap.Windows1251),
	newSingleByteEncoding("sloppy-windows-1250", true, charmap.Windows1250),
	newSingleByteEncoding("sloppy-windows-1253", true, charmap.Windows1253),
	newSingleByteEncoding("sloppy-windows-1254", true, charmap.Windows1254),
	newSingleByteEncoding("sloppy-windows-1257", true, charmap.Windows1257),
	newSingleByteEncoding("iso-8859-2", false, charmap.ISO8859_2),
	newSingleByteEncoding("macroman", false, charmap.Macintosh),
	newSingleByteEncoding("cp437", false, charmap.CodePage437),
}

// fixEncoding is ftfy.fix_encoding: one-step fixes until nothing changes.
func fixEncoding(text string) string {
	for {
		fixed := fixEncodingStep(text)
		if fixed == text {
			return text
		}
		text = fixed
	}
}

// fixEncodingStep is ftfy's _fix_encoding_one_step_and_explain, except for
// decode_inconsistent_utf8 (mojibake mixed with text no single-byte
// encoding can hold), which is not reproduced.
func fixEncodingStep(text string) string {
	ascii := true
	for i := 0; i < len(text); i++ {
		if text[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii || !isBad(text) {
		return text
	}
	latin1Possible := false
	for i, enc := range charmapEncodings {
		if !enc.canEncode(text) {
			continue
		}
		if i == 0 {
			latin1Possible = true
		}
		encoded := enc.encodeString(text)
		if enc.name != "macroman" && findAlteredUTF8(encoded, 0) >= 0 {
			encoded = restoreByteA0(encoded)
		}
		if enc.sloppy {
			encoded = replaceLossySequences(encoded)
		}
		variants := bytes.IndexByte(encoded, 0xed) >= 0 || bytes.IndexByte(encoded, 0xc0) >= 0
		if fixed, ok := decodeUTF8(encoded, variants); ok {
			return fixed
		}
	}
	// Latin-1 text whose C1 controls were meant as Windows-1252 (strict:
	// the five bytes Windows-1252 leaves undefined make this fail).
	if latin1Possible {
		var b strings.Builder
		ok := true
		for _, r := range text {
			if 0x80 <= r && r <= 0x9f {
				w := sloppyWindows1252[r-0x80]
				if w == r {
					ok = false
					break
				}
				r = w
			}
			b.WriteRune(r)
		}
		if ok && b.String() != text {
			return b.String()
		}
	}
	if strings.ContainsFunc(text, func(r rune) bool { return 0x80 <= r && r <= 0x9f }) {
		return fixC1Controls(text)
	}
	return text
}

// decodeUTF8 is Python's strict UTF-8 decoder, or with variants ftfy's
// utf-8-variants, which also accepts CESU-8 surrogate pairs and C0 80 for
// U+0000.
func decodeUTF8(b []byte, variants bool) (string, bool) {
	if !variants {
		if !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		if b[i] == 0xc0 && i+1 < len(b) && b[i+1] == 0x80 {
			out.WriteByte(0)
			i += 2
			continue
		}
		if i+5 < len(b) && b[i] == 0xed && 0xa0 <= b[i+1] && b[i+1] <= 0xaf && isCont(b[i+2]) &&
			b[i+3] == 0xed && 0xb0 <= b[i+4] && b[i+4] <= 0xbf && isCont(b[i+5]) {
			cp := 0x10000 + (rune(b[i+1]&0x0f) << 16) + (rune(b[i+2]&0x3f) << 10) + (rune(b[i+4]&0x0f) << 6) + rune(b[i+5]&0x3f)
			out.WriteRune(cp)
			i += 6
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return "", false
		}
		out.Write(b[i : i+size])
		i += size
	}
	return out.String(), true
}

func isCont(c byte) bool { return 0x80 <= c && c <= 0xbf }

// byteClass is one position of a byte pattern.
type byteClass func(byte) bool

func oneOf(set ...byte) byteClass {
	return func(c byte) bool { return bytes.IndexByte(set, c) >= 0 }
}

func between(lo, hi byte) byteClass { return func(c byte) bool { return lo <= c && c <= hi } }

func anyOf(classes ...byteClass) byteClass {
	return func(c byte) bool {
		for _, cl := range classes {
			if cl(c) {
				return true
			}
		}
		return false
	}
}

// matchSeq returns the length of the first of alternatives that matches at
// b[i:], or 0, like a regex alternation of fixed-length sequences.
func matchSeq(b []byte, i int, alternatives [][]byteClass) int {
next:
	for _, alt := range alternatives {
		if i+len(alt) > len(b) {
			continue
		}
		for k, cl := range alt {
			if !cl(b[i+k]) {
				continue next
			}
		}
		return len(alt)
	}
	return 0
}

var (
	space     = oneOf(' ')
	cont      = between(0x80, 0xbf)
	notA0or85 = anyOf(between(0x80, 0x84), between(0x86, 0x9f), between(0xa1, 0xbf))
	// chardata.ALTERED_UTF8_RE: UTF-8 whose 0xA0 byte became a space.
	alteredUTF8 = [][]byteClass{
		{oneOf(0xc2, 0xc3, 0xc5, 0xce, 0xd0, 0xd9), space},
		{oneOf(0xe2, 0xe3), space, notA0or85},
		{between(0xe0, 0xe3), notA0or85, space},
		{oneOf(0xf0), space, cont, cont},
		{oneOf(0xf0), cont, space, cont},
		{oneOf(0xf0), cont, cont, space},
	}
	sub       = oneOf(0x1a)
	subOrQ    = oneOf(0x1a, '?')
	subOrCont = anyOf(sub, cont)
	// chardata.LOSSY_UTF8_RE: UTF-8 sequences that lost bytes to 0x1A
	// (ftfy's stand-in for U+FFFD) or '?'.
	lossyUTF8 = [][]byteClass{
		{between(0xc2, 0xdf), sub},
		{between(0xc2, 0xc3), oneOf('?')},
		{oneOf(0xed), between(0xa0, 0xaf), subOrQ, oneOf(0xed), between(0xb0, 0xbf), anyOf(subOrQ, cont)},
		{oneOf(0xed), between(0xa0, 0xaf), anyOf(subOrQ, cont), oneOf(0xed), between(0xb0, 0xbf), subOrQ},
		{between(0xe0, 0xef), subOrQ, subOrCont},
		{between(0xe0, 0xef), subOrCont, subOrQ},
		{between(0xf0, 0xf4), subOrQ, subOrCont, subOrCont},
		{between(0xf0, 0xf4), subOrCont, subOrQ, subOrCont},
		{between(0xf0, 0xf4), subOrCont, subOrCont, subOrQ},
		{sub},
	}
)

// findAlteredUTF8 returns the first index at or after from where
// ALTERED_UTF8_RE matches, or -1.
func findAlteredUTF8(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if matchSeq(b, i, alteredUTF8) > 0 {
			return i
		}
	}
	return -1
}

// restoreByteA0 is ftfy.fixes.restore_byte_a0: "\xc3 " becomes "à " unless
// it starts a Portuguese word that really uses "à" alone, then every
// ALTERED_UTF8_RE match gets its spaces back as 0xA0.
func restoreByteA0(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		if b[i] == 0xc3 && i+1 < len(b) && b[i+1] == ' ' && !aGraveWordException(b[i+2:]) {
			out = append(out, 0xc3, 0xa0, ' ')
			i += 2
			continue
		}
		out = append(out, b[i])
		i++
	}
	b = out
	out = nil
	for i := 0; i < len(b); {
		if n := matchSeq(b, i, alteredUTF8); n > 0 {
			for _, c := range b[i : i+n] {
				if c == ' ' {
					c = 0xa0
				}
				out = append(out, c)
			}
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// aGraveWordException is the negative lookahead of A_GRAVE_WORD_RE.
func aGraveWordException(rest []byte) bool {
	for _, word := range []string{" ", "quele", "quela", "quilo", "s "} {
		if bytes.HasPrefix(rest, []byte(word)) {
			return true
		}
	}
	return false
}

// replaceLossySequences is ftfy.fixes.replace_lossy_sequences.
func replaceLossySequences(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		if n := matchSeq(b, i, lossyUTF8); n > 0 {
			out = append(out, "\ufffd"...)
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// isBad is ftfy.badness.is_bad: does text contain a character sequence
// that is far likelier to be mojibake than intended?
func isBad(text string) bool {
	return badnessRE.MatchString(text)
}

// badnessRE is badness.BADNESS_RE with the verbose whitespace removed,
// Python's \s spelled out and \w as letters, digits and '_'.
var badnessRE = regexp.MustCompile(strings.Join(badnessAlternatives, "|"))

var badnessAlternatives = []string{
	"[\u0080-\u009f]",
	"[¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªºßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂÀ-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓¡«¿©΄΅‘‚“„•‹®»˝”›™¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№¶§][¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº]",
	"[a-zA-Z][α-ωάέήίΰа-џÞΑ-ΩΆΈΉΊΌΎΏΪΫЁ-Я][¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº]",
	"[¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº][ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂÀ-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓¡«¿©΄΅‘‚“„•‹®»˝”›™¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№¶§]",
	"[ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂα-ωάέήίΰа-џ│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓®»˝”›™¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№][À-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ]",
	"[│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓®»˝”›™¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№][ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂ]",
	"[ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂ│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓®»˝”›™][¢£¥₧€]",
	"[\\t-\\r\\x1c-\\x20\\x85\\xa0\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}][À-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ][¢£¥₧€]",
	"[À-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓][²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№¶§]",
	"[ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂÀ-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓¢£¥₧€®»˝”›™][¡«¿©΄΅‘‚“„•‹][²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№]",
	"[ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂÀ-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓¶§][®»˝”›™][¡«¿©΄΅‘‚“„•‹]",
	"[¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓][¡«¿©΄΅‘‚“„•‹]",
	"[a-z][À-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ][¡«¿©΄΅‘‚“„•‹¢£¥₧€]",
	"[│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓][Ò-ÖÙ-Üò-öø-üŐŌŪŲ°]",
	"[ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂÀ-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ¢£¥₧€²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№¡«¿©΄΅‘‚“„•‹®»˝”›™¶§][│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓]",
	"[│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓][®»˝”›™]",
	"[ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂÀ-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ][¡«¿©΄΅‘‚“„•‹®»˝”›™][\\p{L}\\p{N}_]",
	"[Œœ][^A-Za-z]",
	"[À-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ]°",
	"[ÂÃÎÐ][€œŠš¢£Ÿž\\xa0\\xad®©°·»¡«¿©΄΅‘‚“„•‹®»˝”›™–—´]",
	"×[²³]",
	"[ØÙ][\u00a0\u00ad·´–—―…’¢£¥₧€¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№¡«¿©΄΅‘‚“„•‹ŸŠ®°µ»][ØÙ][\u00a0\u00ad·´–—―…’¢£¥₧€¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№¡«¿©΄΅‘‚“„•‹ŸŠ®°µ»]",
	"à[²µ¹¼½¾]",
	"√[±∂†≠®™´≤≥¥µø]",
	"≈[°¢]",
	"‚Ä[ìîïòôúùû†°¢π]",
	"‚[âó][àä°ê]",
	"вЂ",
	"[ВГРС][\u0080-\u009f¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº¡«¿©΄΅‘‚“„•‹®»˝”›™¢£¥₧€°µ][ВГРС]",
	"ГўВЂВ.[A-Za-z ]",
	"Ã[\\xa0¡]",
	"[a-z][\\t-\\r\\x1c-\\x20\\x85\\xa0\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]?[ÃÂ][ ]",
	"^[ÃÂ][ ]",
	"[a-z.,?!®»˝”›™]Â[ ¡«¿©΄΅‘‚“„•‹®»˝”›™]",
	"β€[™\\xa0Ά\\xad®°]",
	"[ΒΓΞΟ][\u0080-\u009f¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊�ªº¡«¿©΄΅‘‚“„•‹®»˝”›™¢£¥₧€°][ΒΓΞΟ]",
	"ā€",
}
