package onnxrt

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/internal/testmodel"
)

// openRandomViTB32 opens a random-weight ViT-B/32 bundle: the real
// architecture and size, so timings match the released model's.
func openRandomViTB32(b *testing.B) (*bundle.Bundle, *Encoder) {
	b.Helper()
	return openRandom(b, "ViT-B/32")
}

// openRandom opens a random-weight bundle of a released architecture
// (testmodel.RandomBundle).
func openRandom(b *testing.B, arch string) (*bundle.Bundle, *Encoder) {
	b.Helper()
	requireRuntime(b)
	bun, err := bundle.Load(testmodel.RandomBundle(b, arch))
	if err != nil {
		b.Fatal(err)
	}
	enc, err := Open(bun, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { enc.Close() })
	return bun, enc
}

// directSession is the baseline: onnxruntime_go used by hand with
// preallocated tensors, the same model and the same thread and spinning
// settings as Open's defaults.
func directSession(b *testing.B, path, input string, in ort.Value, out ort.Value) func() {
	b.Helper()
	so, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(runtime.NumCPU()); err != nil {
		b.Fatal(err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		b.Fatal(err)
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		b.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSession(path, []string{input}, []string{OutputName}, so)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Destroy() })
	return func() {
		if err := s.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
			b.Fatal(err)
		}
	}
}

// alternate runs the encoder call and the direct baseline in turns, so
// both see the same load on a shared machine, and reports each one's
// items/s and the encoder's overhead over direct.
func alternate(b *testing.B, n int, unit string, viaEncoder, direct func()) {
	viaEncoder() // warm-up: first runs allocate ORT's arenas
	direct()
	var encTime, dirTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		viaEncoder()
		t1 := time.Now()
		direct()
		encTime += t1.Sub(t0)
		dirTime += time.Since(t1)
	}
	items := float64(n * b.N)
	b.ReportMetric(items/encTime.Seconds(), "encoder-"+unit+"/s")
	b.ReportMetric(items/dirTime.Seconds(), "direct-"+unit+"/s")
	b.ReportMetric(100*(encTime.Seconds()/dirTime.Seconds()-1), "overhead-%")
}

func BenchmarkEncodeImagesViTB32(b *testing.B) {
	bun, enc := openRandomViTB32(b)
	benchEncodeImages(b, bun, enc)
}

// BenchmarkEncodeImagesRN50 is BenchmarkEncodeImagesViTB32 for CLIP's
// ResNet tower (random RN50 weights, 224 px).
func BenchmarkEncodeImagesRN50(b *testing.B) {
	bun, enc := openRandom(b, "RN50")
	benchEncodeImages(b, bun, enc)
}

// BenchmarkImageTowers compares the two image towers of CLIP's base size,
// RN50 and ViT-B/32 (random weights, 224 px, our encoder, all cores),
// called in turns so that both see the same load on a shared machine.
// Two sessions' idle thread pools then compete as in the benchmarks above,
// so the absolute rates are below one session alone; the ratio is fair.
func BenchmarkImageTowers(b *testing.B) {
	rnBundle, rn := openRandom(b, "RN50")
	vitBundle, vit := openRandom(b, "ViT-B/32")
	if rnBundle.ImageSize() != vitBundle.ImageSize() {
		b.Fatalf("RN50 takes %d px, ViT-B/32 %d", rnBundle.ImageSize(), vitBundle.ImageSize())
	}
	s := rnBundle.ImageSize()
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			pixels := pseudoRandom(n*3*s*s, 11)
			run := func(enc *Encoder) func() {
				return func() {
					if _, err := enc.EncodeImages(pixels, n); err != nil {
						b.Fatal(err)
					}
				}
			}
			rnRun, vitRun := run(rn), run(vit)
			rnRun()
			vitRun()
			var rnTime, vitTime time.Duration
			for b.Loop() {
				t0 := time.Now()
				rnRun()
				t1 := time.Now()
				vitRun()
				rnTime += t1.Sub(t0)
				vitTime += time.Since(t1)
			}
			items := float64(n * b.N)
			b.ReportMetric(items/rnTime.Seconds(), "rn50-images/s")
			b.ReportMetric(items/vitTime.Seconds(), "vitb32-images/s")
		})
	}
}

func benchEncodeImages(b *testing.B, bun *bundle.Bundle, enc *Encoder) {
	s := bun.ImageSize()
	item := 3 * s * s
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			pixels := pseudoRandom(n*item, 7)
			in, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(s), int64(s)), pixels)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Destroy()
			out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), int64(bun.EmbedDim())))
			if err != nil {
				b.Fatal(err)
			}
			defer out.Destroy()
			direct := directSession(b, bun.VisualONNX, ImageInput, in, out)
			alternate(b, n, "images", func() {
				if _, err := enc.EncodeImages(pixels, n); err != nil {
					b.Fatal(err)
				}
			}, direct)
		})
	}
}

