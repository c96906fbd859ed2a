package labels

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func parseString(t *testing.T, text string) *Set {
	t.Helper()
	set, err := Parse(strings.NewReader(text), "test.labels")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return set
}

func TestParseForms(t *testing.T) {
	set := parseString(t, `
# comment line
template: a photo of a {}.        # inline comment
template: a blurry photo of a {}.

dog
cat: a photo of a cat | a photo of a kitten
person = human, man
`)
	wantTemplates := []string{"a photo of a {}.", "a blurry photo of a {}."}
	if !reflect.DeepEqual(set.Templates, wantTemplates) {
		t.Errorf("templates = %q, want %q", set.Templates, wantTemplates)
	}
	want := []Label{
		{Name: "dog", Line: 6, Prompts: []string{"a photo of a dog.", "a blurry photo of a dog."}},
		{Name: "cat", Line: 7, Prompts: []string{"a photo of a cat", "a photo of a kitten"}},
		{Name: "person", Line: 8, Prompts: []string{
			"a photo of a person.", "a blurry photo of a person.",
			"a photo of a human.", "a blurry photo of a human.",
			"a photo of a man.", "a blurry photo of a man.",
		}},
	}
	if !reflect.DeepEqual(set.Labels, want) {
		t.Errorf("labels =\n%+v\nwant\n%+v", set.Labels, want)
	}
	if got := set.Names(); !reflect.DeepEqual(got, []string{"dog", "cat", "person"}) {
		t.Errorf("Names() = %q", got)
	}
}

func TestParseDefaultTemplateAndLateTemplate(t *testing.T) {
	set := parseString(t, "dog\n")
	if !reflect.DeepEqual(set.Labels[0].Prompts, []string{"a photo of a dog."}) {
		t.Errorf("default template prompts = %q", set.Labels[0].Prompts)
	}
	// template: lines apply to the whole file, also to labels above them.
	set = parseString(t, "dog\ntemplate: a drawing of a {}.\n")
	if !reflect.DeepEqual(set.Labels[0].Prompts, []string{"a drawing of a dog."}) {
		t.Errorf("late template prompts = %q", set.Labels[0].Prompts)
	}
}

func TestParseSynonymEqualToLabelCountsOnce(t *testing.T) {
	set := parseString(t, "car = car, automobile\n")
	want := []string{"a photo of a car.", "a photo of a automobile."}
	if !reflect.DeepEqual(set.Labels[0].Prompts, want) {
		t.Errorf("prompts = %q, want %q", set.Labels[0].Prompts, want)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"duplicate", "dog\ncat\n\nDog\n", 4, `duplicate label "Dog" (first defined on line 1)`},
		{"template without placeholder", "template: a photo\ndog\n", 1, "has no {}"},
		{"empty template", "template:\ndog\n", 1, "empty template"},
		{"unknown directive", "dog\ntemplte: a photo of a {}.\n", 2, `unknown directive "templte"`},
		{"placeholder in label prompt", "Big Dog: a {} running\n", 1, "per-label prompts"},
		{"empty label before colon", ": a photo of nothing\n", 1, "empty label name"},
		{"empty label before equals", " = human\n", 1, "empty label name"},
		{"empty prompt item", "cat: a cat || a kitten\n", 1, "empty item between '|'"},
		{"nothing after colon", "cat:\n", 1, `label "cat": nothing after ':'`},
		{"empty synonym", "person = human,,man\n", 1, "empty item between ','"},
		{"both forms", "person = human: a photo of a human\n", 1, "not both"},
		{"pipe in name", "dog | puppy\n", 1, "contains '|'"},
		{"no labels", "# only\ntemplate: a {}.\n", 0, "no labels"},
		{"bad utf8", "dog\n\xff\xfe\n", 2, "UTF-8"},
		{"long line", "dog\n" + strings.Repeat("x", maxLineBytes+10) + "\n", 2, "longer than"},
		{"NUL bytes", strings.Repeat("\x00", 4096), 1, "column 1: control character U+0000"},
		{"control character in a label", "dog\nc\x1bat\n", 2, "column 2: control character U+001B"},
		{"carriage return inside a line", "dog\rcat\n", 1, "U+000D"},
		{"C1 control", "dog\u0085\n", 1, "U+0085"},
		{"byte-order mark past the start", "dog\n\uFEFFcat\n", 2, "U+FEFF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.text), "home.labels")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.File != "home.labels" || pe.Line != c.line || !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("err = %q (line %d), want line %d containing %q", err, pe.Line, c.line, c.msg)
			}
			if c.line > 0 && !strings.HasPrefix(err.Error(), "home.labels:") {
				t.Errorf("error %q does not start with file:line", err)
			}
		})
	}
}

