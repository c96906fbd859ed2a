package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/trt"
	"github.com/clipd/clipd/web"
)

// cmdCheck reports every problem that would stop `clipd run` on a config
// file, and what it cannot know yet as warnings. It asks the functions run
// asks (config.Load's checks, capture.Preflight, labels.Load, model.Open
// and its probe, server.CheckPath, the outputs' secret readers), so that
// what check accepts, run starts.
func cmdCheck(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "--config FILE", stderr)
	path := fs.String("config", "", "config file")
	if err := parseNoArgs(fs, args, path); err != nil {
		return err
	}
	doc, err := config.Inspect(*path)
	if err != nil {
		// Not TOML of the expected shape: every problem go-toml found,
		// but nothing to check beyond them.
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(stdout, e)
			}
			return fmt.Errorf("%s: %s", *path, count(len(list), "problem"))
		}
		return err
	}
	r := checkDocument(doc)
	for _, f := range r.findings {
		fmt.Fprintln(stdout, f)
	}
	for _, line := range append(r.notes, r.coverage...) {
		fmt.Fprintln(stdout, line)
	}
	if r.problems > 0 {
		return fmt.Errorf("%s: %s", *path, count(r.problems, "problem"))
	}
	summary := fmt.Sprintf("%s: OK (%s, model %s", *path, count(len(doc.Config.Cameras), "camera"), doc.Config.Model.Bundle)
	if w := len(r.findings); w > 0 {
		summary += "; " + count(w, "warning")
	}
	fmt.Fprintln(stdout, summary+")")
	return nil
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

type checkReport struct {
	// findings are problems and warnings ("warning: " in the message),
	// those of the config file first, in line order.
	findings []*config.Error
	problems int
	// notes say what check could not do as run will.
	notes []string
	// coverage says, per camera, which part of its frames is classified.
	coverage []string
}

func (r *checkReport) problem(e *config.Error) {
	r.findings = append(r.findings, e)
	r.problems++
}

func (r *checkReport) warning(e *config.Error) {
	e.Msg = "warning: " + e.Msg
	r.findings = append(r.findings, e)
}

// bundleHelp says what a model bundle is, for the error of a missing one.
const bundleHelp = "a bundle is a directory holding a CLIP model as ONNX (config.json, visual/, textual/ and a tokenizer);\n" +
	"  make one with `tools/export-clip ViT-B-32.pt DIR --vocab bpe_simple_vocab_16e6.txt.gz`, or use an immich-layout export as it is"