func BenchmarkEncodeTextsViTB32(b *testing.B) {
	bun, enc := openRandomViTB32(b)
	if enc.text.inputType != ort.TensorElementDataTypeInt32 {
		b.Skip("direct baseline written for int32 text input")
	}
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			tokens := make([][]int32, n)
			flat := make([]int32, 0, n*77)
			for i := range tokens {
				tokens[i] = make([]int32, 77)
				tokens[i][0] = 49406
				for j := 1; j < 12; j++ {
					tokens[i][j] = int32(320 + 37*i + j)
				}
				tokens[i][12] = 49407
				flat = append(flat, tokens[i]...)
			}
			in, err := ort.NewTensor(ort.NewShape(int64(n), 77), flat)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Destroy()
			out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), int64(bun.EmbedDim())))
			if err != nil {
				b.Fatal(err)
			}
			defer out.Destroy()
			direct := directSession(b, bun.TextualONNX, TextInput, in, out)
			alternate(b, n, "texts", func() {
				if _, err := enc.EncodeTexts(tokens); err != nil {
					b.Fatal(err)
				}
			}, direct)
		})
	}
}

// BenchmarkOverheadLinear isolates what Encoder adds around Run (input
// copy, tensor pool, output copy) on a model whose own work is one
// 224x224x3 dot product, so the difference to direct is mostly ours.
func BenchmarkOverheadLinear(b *testing.B) {
	requireRuntime(b)
	const size, dim = 224, 1
	spec := linearSpec{"image", "float32", "N,3,224,224", "embedding", dim}
	text := linearSpec{"text", "int32", "N,77", "embedding", dim}
	bun := linearBundleSized(b, size, dim, spec, text)
	enc, err := Open(bun, Options{IntraOpThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			pixels := pseudoRandom(n*3*size*size, 3)
			in, err := ort.NewTensor(ort.NewShape(int64(n), 3, size, size), pixels)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Destroy()
			out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), dim))
			if err != nil {
				b.Fatal(err)
			}
			defer out.Destroy()
			direct := directSession(b, bun.VisualONNX, ImageInput, in, out)
			alternate(b, n, "images", func() {
				if _, err := enc.EncodeImages(pixels, n); err != nil {
					b.Fatal(err)
				}
			}, direct)
		})
	}
}

// BenchmarkOpenViTB32 is what opening a random-weight ViT-B/32 costs:
// reading the declared inputs and outputs from the protobuf
// (readModelFileIO, what Open does) against ONNX Runtime's way of reading
// them (a temporary session, what Open did), alternated, and the visual
// session itself. One op opens both ways once.
func BenchmarkOpenViTB32(b *testing.B) {
	requireRuntime(b)
	bun, err := bundle.Load(testmodel.RandomBundle(b, "ViT-B/32"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := initRuntime(""); err != nil {
		b.Fatal(err)
	}
	var read, runtimeIO, session time.Duration
	for b.Loop() {
		t0 := time.Now()
		for _, path := range []string{bun.VisualONNX, bun.TextualONNX} {
			if _, _, err := readModelFileIO(path); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for _, path := range []string{bun.VisualONNX, bun.TextualONNX} {
			if _, _, err := ort.GetInputOutputInfo(path); err != nil {
				b.Fatal(err)
			}
		}
		releaseFreedMemory()
		t2 := time.Now()
		enc, err := Open(bun, Options{})
		if err != nil {
			b.Fatal(err)
		}
		session += time.Since(t2)
		enc.Close()
		read += t1.Sub(t0)
		runtimeIO += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(read.Seconds()*1000/n, "read_declarations_ms")
	b.ReportMetric(runtimeIO.Seconds()*1000/n, "runtime_declarations_ms")
	b.ReportMetric(session.Seconds()*1000/n, "open_ms")
}

// BenchmarkTextReopenViTB32 is the cost of the text session on demand: the
// first text call after the idle close (open and one prompt), next to a
// call on the open session, and the resident memory the open session
// holds (the process's anonymous RSS with it open minus closed).
func BenchmarkTextReopenViTB32(b *testing.B) {
	_, enc := openRandomViTB32(b)
	tokens := [][]int32{make([]int32, 77)}
	tokens[0][0], tokens[0][1], tokens[0][2] = 49406, 320, 49407
	var reopen, warm time.Duration
	var held int64
	for b.Loop() {
		enc.textMu.Lock()
		enc.text.closeSession()
		enc.textMu.Unlock()
		closed := anonRSS()
		t0 := time.Now()
		if _, err := enc.EncodeTexts(tokens); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := enc.EncodeTexts(tokens); err != nil {
			b.Fatal(err)
		}
		warm += time.Since(t1)
		reopen += t1.Sub(t0)
		held += anonRSS() - closed
	}
	n := float64(b.N)
	b.ReportMetric(reopen.Seconds()*1000/n, "first_call_ms")
	b.ReportMetric(warm.Seconds()*1000/n, "open_call_ms")
	b.ReportMetric(float64(held)/n/(1<<20), "text_session_MB")
}

// anonRSS is this process's anonymous resident memory (RssAnon): the
// weights and buffers, without the mapped library and executable.
func anonRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