func TestParseCleansWhatEditorsAdd(t *testing.T) {
	// A byte-order mark at the start (Windows Notepad), CRLF line ends and
	// tabs are the editor's, not the labels'.
	set := parseString(t, "\uFEFFdog\r\ncat =\tkitten\r\n")
	if got := set.Names(); !reflect.DeepEqual(got, []string{"dog", "cat"}) {
		t.Fatalf("names = %q", got)
	}
	if got := set.Labels[1].Prompts; !reflect.DeepEqual(got, []string{"a photo of a cat.", "a photo of a kitten."}) {
		t.Errorf("prompts = %q", got)
	}
}

func TestFromNames(t *testing.T) {
	set, err := FromNames([]string{"dog", "cat"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Labels[1].Prompts; !reflect.DeepEqual(got, []string{"a photo of a cat."}) {
		t.Errorf("prompts = %q", got)
	}
	if _, err := FromNames([]string{"dog", "a: b"}, nil); err == nil {
		t.Error("FromNames accepted a name with ':'")
	}
	if _, err := FromNames([]string{"dog", "dog"}, nil); err == nil {
		t.Error("FromNames accepted duplicate names")
	}
}

func sharedDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CLIPD_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "clip", "label_sets.json")); err != nil {
		t.Skipf("reference data missing: need clip/label_sets.json under CLIPD_SHARED or ../shared (%v)", err)
	}
	return dir
}

// The CIFAR-10 example must expand to exactly the prompts of CLIP's
// zeroshot_classifier loop: for each class, each template.
func TestCIFAR10ExampleMatchesCLIP(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(sharedDir(t), "clip", "label_sets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sets map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sets); err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Classes   []string `json:"classes"`
		Templates []string `json:"templates"`
	}
	if err := json.Unmarshal(sets["CIFAR10"], &ref); err != nil {
		t.Fatalf("label_sets.json CIFAR10: %v", err)
	}
	f, err := os.Open(filepath.Join("..", "examples", "labels", "cifar10.labels"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set, err := Parse(f, "cifar10.labels")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(set.Names(), ref.Classes) {
		t.Fatalf("classes = %q, want %q", set.Names(), ref.Classes)
	}
	for i, class := range ref.Classes {
		var want []string
		for _, tmpl := range ref.Templates {
			want = append(want, strings.ReplaceAll(tmpl, "{}", class))
		}
		if !reflect.DeepEqual(set.Labels[i].Prompts, want) {
			t.Errorf("%s prompts = %q, want %q", class, set.Labels[i].Prompts, want)
		}
	}
}

func TestHomeExampleParses(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "examples", "labels", "home.labels"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set, err := Parse(f, "home.labels")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"person", "car", "dog", "cat", "package", "bicycle", "empty street"}
	if !reflect.DeepEqual(set.Names(), want) {
		t.Errorf("names = %q, want %q", set.Names(), want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("template: a photo of a {}.\ndog\ncat: a cat | a kitten\nperson = human, man\n")
	f.Add("# c\n\n dog # x\n")
	f.Add("a:b=c|d\n")
	f.Add("x = y: z\n")
	f.Add("templte: {}\n")
	f.Fuzz(func(t *testing.T, text string) {
		set, err := Parse(strings.NewReader(text), "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz" {
				t.Fatalf("error %v is not a *ParseError naming the file", err)
			}
			return
		}
		if len(set.Labels) == 0 || len(set.Templates) == 0 {
			t.Fatalf("successful parse with %d labels, %d templates", len(set.Labels), len(set.Templates))
		}
		seen := map[string]bool{}
		for _, l := range set.Labels {
			if l.Name == "" || strings.TrimSpace(l.Name) != l.Name || len(l.Prompts) == 0 || l.Line < 1 {
				t.Fatalf("bad label %+v", l)
			}
			if seen[strings.ToLower(l.Name)] {
				t.Fatalf("duplicate label %q accepted", l.Name)
			}
			seen[strings.ToLower(l.Name)] = true
			for _, p := range l.Prompts {
				if p == "" || strings.Contains(p, "{}") || strings.ContainsAny(p, "#\n") {
					t.Fatalf("bad prompt %q for %q", p, l.Name)
				}
			}
		}
		for _, tmpl := range set.Templates {
			if !strings.Contains(tmpl, "{}") {
				t.Fatalf("template %q without {}", tmpl)
			}
		}
	})
}

// parseError parses text and returns its *ParseError, failing the test if
// there is none.
func parseError(t *testing.T, text string) *ParseError {
	t.Helper()
	_, err := Parse(strings.NewReader(text), "big.labels")
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ParseError", err)
	}
	if pe.File != "big.labels" || !strings.HasPrefix(err.Error(), fmt.Sprintf("big.labels:%d: ", pe.Line)) {
		t.Errorf("error %q does not start with file:line", err)
	}
	return pe
}

func templates(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "template: a photo number %d of a {}.\n", i)
	}
	return b.String()
}

