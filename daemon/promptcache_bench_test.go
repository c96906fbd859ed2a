package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/server"
)

// BenchmarkEmbedCIFAR100ViTB32 embeds the 1,800 CIFAR-100 prompts with a
// random-weight ViT-B/32 text encoder (ONNX Runtime, every core): cold
// with an empty prompt cache, warm from the cache the cold runs filled, as
// a restarted daemon or a one-shot command finds it (nothing in memory).
func BenchmarkEmbedCIFAR100ViTB32(b *testing.B) {
	bundle := testmodel.RandomBundle(b, "ViT-B/32")
	dir := b.TempDir()
	labelsFile := testmodel.CIFAR100Labels(b, dir)
	m, err := model.Open(bundle, model.Options{Backend: engine.BackendONNXRuntime})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	text, err := os.ReadFile(labelsFile)
	if err != nil {
		b.Fatal(err)
	}
	embed := func(b *testing.B, state string) {
		cache, err := m.OpenPromptCache(state, 0)
		if err != nil {
			b.Fatal(err)
		}
		e, _ := labels.OpenEmbedder(labels.EmbedderConfig{Encoder: m, Store: cache})
		set, err := labels.Parse(strings.NewReader(string(text)), labelsFile)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Embed(context.Background(), set); err != nil {
			b.Fatal(err)
		}
	}
	var warmState string
	var cold float64
	b.Run("cold", func(b *testing.B) {
		start := time.Now()
		for i := range b.N {
			// Every run starts from an empty cache.
			warmState = filepath.Join(dir, fmt.Sprint("state-", b.N, "-", i))
			embed(b, warmState)
		}
		cold = time.Since(start).Seconds() / float64(b.N)
		b.ReportMetric(1800/cold, "prompts/s")
	})
	b.Run("warm", func(b *testing.B) {
		if warmState == "" {
			b.Skip("needs the cold run")
		}
		start := time.Now()
		for range b.N {
			embed(b, warmState)
		}
		warm := time.Since(start).Seconds() / float64(b.N)
		b.ReportMetric(100*warm/cold, "%_of_cold")
	})
}

// BenchmarkStartCIFAR100ViTB32 is the daemon's start to its first result
// with the 1,800 CIFAR-100 prompts on a random-weight ViT-B/32 (ONNX
// Runtime, every core, a synthetic camera): cold with an empty prompt
// cache, warm with the cache a cold start left. Both include opening the
// model, which a warm start cannot avoid.
func BenchmarkStartCIFAR100ViTB32(b *testing.B) {
	bundle := testmodel.RandomBundle(b, "ViT-B/32")
	dir, err := os.MkdirTemp("", "cb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	labelsFile := testmodel.CIFAR100Labels(b, dir)
	var warmState string
	var cold float64
	b.Run("cold", func(b *testing.B) {
		var total time.Duration
		for i := range b.N {
			warmState = filepath.Join(dir, fmt.Sprint("state-", b.N, "-", i))
			total += startToFirstResult(b, bundle, labelsFile, warmState, dir)
		}
		cold = total.Seconds() / float64(b.N)
		b.ReportMetric(cold, "s_to_first_result")
	})
	b.Run("warm", func(b *testing.B) {
		if warmState == "" {
			b.Skip("needs the cold run")
		}
		var total time.Duration
		for range b.N {
			total += startToFirstResult(b, bundle, labelsFile, warmState, dir)
		}
		warm := total.Seconds() / float64(b.N)
		b.ReportMetric(warm, "s_to_first_result")
		b.ReportMetric(100*warm/cold, "%_of_cold")
	})
}

// startToFirstResult runs the daemon until a client receives its first
// result and returns how long that took from the call to Run.
func startToFirstResult(b *testing.B, bundle, labelsFile, state, dir string) time.Duration {
	conf := config.Default()
	conf.Model.Bundle, conf.Model.Backend, conf.Model.StateDir = bundle, engine.BackendONNXRuntime, state
	conf.Snapshots.Dir = filepath.Join(dir, "snapshots")
	conf.Socket.Path = filepath.Join(dir, "s.sock")
	conf.Cameras = []config.Camera{{Name: "cam", Source: "pattern", Format: "auto", Width: 224, Height: 224,
		FPS: 10, Labels: labelsFile, TopK: 1}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- Run(ctx, Options{Config: conf, Version: "bench", Log: discardLogger()}) }()
	var c *server.Client
	for c == nil {
		var err error
		if c, err = server.Dial(conf.Socket.Path); err != nil {
			select {
			case err := <-done:
				b.Fatalf("the daemon ended before serving: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	nextResult(b, c)
	took := time.Since(start)
	c.Close()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return took
}