func checkDocument(doc *config.Document) *checkReport {
	r := &checkReport{}
	for _, e := range doc.Problems {
		r.problem(e)
	}
	cfg := doc.Config

	if !doc.Failed("socket.path") {
		if err := server.CheckPath(cfg.Socket.Path); err != nil {
			r.problem(doc.At("socket.path", "%v", err))
		}
	}
	if cfg.Socket.Group != "" {
		if _, err := server.LookupGroup(cfg.Socket.Group); err != nil {
			r.problem(doc.At("socket.group", "%v", err))
		}
	}

	for i, cam := range cfg.Cameras {
		key := fmt.Sprintf("camera[%d]", i)
		if doc.Failed(key+".source") || doc.Failed(key+".format") || doc.Failed(key+".width") ||
			doc.Failed(key+".height") || doc.Failed(key+".fps") || doc.Failed(key+".loop") {
			continue // Preflight would report the same problem again
		}
		missing, err := capture.Preflight(cam.Capture())
		var p capture.Problem
		switch {
		case errors.As(err, &p):
			r.problem(doc.At(key+"."+p.Key, "%s", p.Msg))
		case err != nil:
			r.problem(doc.At(key+".source", "%v", err))
		case missing != "":
			r.warning(doc.At(key+".source", "%s", missing))
		}
	}
	checkLabels(doc, r)
	checkSecrets(doc, r)

	size := 0
	if !doc.Failed("model") {
		size = checkModel(doc, r)
	}
	if size > 0 {
		for i, cam := range cfg.Cameras {
			if !doc.Failed(fmt.Sprintf("camera[%d]", i)) {
				r.coverage = append(r.coverage, coverageLines(cam, size)...)
			}
		}
	}

	// The config file's own problems in line order, then those of label
	// files by file and line.
	slices.SortStableFunc(r.findings, func(a, b *config.Error) int {
		return cmp.Or(cmp.Compare(rank(a, doc.Path), rank(b, doc.Path)), cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return r
}

func rank(e *config.Error, configPath string) int {
	if e.File == configPath {
		return 0
	}
	return 1
}

// checkLabels parses each label file, cameras' and regions', once, as the
// daemon's watchers will.
func checkLabels(doc *config.Document, r *checkReport) {
	users := map[string][]string{} // file → keys of the cameras using it
	var files []string
	use := func(key, file string) {
		if file == "" || doc.Failed(key) {
			return
		}
		if users[file] == nil {
			files = append(files, file)
		}
		users[file] = append(users[file], key)
	}
	for i, cam := range doc.Config.Cameras {
		use(fmt.Sprintf("camera[%d].labels", i), cam.Labels)
		// A region with its own labels file gets a watcher of its own
		// in run, so check parses that file too.
		for j, reg := range cam.Regions {
			if reg.Labels != cam.Labels {
				use(fmt.Sprintf("camera[%d].region[%d].labels", i, j), reg.Labels)
			}
		}
	}
	for _, file := range files {
		_, err := labels.Load(file)
		var pe *labels.ParseError
		switch {
		case err == nil:
		case errors.As(err, &pe):
			r.problem(&config.Error{File: pe.File, Line: pe.Line, Msg: pe.Msg + " (" + strings.Join(users[file], ", ") + ")"})
		default:
			for _, key := range users[file] {
				r.problem(doc.At(key, "%v", err))
			}
		}
	}
}

// checkSecrets reads the files the outputs read at start (the broker's
// password and TLS files, the web token) with the outputs' own readers.
func checkSecrets(doc *config.Document, r *checkReport) {
	cfg := doc.Config
	if cfg.MQTT.Broker != "" && !doc.Failed("mqtt") {
		if err := cfg.MQTT.CheckSecrets(); err != nil {
			var ke *mqtt.KeyError
			if errors.As(err, &ke) {
				r.problem(doc.At("mqtt."+ke.Key, "%s", ke.Msg))
			} else {
				r.problem(doc.At("mqtt", "%v", err))
			}
		}
	}
	if cfg.HTTP.Listen != "" && !doc.Failed("http") {
		if err := cfg.HTTP.CheckToken(); err != nil {
			var ke *web.KeyError
			if errors.As(err, &ke) {
				r.problem(doc.At("http."+ke.Key, "%s", ke.Msg))
			} else {
				r.problem(doc.At("http", "%v", err))
			}
		}
	}
}

// checkModel loads the bundle and probes its encoders as run does; it
// returns the model's input size, 0 if it cannot be used.
func checkModel(doc *config.Document, r *checkReport) int {
	m := doc.Config.Model
	if _, err := os.Stat(m.Bundle); errors.Is(err, fs.ErrNotExist) {
		r.problem(doc.At("model.bundle", "no model bundle at %s\n  %s", m.Bundle, bundleHelp))
		return 0
	}
	b, _, err := model.Check(m.Bundle)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			msg += "\n  " + bundleHelp
		}
		r.problem(doc.At("model.bundle", "%s", msg))
		return 0
	}
	backend, _, err := engine.SelectBackend(m.Backend, trt.Available())
	if err != nil {
		r.problem(doc.At("model.backend", "%v", err))
		return 0
	}
	// A TensorRT engine takes minutes to build, which is run's work (and
	// cached); the weights are probed on ONNX Runtime, the FP32 reference
	// TensorRT is checked against.
	if backend == engine.BackendTensorRT {
		r.notes = append(r.notes, "model: probed on ONNX Runtime; run builds the TensorRT engine and checks it against that")
	}
	mod, err := model.Open(m.Bundle, model.Options{Backend: engine.BackendONNXRuntime,
		ONNXRuntimeLib: m.ONNXRuntimeLib, Threads: 1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		key := "model.bundle"
		if strings.Contains(err.Error(), "ONNX Runtime") {
			key = "model.onnxruntime_lib"
		}
		r.problem(doc.At(key, "%v", err))
		return 0
	}
	defer mod.Close()
	return b.ImageSize()
}

// coverageLines say which part of a camera's frames CLIP looks at, for the
// whole frame (its centre crop keeps the centre square) and each region.
func coverageLines(cam config.Camera, size int) []string {
	if cam.Width == 0 || cam.Height == 0 {
		line := fmt.Sprintf("%s: the %s's own size, not known until it plays → its centre square classified", cam.Name, cam.SourceKind())
		if len(cam.Regions) > 0 {
			line += "; regions are placed when the first frame arrives"
		}
		return []string{line}
	}
	var lines []string
	cover := func(name string, box frame.Box) {
		c, err := preprocess.CoverageOf(box, cam.Width, cam.Height, size)
		if err != nil {
			lines = append(lines, fmt.Sprintf("%s: %v", name, err))
			return
		}
		line := name + ": " + c.String()
		if cam.SourceKind() == capture.KindV4L2 {
			// The driver may choose another size; status shows the real one.
			line += ", if the device takes that size"
		}
		lines = append(lines, line)
	}
	if !cam.RegionsOnly {
		cover(cam.Name, frame.Full(cam.Width, cam.Height))
	}
	for _, r := range cam.Regions {
		box, err := r.BoxIn(cam.Width, cam.Height)
		if err != nil {
			lines = append(lines, fmt.Sprintf("%s/%s: %v", cam.Name, r.Name, err))
			continue
		}
		cover(cam.Name+"/"+r.Name, box)
	}
	return lines
}
