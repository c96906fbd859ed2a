package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestPromptCacheMax(t *testing.T) {
	for doc, want := range map[string]int64{
		``:                                  1 << 30,
		`prompt_cache_max = "1GiB"`:         1 << 30,
		`prompt_cache_max = "512MiB"`:       512 << 20,
		`prompt_cache_max = "512 MiB"`:      512 << 20,
		`prompt_cache_max = "2GB"`:          2e9,
		`prompt_cache_max = "1TiB"`:         1 << 40,
		`prompt_cache_max = 0`:              0,
		`prompt_cache_max = "0"`:            0,
		`prompt_cache_max = 1073741824`:     1 << 30,
		`prompt_cache_max = "1048576B"`:     1 << 20,
		`prompt_cache_max = "  100MB  "`:    100e6,
		"prompt_cache_max = '8MiB'\n# note": 8 << 20,
	} {
		cfg, err := Parse([]byte("[model]\n"+doc+"\n"), "c.toml")
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		if cfg.Model.PromptCacheMax != want {
			t.Errorf("%s: %d, want %d", doc, cfg.Model.PromptCacheMax, want)
		}
	}
	for doc, want := range map[string]string{
		`prompt_cache_max = "1.5GiB"`:     `c.toml:2: model.prompt_cache_max: invalid size "1.5GiB" (unknown unit ".5GiB")`,
		`prompt_cache_max = "lots"`:       `c.toml:2: model.prompt_cache_max: invalid size "lots": want a size such as "1GiB"`,
		`prompt_cache_max = "1 gigabyte"`: `unknown unit "gigabyte"`,
		`prompt_cache_max = "-1GiB"`:      `invalid size "-1GiB"`,
		`prompt_cache_max = -5`:           `c.toml:2: model.prompt_cache_max: must be 0 (off) or between 1MiB and 1024TiB, got -5 bytes`,
		`prompt_cache_max = 1024`:         `must be 0 (off) or between 1MiB and 1024TiB, got 1024 bytes`,
		`prompt_cache_max = "2048TiB"`:    `size "2048TiB" is too large`,
		`prompt_cache_max = 1.5`:          `c.toml:2: model.prompt_cache_max: must be a size such as "1GiB", "512MiB" or "800MB", or an integer of bytes, got a TOML float`,
		`prompt_cache_max = true`:         `got a TOML boolean`,
		`state_dir = ""`:                  `c.toml:2: model.state_dir: must not be empty`,
	} {
		_, err := Parse([]byte("[model]\n"+doc+"\n"), "c.toml")
		var e *Error
		if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &e) || e.Line != 2 {
			t.Errorf("%s: error %v, want %q at line 2", doc, err, want)
		}
	}
}

func TestStateDirResolvesAgainstTheConfigFile(t *testing.T) {
	cfg, err := Parse([]byte("[model]\nstate_dir = \"../build/run/state\"\n"), "/src/clipd/examples/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.StateDir != "/src/clipd/build/run/state" {
		t.Errorf("state_dir = %q", cfg.Model.StateDir)
	}
	cfg, _ = Parse(nil, "/etc/clipd/clipd.toml")
	if cfg.Model.StateDir != "/var/lib/clipd" {
		t.Errorf("default state_dir = %q", cfg.Model.StateDir)
	}
}

// The example writes both keys out, with their defaults (the example test
// checks that its values are Default()).
func TestExampleShowsThePromptCacheKeys(t *testing.T) {
	data, err := os.ReadFile("clipd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"\nstate_dir = \"/var/lib/clipd\"\n", "\nprompt_cache_max = \"1GiB\"\n"} {
		if !strings.Contains(string(data), line) {
			t.Errorf("the example lacks %q", strings.TrimSpace(line))
		}
	}
}
