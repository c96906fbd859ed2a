package tokenizer

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// python runs a script under the Python that the reference data came
// from (stdlib only), skipping when it is absent.
func python(t *testing.T, script string, out any) {
	t.Helper()
	interp := os.Getenv("CLIPD_PYTHON")
	if interp == "" {
		interp = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(interp); err != nil {
		t.Skipf("no Python interpreter at %s (set CLIPD_PYTHON): %v", interp, err)
	}
	data, err := exec.Command(interp, "-c", script).Output()
	if err != nil {
		t.Fatalf("%s: %v", interp, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}

// Python's html.unescape on every HTML5 entity name (with and without
// ';', in all capitals, followed by letters) and on numeric references
// across the special ranges.
func TestHTMLUnescapeMatchesPython(t *testing.T) {
	var cases [][2]string
	python(t, `
import html, html.entities, json
inputs = []
for name in html.entities.html5:
    base = name.rstrip(';')
    inputs += ['&' + name, '&' + base, '&' + base + 'x;', '&' + base.upper() + ';', 'a&' + name + 'b']
for n in list(range(0, 0x110)) + [0xd800, 0xdfff, 0xfdd0, 0xfffe, 0x1fffe, 0x10ffff, 0x110000, 10**30]:
    inputs += ['&#%d;' % n, '&#x%x' % n, '&#X%X;z' % n]
inputs += ['&', '&;', '&#', '&#x', '&#;', '&&amp;', '&' + 'a' * 40 + ';', '&amp-x', '&amp\u00e9;', '&notin', '&notit;']
print(json.dumps([[s, html.unescape(s)] for s in inputs]))
`, &cases)
	bad := 0
	for _, c := range cases {
		if got := pythonHTMLUnescape(c[0]); got != c[1] {
			if bad++; bad <= 20 {
				t.Errorf("unescape(%q) = %q, Python %q", c[0], got, c[1])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d differ", bad, len(cases))
	}
}

// Python's str.lower and str.isspace over every code point, and final
// sigma in context.
func TestLowerAndSpaceMatchPython(t *testing.T) {
	var result struct {
		Lower  map[string]string `json:"lower"`
		Space  []int             `json:"space"`
		Sigmas [][2]string       `json:"sigmas"`
	}
	python(t, `
import json, sys
lower = {}
for c in range(0x110000):
    if 0xd800 <= c <= 0xdfff: continue
    s = chr(c)
    if s.lower() != s: lower[str(c)] = s.lower()
space = [c for c in range(0x110000) if chr(c).isspace()]
ctx = ['ΣΑΣ', 'ΑΣ', 'Σ', 'Α.Σ', 'ΑΣ.Α', "Α'Σ'", 'ΑΣ\u0301', '1Σ', 'ΑΣ1', 'ΑΣ Β', 'aΣb', 'İstanbul']
print(json.dumps({'lower': lower, 'space': space, 'sigmas': [[s, s.lower()] for s in ctx]}))
`, &result)
	bad := 0
	for c := rune(0); c < 0x110000; c++ {
		if 0xd800 <= c && c <= 0xdfff {
			continue
		}
		want, ok := result.Lower[itoa(int(c))]
		if !ok {
			want = string(c)
		}
		if c == 0x3a3 {
			continue // context-dependent, checked below
		}
		if got := pythonLower(string(c)); got != want {
			if bad++; bad <= 20 {
				t.Errorf("lower(U+%04X) = %q, Python %q", c, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d code points lower differently (Go's and Python's Unicode versions may differ)", bad)
	}
	spaces := map[rune]bool{}
	for _, c := range result.Space {
		spaces[rune(c)] = true
	}
	for c := rune(0); c < 0x110000; c++ {
		if isPythonSpace(c) != spaces[c] {
			t.Errorf("isspace(U+%04X) = %v, Python %v", c, isPythonSpace(c), spaces[c])
		}
	}
	for _, s := range result.Sigmas {
		if got := pythonLower(s[0]); got != s[1] {
			t.Errorf("lower(%q) = %q, Python %q", s[0], got, s[1])
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// The single-byte code pages ftfy re-encodes mojibake with must decode
// exactly as Python's codecs (ftfy's sloppy variants fill the gaps with
// Latin-1).
func TestCodePagesMatchPython(t *testing.T) {
	var tables map[string][]int
	python(t, `
import json
names = {'latin-1':'latin-1','sloppy-windows-1252':'cp1252','sloppy-windows-1251':'cp1251','sloppy-windows-1250':'cp1250',
 'sloppy-windows-1253':'cp1253','sloppy-windows-1254':'cp1254','sloppy-windows-1257':'cp1257','iso-8859-2':'iso-8859-2',
 'macroman':'mac-roman','cp437':'cp437'}
out = {}
for ftfy_name, codec in names.items():
    row = []
    for b in range(256):
        try: c = ord(bytes([b]).decode(codec))
        except UnicodeDecodeError: c = b
        row.append(c)
    if ftfy_name.startswith('sloppy'): row[0x1a] = 0xfffd
    out[ftfy_name] = row
print(json.dumps(out))
`, &tables)
	for _, enc := range charmapEncodings {
		want := tables[enc.name]
		if len(want) != 256 {
			t.Fatalf("no Python table for %s", enc.name)
		}
		for b := 0; b < 256; b++ {
			if enc.decode[b] != rune(want[b]) {
				t.Errorf("%s byte 0x%02x: U+%04X, Python U+%04X", enc.name, b, enc.decode[b], want[b])
			}
		}
	}
}
