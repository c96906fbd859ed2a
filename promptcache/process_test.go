package promptcache

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The helper process: this test binary run again with helperEnv set plays a
// daemon or a one-shot command using the cache at the same time as others.
const (
	helperEnv   = "PROMPTCACHE_TEST_HELPER"
	helperDim   = 64
	helperRound = 60
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(helperEnv); mode {
	case "":
	case "maintain":
		if err := maintainHelper(os.Getenv("PROMPTCACHE_TEST_STATE"), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helperPrompts(writer, round int) []string {
	// Half the prompts are shared by every writer, so the same prompt is
	// written concurrently by several processes.
	return append(prompts(fmt.Sprintf("shared %d", round), 5), prompts(fmt.Sprintf("writer %d round %d", writer, round), 5)...)
}

// helper runs "write ID" or "read", against PROMPTCACHE_TEST_STATE with
// PROMPTCACHE_TEST_MAX bytes, after PROMPTCACHE_TEST_GO exists.
func helper(mode string) int {
	state := os.Getenv("PROMPTCACHE_TEST_STATE")
	max, _ := strconv.ParseInt(os.Getenv("PROMPTCACHE_TEST_MAX"), 10, 64)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := Open(Config{StateDir: state, Model: testKey, Dim: helperDim, MaxBytes: max, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(os.Getenv("PROMPTCACHE_TEST_GO")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "no start signal")
			return 1
		}
	}
	var all []string
	for w := range 2 {
		for r := range helperRound {
			all = append(all, helperPrompts(w, r)...)
		}
	}
	check := func() int {
		for i, e := range c.Get(all) {
			if e != nil && !sameBits(e, unitVec(all[i], helperDim)) {
				fmt.Fprintf(os.Stderr, "WRONG embedding for %q\n", all[i])
				return 1
			}
		}
		return 0
	}
	if id, ok := strings.CutPrefix(mode, "write "); ok {
		w, _ := strconv.Atoi(id)
		for r := range helperRound {
			ps := helperPrompts(w, r)
			if err := c.Put(ps, vecs(ps, helperDim)); err != nil {
				fmt.Fprintln(os.Stderr, "Put:", err)
				return 1
			}
			if r%10 == 0 && check() != 0 {
				return 1
			}
		}
		return 0
	}
	stop := os.Getenv("PROMPTCACHE_TEST_STOP")
	for {
		if check() != 0 {
			return 1
		}
		if _, err := os.Stat(stop); err == nil {
			return check()
		}
	}
}

// Two writers (daemons, one-shot commands) and a reader on one cache at
// once, writing overlapping prompts and compacting: no process ever reads a
// wrong embedding, none logs a bad file, and with room enough nothing
// written is lost; with little room the bound holds.
func TestConcurrentProcesses(t *testing.T) {
	for _, c := range []struct {
		name string
		max  int64
	}{
		{"unbounded", 0},
		{"bounded", 48 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			state := t.TempDir()
			goFile, stopFile := filepath.Join(state, "go"), filepath.Join(state, "stop")
			start := func(mode string) (*exec.Cmd, *bytes.Buffer) {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), helperEnv+"="+mode, "PROMPTCACHE_TEST_STATE="+state,
					"PROMPTCACHE_TEST_MAX="+strconv.FormatInt(c.max, 10),
					"PROMPTCACHE_TEST_GO="+goFile, "PROMPTCACHE_TEST_STOP="+stopFile)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				return cmd, &out
			}
			w0, out0 := start("write 0")
			w1, out1 := start("write 1")
			r, outR := start("read")
			os.WriteFile(goFile, nil, 0o644)
			for i, w := range []*exec.Cmd{w0, w1} {
				if err := w.Wait(); err != nil {
					t.Errorf("writer %d: %v\n%s", i, err, []*bytes.Buffer{out0, out1}[i])
				}
			}
			os.WriteFile(stopFile, nil, 0o644)
			if err := r.Wait(); err != nil {
				t.Errorf("reader: %v\n%s", err, outR)
			}
			for _, out := range []*bytes.Buffer{out0, out1, outR} {
				if s := strings.TrimSpace(out.String()); s != "" {
					t.Errorf("a process logged: %s", s)
				}
			}

			f := newFixture(t)
			f.state = state
			cache := f.open(t, testKey, helperDim, c.max)
			var total int64
			for _, p := range segmentFiles(t, cache.Dir()) {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := DecodeSegment(data); err != nil {
					t.Errorf("%s: %v", p, err)
				}
				total += int64(len(data))
			}
			if tmps, _ := filepath.Glob(filepath.Join(cache.Dir(), tempPrefix+"*")); len(tmps) > 0 {
				t.Errorf("temporary files left: %v", tmps)
			}
			if c.max == 0 {
				for w := range 2 {
					for r := range helperRound {
						checkAll(t, cache, helperPrompts(w, r), helperDim)
					}
				}
			} else if total > c.max+16<<10 {
				// The last eviction may not have seen the other
				// writer's last segment (a few KiB).
				t.Errorf("cache holds %d bytes, bound %d", total, c.max)
			}
			t.Logf("%d segments, %d bytes", len(segmentFiles(t, cache.Dir())), total)
		})
	}
}
