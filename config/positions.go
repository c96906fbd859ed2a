package config

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps the full key path of every key in a document
// ("model.backend", "camera[1].fps") to the 1-based line it is written on.
// go-toml reports positions only for syntax errors and unknown keys, so the
// value checks that run after decoding look their lines up here.
type positions struct {
	lineOf map[string]int
	// pathsAt answers the reverse question for decode errors, whose key
	// lacks the array index that tells two cameras apart: the paths written
	// on a line, in order (several for an inline table).
	pathsAt map[int][]string
}

// pathAt finds the full path on line of a key that go-toml names without
// array indexes ("camera.fps" for camera[1].fps); the first path on the
// line when none matches.
func (p *positions) pathAt(line int, key string) (string, bool) {
	paths := p.pathsAt[line]
	for _, path := range paths {
		if withoutIndexes(path) == key {
			return path, true
		}
	}
	// go-toml names a key of an inline table in an array by its last part
	// alone.
	for _, path := range paths {
		if strings.HasSuffix(withoutIndexes(path), "."+key) {
			return path, true
		}
	}
	if len(paths) == 0 {
		return "", false
	}
	return paths[0], true
}

var indexes = regexp.MustCompile(`\[[0-9]+\]`)

func withoutIndexes(path string) string { return indexes.ReplaceAllString(path, "") }

// near is the line of path or, when path is not written in the file, of
// the table that holds it (0 when neither is).
func (p *positions) near(path string) int {
	line := p.line(path)
	for k := path; line == 0 && k != ""; {
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
		line = p.line(k)
	}
	return line
}

func (p *positions) line(path string) int {
	if p == nil {
		return 0
	}
	return p.lineOf[path]
}

// syntaxError is a parse failure located in the document.
type syntaxError struct {
	line int
	msg  string
}

// scanPositions walks the document with go-toml's unstable parser. It also
// returns the first syntax error with its line, which the decoder would
// report too, but this way both come from the same walk.
func scanPositions(data []byte) (*positions, *syntaxError) {
	pos := &positions{lineOf: map[string]int{}, pathsAt: map[int][]string{}}
	var p unstable.Parser
	p.Reset(data)
	arrayLen := map[string]int{} // raw dotted header → elements so far
	var table []string           // current table header, rendered parts

	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			raw := keyParts(expr)
			if expr.Kind == unstable.ArrayTable {
				// Counted under the rendered parent, so that the regions
				// of each camera are numbered from 0.
				parent := renderPath(raw[:len(raw)-1], arrayLen)
				arrayLen[strings.Join(append(parent, raw[len(raw)-1]), ".")]++
			}
			table = renderPath(raw, arrayLen)
			if first := expr.Child(); first != nil {
				pos.record(strings.Join(table, "."), lineOf(&p, first))
			}
		case unstable.KeyValue:
			pos.walkKeyValue(&p, expr, table)
		}
	}
	if err := p.Error(); err != nil {
		se := &syntaxError{msg: err.Error()}
		if perr, ok := err.(*unstable.ParserError); ok && perr.Highlight != nil {
			se.line = safeLine(&p, perr.Highlight)
		}
		return pos, se
	}
	return pos, nil
}

func (pos *positions) record(path string, line int) {
	if _, seen := pos.lineOf[path]; !seen {
		pos.lineOf[path] = line
	}
	pos.pathsAt[line] = append(pos.pathsAt[line], path)
}

func (pos *positions) walkKeyValue(p *unstable.Parser, kv *unstable.Node, prefix []string) {
	path := append(append([]string(nil), prefix...), keyParts(kv)...)
	it := kv.Key()
	it.Next()
	pos.record(strings.Join(path, "."), lineOf(p, it.Node()))
	pos.walkValue(p, kv.Value(), path)
}

func (pos *positions) walkValue(p *unstable.Parser, v *unstable.Node, path []string) {
	switch v.Kind {
	case unstable.InlineTable:
		children := v.Children()
		for children.Next() {
			pos.walkKeyValue(p, children.Node(), path)
		}
	case unstable.Array:
		children := v.Children()
		for i := 0; children.Next(); i++ {
			elem := append([]string(nil), path...)
			elem[len(elem)-1] += "[" + strconv.Itoa(i) + "]"
			pos.walkValue(p, children.Node(), elem)
		}
	}
}

func keyParts(n *unstable.Node) []string {
	var parts []string
	it := n.Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// renderPath turns a raw header key into a path that names array elements
// by index: [camera.extra] after the second [[camera]] is camera[1].extra,
// and the first [[camera.region]] after it camera[1].region[0].
// arrayLen counts the elements of each array under its rendered path.
func renderPath(raw []string, arrayLen map[string]int) []string {
	out := make([]string, len(raw))
	for i := range raw {
		out[i] = raw[i]
		if n := arrayLen[strings.Join(append(out[:i:i], raw[i]), ".")]; n > 0 {
			out[i] += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return out
}

func lineOf(p *unstable.Parser, n *unstable.Node) int {
	if n == nil {
		return 0
	}
	return p.Shape(n.Raw).Start.Line
}

// safeLine locates a parser error's highlight; a highlight that is not part
// of the document (which would make go-toml panic) yields line 0.
func safeLine(p *unstable.Parser, highlight []byte) (line int) {
	defer func() {
		if recover() != nil {
			line = 0
		}
	}()
	return p.Shape(p.Range(highlight)).Start.Line
}