func names(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "class %d\n", i)
	}
	return b.String()
}

// 100,000 distinct templates (2 MB) took 26 s to parse with a linear
// search per template line; now the 257th is refused.
func TestParseBoundsTemplates(t *testing.T) {
	pe := parseError(t, templates(100_000)+"dog\n")
	if pe.Line != MaxTemplates+1 || !strings.Contains(pe.Msg, "more than 256 templates") {
		t.Errorf("err = %v, want line %d: more than 256 templates", pe, MaxTemplates+1)
	}

	// Repeats of the same lines are not new templates: they neither count
	// towards the bound nor change the order of first use.
	text := strings.Repeat(templates(MaxTemplates), 50) + "dog\n"
	set := parseString(t, text)
	if len(set.Templates) != MaxTemplates || set.Templates[0] != "a photo number 0 of a {}." ||
		set.Templates[MaxTemplates-1] != fmt.Sprintf("a photo number %d of a {}.", MaxTemplates-1) {
		t.Fatalf("%d templates, first %q", len(set.Templates), set.Templates[0])
	}
	if got := len(set.Labels[0].Prompts); got != MaxTemplates {
		t.Errorf("dog has %d prompts, want %d", got, MaxTemplates)
	}
}

func TestParseBoundsPrompts(t *testing.T) {
	// 256 templates × 391 labels = 100,096 prompts: the 391st label is the
	// one past the bound, whether the templates come first or last.
	over := MaxPrompts/MaxTemplates + 1
	pe := parseError(t, templates(MaxTemplates)+names(over))
	if want := MaxTemplates + over; pe.Line != want || !strings.Contains(pe.Msg, `label "class 390" takes the file past 100000 prompts`) {
		t.Errorf("templates first: err = %v, want line %d naming class 390", pe, want)
	}
	pe = parseError(t, names(over)+templates(MaxTemplates))
	if pe.Line != over || !strings.Contains(pe.Msg, "past 100000 prompts") {
		t.Errorf("templates last: err = %v, want line %d", pe, over)
	}
	// One label short of it is fine.
	set := parseString(t, templates(MaxTemplates)+names(over-1))
	if n := len(set.Prompts()); n != MaxTemplates*(over-1) {
		t.Errorf("%d prompts, want %d", n, MaxTemplates*(over-1))
	}

	// Synonyms multiply like names; per-label prompts count one each.
	pe = parseError(t, templates(100)+"person = "+strings.Repeat("someone, ", 999)+"man\n")
	if pe.Line != 101 || !strings.Contains(pe.Msg, "past 100000 prompts") {
		t.Errorf("synonyms: err = %v, want line 101", pe)
	}
	var b strings.Builder
	for i := range MaxPrompts/2 + 1 {
		fmt.Fprintf(&b, "thing %d: a photo of thing %d | a drawing of thing %d\n", i, i, i)
	}
	pe = parseError(t, b.String())
	if pe.Line != MaxPrompts/2+1 || !strings.Contains(pe.Msg, "past 100000 prompts") {
		t.Errorf("per-label prompts: err = %v, want line %d", pe, MaxPrompts/2+1)
	}

	// A million plain labels stop at the bound, not at the end of the file.
	pe = parseError(t, names(1_000_000))
	if pe.Line != MaxPrompts+1 {
		t.Errorf("a million labels: err = %v, want line %d", pe, MaxPrompts+1)
	}
}

