package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/clipd/clipd/internal/safefile"
)

// TokenizerKind says which files describe the tokenizer.
type TokenizerKind int

const (
	// TokenizerJSON is a Hugging Face tokenizer.json.
	TokenizerJSON TokenizerKind = iota + 1
	// TokenizerVocabMerges is a Hugging Face vocab.json plus merges.txt.
	TokenizerVocabMerges
	// TokenizerBPEVocab is OpenAI's bpe_simple_vocab_16e6.txt(.gz).
	TokenizerBPEVocab
)

func (k TokenizerKind) String() string {
	switch k {
	case TokenizerJSON:
		return "tokenizer.json"
	case TokenizerVocabMerges:
		return "vocab.json+merges.txt"
	case TokenizerBPEVocab:
		return "bpe_simple_vocab"
	}
	return fmt.Sprintf("TokenizerKind(%d)", int(k))
}

// Tokenizer names the tokenizer files found in the textual directory.
type Tokenizer struct {
	Kind TokenizerKind
	// Files are absolute paths: one file, or vocab.json then merges.txt.
	Files []string
}

// Bundle is a loaded, validated model bundle. Paths are absolute.
type Bundle struct {
	Dir          string
	Config       Config
	Preprocess   Preprocess
	VisualONNX   string
	TextualONNX  string
	TokenizerDir string
	Tokenizer    Tokenizer
}

// LogitScale is the multiplier of cosine similarities in zero-shot scoring.
func (b *Bundle) LogitScale() float32 {
	if b.Config.LogitScale != nil {
		return float32(*b.Config.LogitScale)
	}
	return DefaultLogitScale
}

// ImageSize is the side of the square image the visual model takes.
func (b *Bundle) ImageSize() int { return b.Config.VisionCfg.ImageSize }

// EmbedDim is the length of image and text embeddings.
func (b *Bundle) EmbedDim() int { return b.Config.EmbedDim }

// Load reads and validates the bundle in dir, naming the missing or
// inconsistent file and key on failure.
func Load(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	b, err := load(abs)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	return b, nil
}

func load(dir string) (*Bundle, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, errors.New("not a directory")
	}
	b := &Bundle{
		Dir:          dir,
		VisualONNX:   filepath.Join(dir, filepath.FromSlash(VisualONNX)),
		TextualONNX:  filepath.Join(dir, filepath.FromSlash(TextualONNX)),
		TokenizerDir: filepath.Join(dir, TokenizerDir),
	}
	data, err := readFile(dir, ConfigFile)
	if err != nil {
		return nil, err
	}
	if b.Config, err = ParseConfig(ConfigFile, data); err != nil {
		return nil, err
	}
	if data, err = readFile(dir, PreprocessFile); err != nil {
		return nil, err
	}
	if b.Preprocess, err = ParsePreprocess(PreprocessFile, data); err != nil {
		return nil, err
	}
	if err := Check(b.Config, b.Preprocess); err != nil {
		return nil, err
	}
	for _, name := range []string{VisualONNX, TextualONNX} {
		if err := checkModelFile(dir, name); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(b.TokenizerDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TokenizerDir, unwrapPath(err))
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	kind, files, err := FindTokenizer(names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TokenizerDir, err)
	}
	b.Tokenizer.Kind = kind
	for _, f := range files {
		b.Tokenizer.Files = append(b.Tokenizer.Files, filepath.Join(b.TokenizerDir, f))
	}
	return b, nil
}

// FindTokenizer picks the tokenizer from the file names in the textual
// directory. tokenizer.json is preferred because it carries the exact
// pre-tokenizer the model was trained with; OpenAI's original vocabulary
// comes last because it is only the fallback immich bundles do not ship.
func FindTokenizer(names []string) (TokenizerKind, []string, error) {
	has := func(n string) bool { return slices.Contains(names, n) }
	switch {
	case has("tokenizer.json"):
		return TokenizerJSON, []string{"tokenizer.json"}, nil
	case has("vocab.json") && has("merges.txt"):
		return TokenizerVocabMerges, []string{"vocab.json", "merges.txt"}, nil
	}
	var bpe []string
	for _, n := range names {
		if ok, _ := path.Match("bpe_simple_vocab*.txt", n); ok {
			bpe = append(bpe, n)
		} else if ok, _ := path.Match("bpe_simple_vocab*.txt.gz", n); ok {
			bpe = append(bpe, n)
		}
	}
	switch {
	case len(bpe) == 1:
		return TokenizerBPEVocab, bpe, nil
	case len(bpe) > 1:
		slices.Sort(bpe)
		return 0, nil, fmt.Errorf("several BPE vocabularies %q; keep one", bpe)
	case has("vocab.json"):
		return 0, nil, errors.New("vocab.json without merges.txt")
	case has("merges.txt"):
		return 0, nil, errors.New("merges.txt without vocab.json")
	}
	return 0, nil, errors.New("no tokenizer: expected tokenizer.json, vocab.json and merges.txt, or bpe_simple_vocab_16e6.txt.gz")
}

// maxMetadataBytes bounds the JSON files of a bundle; the largest,
// tokenizer.json, is about 3.5 MB for CLIP's vocabulary.
const maxMetadataBytes = 64 << 20

func readFile(dir, name string) ([]byte, error) {
	data, err := safefile.ReadFile(filepath.Join(dir, filepath.FromSlash(name)), maxMetadataBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, unwrapPath(err))
	}
	return data, nil
}

func checkModelFile(dir, name string) error {
	st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", name, unwrapPath(err))
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file", name)
	case st.Size() == 0:
		return fmt.Errorf("%s: empty file", name)
	}
	return nil
}

// unwrapPath drops the absolute path from fs errors: the caller already
// names the bundle and the relative file, which reads better.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return errors.New("missing")
		}
		return pe.Err
	}
	return err
}
