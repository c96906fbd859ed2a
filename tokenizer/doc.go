// Package tokenizer reproduces OpenAI CLIP's SimpleTokenizer and
// clip.tokenize exactly: the same ids for every row of the project's
// reference set (reference/tokenizer.jsonl, made with CLIP d05afc4 and
// ftfy 6.3.1).
//
// # Vocabularies
//
// LoadBPE reads CLIP's own merges file (bpe_simple_vocab_16e6.txt.gz,
// gzip or plain): a header line, then "left right" merges, of which at
// most 48894 are used. The vocabulary is built as the original builds it:
// the 256 byte symbols, the same with "</w>", one entry per merge, then
// <|startoftext|> and <|endoftext|>, so smaller vocabularies in the same
// format work too (SOT = size-2, EOT = size-1). A trailing newline is not
// read as an empty merge, and a blank or malformed line is an error naming
// file:line (Python would silently build a different vocabulary).
// LoadHF reads Hugging Face's tokenizer.json or vocab.json + merges.txt;
// LoadDir picks whichever a model bundle's directory holds.
//
// # Cleaning
//
// Clean is whitespace_clean(basic_clean(text)).lower(). What ftfy.fix_text
// does with its default configuration is reproduced line by line, looping
// each line until it stops changing:
//   - unescape_html, only while no line so far contained '<': complete
//     "&name;" and "&#n;" references, plus all-capitals names ("&EACUTE;");
//   - fix_encoding: mojibake from UTF-8 read as Latin-1, Windows-1250/1251/
//     1252/1253/1254/1257, ISO-8859-2, MacRoman or CP437, detected with
//     ftfy's badness heuristic, including restore_byte_a0,
//     replace_lossy_sequences, CESU-8, and the Latin-1/Windows-1252 and C1
//     fixes. Not reproduced: decode_inconsistent_utf8, which fixes mojibake
//     embedded in text that no single-byte encoding can hold (for example
//     "cafÃ© 日本" stays as it is);
//   - fix_c1_controls, fix_latin_ligatures, fix_character_width
//     (fullwidth/halfwidth forms and U+3000), uncurl_quotes, fix_line_breaks,
//     remove_terminal_escapes, remove_control_chars, NFC normalization.
//     fix_surrogates has no Go counterpart: invalid UTF-8 reads as U+FFFD.
//
// Then Python's html.unescape twice (legacy names without ';', longest
// prefix, numeric references with the HTML5 replacements), \s+ collapsed
// with Python's definition of whitespace (which includes U+001C..U+001F and
// U+0085 but not U+200B), stripped, and Python's str.lower (U+0130 becomes
// "i̇", Σ becomes ς at the end of a word).
//
// Characters new in Go's Unicode tables but unknown to the reference's
// Python (or the reverse) may classify differently; the parity tests
// compare lowercase, whitespace, HTML unescaping and code pages against
// the local Python over all code points.
//
// # Splitting and BPE
//
// The split pattern is the original's, with the regex module's IGNORECASE
// semantics (so "'ſ" is a contraction), scanned by hand because Go's RE2
// has ASCII-only \s. Each piece is merged lowest rank first; results are
// cached per piece in a bounded, concurrency-safe cache.
package tokenizer