// A few long templates must not stand in for many short ones.
func TestParseBoundsPromptText(t *testing.T) {
	tmpl := "a " + strings.Repeat("very ", 12_000) + "long photo of a {}."
	pe := parseError(t, "template: "+tmpl+"\n"+names(1000))
	// Each prompt is the template with {} replaced by "class N".
	total, line := 0, 0
	for i := range 1000 {
		total += len(tmpl) - 2 + len(fmt.Sprintf("class %d", i))
		if total > MaxPromptTextBytes {
			line = 2 + i
			break
		}
	}
	if pe.Line != line || !strings.Contains(pe.Msg, "past 32 MiB of text") {
		t.Errorf("err = %v, want line %d: past 32 MiB of text", pe, line)
	}
}

// The largest sets CLIP was evaluated with are within the bounds: CIFAR-100
// with its 18 templates from label_sets.json, and ImageNet's shape, 1,000
// classes × 80 templates.
func TestParseAcceptsCLIPsLargestSets(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(sharedDir(t), "clip", "label_sets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sets map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sets); err != nil {
		t.Fatal(err)
	}
	if _, ok := sets["CIFAR100"]; !ok {
		t.Fatal("label_sets.json has no CIFAR100")
	}
	for name, rawSet := range sets {
		var ref struct {
			Classes   []string `json:"classes"`
			Templates []string `json:"templates"`
		}
		if json.Unmarshal(rawSet, &ref) != nil {
			continue // a set whose classes are not plain names
		}
		var b strings.Builder
		for _, tmpl := range ref.Templates {
			fmt.Fprintf(&b, "template: %s\n", tmpl)
		}
		for _, c := range ref.Classes {
			fmt.Fprintf(&b, "%s\n", c)
		}
		set, err := Parse(strings.NewReader(b.String()), name)
		if err != nil {
			// Some sets' class names use characters a labels file
			// reserves; only the bounds matter here.
			var pe *ParseError
			if errors.As(err, &pe) && (strings.Contains(pe.Msg, "prompts") || strings.Contains(pe.Msg, "templates")) {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if name == "CIFAR100" && len(set.Prompts()) != 1800 {
			t.Errorf("CIFAR100: %d prompts, want 1800", len(set.Prompts()))
		}
	}
	set := parseString(t, templates(80)+names(1000))
	if n := len(set.Prompts()); n != 80_000 {
		t.Errorf("ImageNet-sized set: %d prompts, want 80000", n)
	}
}

// Errors show a few dozen bytes of a name, prompt or template, escaped:
// FromNames's names come from socket clients, and a file's line may be
// 64 KiB; file:line tells where the rest is.
func TestErrorsRepeatLittleOfTheInput(t *testing.T) {
	long := strings.Repeat("n", 300)
	for _, tc := range []struct {
		what string
		err  func() error
	}{
		{"a client's name with ':'", func() error { _, err := FromNames([]string{"dog", long + ":"}, nil); return err }},
		{"a client's name with '{'", func() error { _, err := FromNames([]string{long + "{"}, nil); return err }},
		{"a client's duplicate", func() error { _, err := FromNames([]string{long, long}, nil); return err }},
		{"a file's duplicate", func() error { _, err := Parse(strings.NewReader(long+"\n"+long+"\n"), "f"); return err }},
		{"a file's template", func() error {
			_, err := Parse(strings.NewReader("template: "+strings.Repeat("t", 60_000)+"\ndog\n"), "f")
			return err
		}},
		{"a file's prompt", func() error {
			_, err := Parse(strings.NewReader("Big Dog: a "+strings.Repeat("p", 60_000)+" {}\n"), "f")
			return err
		}},
		{"a file's synonym", func() error {
			_, err := Parse(strings.NewReader("dog = "+strings.Repeat("s", 60_000)+"{\n"), "f")
			return err
		}},
	} {
		err := tc.err()
		if err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		if msg := err.Error(); len(msg) > 300 || !strings.Contains(msg, `…`) {
			t.Errorf("%s: %d-byte error: %.400s", tc.what, len(msg), msg)
		}
	}
}
