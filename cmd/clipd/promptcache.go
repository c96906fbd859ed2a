package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/promptcache"
	"golang.org/x/sys/unix"
)

// daemonStateDir is where the service keeps its state (systemd's
// StateDirectory=clipd); a one-shot command shares its prompt cache when
// it may write there.
var daemonStateDir = "/var/lib/clipd"

// cacheFlags choose the prompt cache of a one-shot command.
type cacheFlags struct {
	stateDir string
	off      bool
}

func (c *cacheFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.stateDir, "state-dir", "", "prompt cache location (default $CLIPD_STATE_DIR, else "+daemonStateDir+
		" if writable, else $XDG_CACHE_HOME/clipd or ~/.cache/clipd)")
	fs.BoolVar(&c.off, "no-prompt-cache", false, "encode every prompt; neither read nor write the prompt cache")
}

// resolveStateDir picks the state directory of a one-shot command: the
// flag, then $CLIPD_STATE_DIR, then the daemon's if this user may write
// it (so that both share cached prompts), else the user's cache directory.
func resolveStateDir(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if env := os.Getenv("CLIPD_STATE_DIR"); env != "" {
		return env, nil
	}
	if st, err := os.Stat(daemonStateDir); err == nil && st.IsDir() && unix.Access(daemonStateDir, unix.W_OK) == nil {
		return daemonStateDir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no prompt cache directory: give --state-dir or set CLIPD_STATE_DIR (%w)", err)
	}
	return filepath.Join(base, "clipd"), nil
}

// open returns the prompt cache of m, or nil (no cache) after saying why
// on stderr: a command works without its cache, only slower.
//
// A one-shot command has no configuration, so it does not know the
// daemon's prompt_cache_max: it never evicts (promptcache.NoEviction).
// Evicting to a bound of its own would trim a daemon configured for more
// (eviction covers every model in the directory) on every `clipd
// classify`. What it adds is a few KiB per new prompt, evicted by the
// daemon's next write; a cache that only one-shot commands use (the
// user's ~/.cache/clipd) grows by the prompts they encode, and may be
// removed at any time.
func (c *cacheFlags) open(m *model.Model, stderr io.Writer) *promptcache.Cache {
	if c.off {
		return nil
	}
	dir, err := resolveStateDir(c.stateDir)
	if err == nil {
		var cache *promptcache.Cache
		if cache, err = m.OpenPromptCache(dir, promptcache.NoEviction); err == nil {
			return cache
		}
	}
	fmt.Fprintf(stderr, "clipd: no prompt cache, every prompt is encoded: %v\n", err)
	return nil
}

// embedder is the Embedder of a one-shot command: m's prompts, the prompt
// cache, and a progress bar when stderr is a terminal.
func (c *cacheFlags) embedder(m *model.Model, stderr io.Writer) *labels.Embedder {
	conf := labels.EmbedderConfig{Encoder: m}
	if cache := c.open(m, stderr); cache != nil {
		conf.Store = cache
	}
	if isTerminal(stderr) {
		conf.Progress = progressBar(stderr)
		conf.ProgressEvery = 200 * time.Millisecond
	}
	e, _ := labels.OpenEmbedder(conf)
	return e
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar draws encoding progress on one terminal line, replaced at
// each report and ended with a newline when done.
func progressBar(w io.Writer) func(labels.Progress) {
	return func(p labels.Progress) {
		if p.Done >= p.Total {
			fmt.Fprintf(w, "\r\033[K%s\n", p)
			return
		}
		const width = 30
		filled := width * p.Done / max(p.Total, 1)
		left := "?"
		if r := p.Remaining(); r > 0 {
			left = r.Round(time.Second).String()
		}
		fmt.Fprintf(w, "\r\033[Kencoding prompts [%s%s] %d/%d %.1f/s %s left",
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.Done, p.Total, p.Rate(), left)
	}
}

// embedTexts returns the embedding of each text, from the cache where it
// has them; the others are encoded and stored.
func embedTexts(ctx context.Context, m *model.Model, cache *promptcache.Cache, texts []string, stderr io.Writer) ([][]float32, error) {
	out := cache.Get(texts)
	var missing []string
	for i, e := range out {
		if e == nil {
			missing = append(missing, texts[i])
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	embs, err := m.EncodePrompts(ctx, missing)
	if err != nil {
		return nil, err
	}
	if err := cache.Put(missing, embs); err != nil {
		fmt.Fprintf(stderr, "clipd: prompt cache: %v\n", err)
	}
	for i := range out {
		if out[i] == nil {
			out[i], embs = embs[0], embs[1:]
		}
	}
	return out, nil
}
