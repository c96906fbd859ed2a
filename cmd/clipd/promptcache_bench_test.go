package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/testmodel"
)

// BenchmarkClassifyWarmCacheViTB32 runs the real binary, `clipd classify`
// of one image against CIFAR-100's 1,800 prompts on a random-weight
// ViT-B/32 (ONNX Runtime, every core), with the prompt cache warm: one op
// is the whole command, process start to exit. The cache lives in
// build/bench/state and is filled by an untimed first run when cold (a
// minute or more on two cores).
func BenchmarkClassifyWarmCacheViTB32(b *testing.B) {
	bundle := testmodel.RandomBundle(b, "ViT-B/32")
	bin := clipdBinary(b)
	labelsFile := testmodel.CIFAR100Labels(b, b.TempDir())
	state := filepath.Join(testmodel.RepoRoot(b), "build", "bench", "state")
	image := filepath.Join(testmodel.SharedDir(b), "reference", "images", "img0_640x480.jpg")
	run := func() {
		cmd := exec.Command(bin, "classify", "--model", bundle, "--backend", "onnxruntime", "--labels", labelsFile,
			"--state-dir", state, "--top-k", "1", image)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
	}
	warmup := time.Now()
	run()
	b.Logf("first run (warms the cache if it was cold): %s", time.Since(warmup).Round(time.Millisecond))
	start := time.Now()
	for b.Loop() {
		run()
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s_wall")
}
