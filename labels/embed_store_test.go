package labels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipd/clipd/promptcache"
)

// bigSet has labels × 3 templates distinct prompts.
func bigSet(t *testing.T, labels int, extra string) *Set {
	var b strings.Builder
	b.WriteString("template: a photo of a {}.\ntemplate: a drawing of a {}.\ntemplate: a {} in the wild.\n")
	for i := range labels {
		fmt.Fprintf(&b, "thing %d\n", i)
	}
	b.WriteString(extra)
	return parseString(t, b.String())
}

func openStore(t *testing.T, state string) *promptcache.Cache {
	t.Helper()
	c, err := promptcache.Open(promptcache.Config{StateDir: state, Model: promptcache.ModelKey{42}, Dim: 8})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func weights(s *Set) [][]float32 {
	out := make([][]float32, len(s.Labels))
	for i, l := range s.Labels {
		out[i] = l.Weight
	}
	return out
}

// A second process (fresh Embedder, fresh encoder, the same cache
// directory) encodes nothing it was not already given, and gets the same
// weights bit for bit; an edit encodes only the new prompts.
func TestEmbedderStoresAcrossRestarts(t *testing.T) {
	state := t.TempDir()
	first := &hashEncoder{dim: 8}
	e, err := OpenEmbedder(EmbedderConfig{Encoder: first, Store: openStore(t, state)})
	if err != nil {
		t.Fatal(err)
	}
	set := bigSet(t, 100, "")
	if err := e.Embed(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	if _, encoded := first.stats(); len(encoded) != 300 {
		t.Fatalf("first start encoded %d prompts, want 300", len(encoded))
	}

	second := &hashEncoder{dim: 8}
	e2, _ := OpenEmbedder(EmbedderConfig{Encoder: second, Store: openStore(t, state)})
	again := bigSet(t, 100, "")
	if err := e2.Embed(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	if calls, _ := second.stats(); calls != 0 {
		t.Fatalf("warm start called the encoder %d times", calls)
	}
	if !reflect.DeepEqual(weights(set), weights(again)) {
		t.Fatal("weights from the cache differ from the encoded ones")
	}
	edited := bigSet(t, 100, "a new thing\n")
	if err := e2.Embed(context.Background(), edited); err != nil {
		t.Fatal(err)
	}
	if _, encoded := second.stats(); !reflect.DeepEqual(encoded, []string{"a photo of a a new thing.", "a drawing of a a new thing.", "a a new thing in the wild."}) {
		t.Fatalf("the edit encoded %q", encoded)
	}
}

// cancellingEncoder ends ctx during its first call, as SIGTERM would.
type cancellingEncoder struct {
	hashEncoder
	cancel context.CancelFunc
}

func (c *cancellingEncoder) EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error) {
	c.cancel()
	return c.hashEncoder.EncodePrompts(ctx, prompts)
}

// Encoding stops at the next batch once the context ends; what was encoded
// is stored, so the next start continues where this one stopped.
func TestEmbedStopsWhenTheContextEnds(t *testing.T) {
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	enc := &cancellingEncoder{hashEncoder: hashEncoder{dim: 8}, cancel: cancel}
	e, _ := OpenEmbedder(EmbedderConfig{Encoder: enc, Store: openStore(t, state)})
	err := e.Embed(ctx, bigSet(t, 100, ""))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "after 64 of 300 prompts") {
		t.Fatalf("Embed: %v", err)
	}
	if calls, _ := enc.stats(); calls != 1 {
		t.Fatalf("encoder called %d times after the context ended", calls)
	}
	next := &hashEncoder{dim: 8}
	e2, _ := OpenEmbedder(EmbedderConfig{Encoder: next, Store: openStore(t, state)})
	if err := e2.Embed(context.Background(), bigSet(t, 100, "")); err != nil {
		t.Fatal(err)
	}
	if _, encoded := next.stats(); len(encoded) != 300-encodeBatch {
		t.Fatalf("the next start encoded %d prompts, want %d", len(encoded), 300-encodeBatch)
	}
}

func TestEmbedReportsProgress(t *testing.T) {
	var mu sync.Mutex
	var reports []Progress
	var logs bytes.Buffer
	e, _ := OpenEmbedder(EmbedderConfig{
		Encoder: &hashEncoder{dim: 8}, ProgressEvery: time.Nanosecond,
		Log:      slog.New(slog.NewTextHandler(&logs, nil)),
		Progress: func(p Progress) { mu.Lock(); reports = append(reports, p); mu.Unlock() },
	})
	set := bigSet(t, 100, "")
	set.File = "big.labels"
	if err := e.Embed(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	var done []int
	for _, p := range reports {
		if p.Total != 300 || p.File != "big.labels" {
			t.Fatalf("report %+v", p)
		}
		done = append(done, p.Done)
	}
	if want := []int{0, 64, 128, 192, 256, 300}; !reflect.DeepEqual(done, want) {
		t.Fatalf("reports at %v prompts, want %v", done, want)
	}
	if last := reports[len(reports)-1]; last.Rate() <= 0 || !strings.Contains(last.String(), "encoded 300 prompts") {
		t.Errorf("final report %q, rate %v", last.String(), last.Rate())
	}
	out := logs.String()
	for _, want := range []string{`msg="encoding prompts" file=big.labels prompts=300`, "done=64 total=300", `msg="prompts encoded" file=big.labels prompts=300`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	// With the default interval a quick job reports only its start and
	// its end; nothing is reported when nothing needs encoding.
	reports = nil
	e2, _ := OpenEmbedder(EmbedderConfig{Encoder: &hashEncoder{dim: 8}, ProgressEvery: time.Hour,
		Progress: func(p Progress) { reports = append(reports, p) }})
	e2.Embed(context.Background(), bigSet(t, 100, ""))
	e2.Embed(context.Background(), bigSet(t, 100, ""))
	if len(reports) != 2 || reports[0].Done != 0 || reports[1].Done != 300 {
		t.Errorf("reports %+v, want the start and the end", reports)
	}
}

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		p    Progress
		want string
	}{
		{Progress{File: "a.labels", Total: 1800}, "a.labels: encoding 1800 prompts"},
		{Progress{File: "a.labels", Total: 1800, Cached: 200}, "a.labels: encoding 1800 prompts (200 more from the prompt cache)"},
		{Progress{File: "a.labels", Done: 600, Total: 1800, Elapsed: 60 * time.Second}, "a.labels: encoding prompts, 600/1800 (33%), 10.0/s, about 2m0s left"},
		{Progress{File: "a.labels", Done: 1800, Total: 1800, Elapsed: 150 * time.Second}, "a.labels: encoded 1800 prompts in 2m30s (12.0/s)"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
	if r := (Progress{Done: 10, Total: 20, Elapsed: 5 * time.Second}).Remaining(); math.Abs(r.Seconds()-5) > 1e-9 {
		t.Errorf("Remaining %v, want 5s", r)
	}
}

// A degenerate embedding (zero vector) fails the label, and is not stored
// to fail again at the next start.
func TestDegenerateEmbeddingsAreNotStored(t *testing.T) {
	state := t.TempDir()
	e, _ := OpenEmbedder(EmbedderConfig{Encoder: zeroEncoder{}, Store: openStore(t, state)})
	if err := e.Embed(context.Background(), parseString(t, "dog\n")); err == nil {
		t.Fatal("a zero embedding was accepted")
	}
	if got := openStore(t, state).Get([]string{"a photo of a dog."}); got[0] != nil {
		t.Fatal("a zero embedding was stored")
	}
}

type zeroEncoder struct{}

func (zeroEncoder) LogitScale() float32 { return 100 }

func (zeroEncoder) EncodePrompts(_ context.Context, p []string) ([][]float32, error) {
	out := make([][]float32, len(p))
	for i := range out {
		out[i] = make([]float32, 8)
	}
	return out, nil
}

// A client's ad-hoc labels use what is known and leave nothing behind:
// neither in memory nor in the Store, where they would evict the labels
// files' prompts.
func TestEmbedAdHocKeepsNothing(t *testing.T) {
	enc := &hashEncoder{dim: 8}
	store := openStore(t, t.TempDir())
	e, _ := OpenEmbedder(EmbedderConfig{Encoder: enc, Store: store})
	file := parseString(t, "dog\ncat\n")
	if err := e.Embed(context.Background(), file); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		adhoc, err := FromNames([]string{"wolf", "dog", "fox"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := enc.stats()
		if err := e.EmbedAdHoc(context.Background(), adhoc); err != nil {
			t.Fatal(err)
		}
		calls, encoded := enc.stats()
		if want := []string{"a photo of a wolf.", "a photo of a fox."}; calls != before+1 || !reflect.DeepEqual(encoded[len(encoded)-2:], want) {
			t.Fatalf("ad-hoc labels encoded %q in %d calls, want %q in one: dog is known, the others are never kept", encoded, calls-before, want)
		}
		if !reflect.DeepEqual(adhoc.Labels[1].Weight, file.Labels[0].Weight) {
			t.Error("the ad-hoc dog differs from the file's")
		}
		if top, err := adhoc.Top(adhoc.Labels[2].Weight, 1); err != nil || top[0].Label != "fox" {
			t.Errorf("ad-hoc set scores %v, %v", top, err)
		}
		if n := e.Cached(); n != 2 {
			t.Errorf("the Embedder holds %d prompts after an ad-hoc set, want the file's 2", n)
		}
		if got := store.Get([]string{"a photo of a wolf.", "a photo of a fox.", "a photo of a dog."}); got[0] != nil || got[1] != nil || got[2] == nil {
			t.Errorf("the Store holds wolf %v, fox %v, dog %v; want only dog", got[0] != nil, got[1] != nil, got[2] != nil)
		}
	}
}

// gateEncoder holds every batch with a prompt containing "slow" until
// release is closed, like a CPU encoding a large labels file.
type gateEncoder struct {
	hashEncoder
	started chan struct{}
	release chan struct{}
}

func (g *gateEncoder) EncodePrompts(ctx context.Context, prompts []string) ([][]float32, error) {
	for _, p := range prompts {
		if strings.Contains(p, "slow") {
			close(g.started)
			<-g.release
			break
		}
	}
	return g.hashEncoder.EncodePrompts(ctx, prompts)
}

// Encoding runs outside the Embedder's lock: a client's classify is not
// held up by a labels file being encoded (nor a reload by a client), and a
// prune meanwhile cannot take the prompts the encoding set found cached.
func TestEmbedEncodesOutsideTheLock(t *testing.T) {
	enc := &gateEncoder{hashEncoder: hashEncoder{dim: 8}, started: make(chan struct{}), release: make(chan struct{})}
	e := NewEmbedder(enc)
	first := parseString(t, "dog\n")
	if err := e.Embed(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	slow := parseString(t, "dog\nslow loris\n")
	done := make(chan error, 1)
	go func() { done <- e.Embed(context.Background(), slow) }()
	select {
	case <-enc.started:
	case <-time.After(eventWait):
		t.Fatal("the slow set never reached the encoder")
	}

	adhoc, _ := FromNames([]string{"cat", "dog"}, nil)
	fast := make(chan error, 1)
	go func() { fast <- e.EmbedAdHoc(context.Background(), adhoc) }()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(eventWait):
		t.Fatal("an ad-hoc set waited for another set's encoding")
	}
	// Forget everything while the slow set encodes: the dog it found
	// cached must still be there for its weight.
	e.Retain()
	if n := e.Cached(); n != 0 {
		t.Fatalf("Retain() left %d prompts", n)
	}
	select {
	case err := <-done:
		t.Fatalf("the slow set finished before its encoder was released: %v", err)
	default:
	}
	close(enc.release)
	if err := <-done; err != nil {
		t.Fatalf("the slow set, pruned under it: %v", err)
	}
	if !reflect.DeepEqual(slow.Labels[0].Weight, first.Labels[0].Weight) || !slow.Embedded() {
		t.Error("the slow set's dog differs from the first one's")
	}
	if n := e.Cached(); n != 1 {
		t.Errorf("after the slow set, %d prompts are held; want its new one", n)
	}
}
