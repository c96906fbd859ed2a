package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/daemon"
	"github.com/clipd/clipd/server"
)

func cmdRun(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "--config FILE [--show]", stderr)
	path := fs.String("config", "", "config file (see config/clipd.example.toml)")
	show := fs.Bool("show", false, "also print results readably on stdout")
	if err := parseNoArgs(fs, args, path); err != nil {
		return err
	}
	conf, err := config.Load(*path)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(conf.Log.SlogLevel())
	log := newLogger(conf.Log, level, stderr)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	opts := daemon.Options{ConfigPath: *path, Config: conf, Log: log, LogLevel: level, Version: version, Reload: reload}
	if *show {
		var mu sync.Mutex
		printer := newEventPrinter(stdout)
		opts.OnEvent = func(ev server.Event) {
			mu.Lock()
			defer mu.Unlock()
			printer.print(ev)
		}
	}
	return daemon.Run(ctx, opts)
}

// newLogger logs at level, which a reload may change (daemon.Options.LogLevel).
func newLogger(conf config.Log, level slog.Leveler, w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: level}
	if conf.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

func cmdTail(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", "[--socket PATH] [--camera NAME]... [--events] [--json]", stderr)
	path := fs.String("socket", server.DefaultPath, "the daemon's socket")
	var cameras multiFlag
	fs.Var(&cameras, "camera", `only this camera ("drive"), region ("drive/gate") or whole frame ("drive/"); repeatable`)
	events := fs.Bool("events", false, "only state changes (events), not every result")
	raw := fs.Bool("json", false, "print the raw JSON lines")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	c, err := server.Dial(*path)
	if err != nil {
		return fmt.Errorf("is clipd running? %w", err)
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	defer c.Close()
	h := c.Hello()
	if !*raw {
		fmt.Fprintf(stdout, "clipd %s, model %s (%s), cameras %s\n", h.Version, h.Model, h.Backend, strings.Join(h.Cameras, ", "))
	}
	if len(cameras) > 0 {
		if err := c.Subscribe(cameras); err != nil {
			return err
		}
	}
	printer := newEventPrinter(stdout)
	if !*raw && !*events {
		// Camera messages come when a state changes; a camera that was
		// already down before this client connected is shown from status.
		if err := printDownCameras(c, cameras, printer); err != nil {
			return err
		}
	}
	for {
		m, err := c.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A line cut short (ErrUnexpectedEOF) is the daemon going
			// away while this client was behind: the same end.
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("the daemon closed the connection")
			}
			return err
		}
		if *events && m.Type != "event" {
			continue
		}
		if *raw {
			stdout.Write(append(m.Raw, '\n'))
			continue
		}
		var ev server.Event
		switch m.Type {
		case "event":
			ev = &server.StateEvent{}
		case "result":
			ev = &server.Result{}
		case "labels":
			ev = &server.LabelsUpdate{}
		case "error":
			ev = &server.ErrorReport{}
		case "camera":
			ev = &server.CameraState{}
		case "dropped":
			fmt.Fprintf(stdout, "(%d results dropped: this terminal did not keep up)\n", m.Count)
			continue
		default:
			continue
		}
		if err := m.Decode(ev); err != nil {
			return err
		}
		printer.print(ev)
	}
}

// printDownCameras prints a camera line for each camera (of those
// subscribed to) that is not running now.
func printDownCameras(c *server.Client, subscribed []string, p *eventPrinter) error {
	reply, err := c.Command(server.Command{Cmd: "status"})
	if err != nil {
		return err
	}
	var st server.Status
	if err := json.Unmarshal(reply.Data, &st); err != nil {
		return fmt.Errorf("reading the status reply: %w", err)
	}
	for _, cam := range st.Cameras {
		if cam.State == server.CameraRunning || cam.State == "" || len(subscribed) > 0 && !slices.Contains(subscribed, cam.Name) {
			continue
		}
		cs := &server.CameraState{Camera: cam.Name, State: cam.State}
		if cam.State == server.CameraRetrying {
			cs.Error = cam.LastError
		}
		p.print(cs)
	}
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// lineWidth is what the readable lines of run --show and tail fit in.
const lineWidth = 80

// eventPrinter writes events as lines a person can follow, each within
// lineWidth columns (long error messages wrap). It remembers each camera's
// last scene, so that a scene classified twice says so rather than
// looking like a line printed twice.
type eventPrinter struct {
	w io.Writer
	// now dates the events that carry no time of their own.
	now       func() time.Time
	lastScene map[string]scene
}

type scene struct {
	truth []byte
	seq   uint64
}

func newEventPrinter(w io.Writer) *eventPrinter {
	return &eventPrinter{w: w, now: time.Now, lastScene: map[string]scene{}}
}

// print writes one event.
func (p *eventPrinter) print(ev server.Event) {
	stamp := func(t time.Time) string { return t.Local().Format("15:04:05.000") }
	switch e := ev.(type) {
	case *server.Result:
		p.result(e, stamp(e.Time))
	case *server.StateEvent:
		head := fmt.Sprintf("%s %s event: ", stamp(e.Time), clip(targetOf(e.Camera, e.Region), 24))
		what := fmt.Sprintf("%s → %s %.2f", orNothing(e.Previous), e.Label, e.Score)
		if e.Snapshot != "" {
			what += "  " + filepath.Base(e.Snapshot)
		}
		fmt.Fprintln(p.w, head+clip(what, max(lineWidth-len([]rune(head)), 10)))
	case *server.LabelsUpdate:
		head := fmt.Sprintf("%s %s labels v%d: ", stamp(p.now()), clip(targetOf(e.Camera, e.Region), 24), e.Version)
		fmt.Fprintln(p.w, head+listWithin(e.Labels, lineWidth-len([]rune(head))))
	case *server.ErrorReport:
		where := e.File
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.File, e.Line)
		}
		p.wrapped(stamp(p.now())+" error", targetOf(e.Camera, e.Region), where, e.Message)
	case *server.CameraState:
		p.wrapped(stamp(p.now())+" camera", e.Camera, e.State, e.Error)
	}
}

func (p *eventPrinter) result(e *server.Result, stamp string) {
	target := targetOf(e.Camera, e.Region)
	head := fmt.Sprintf("%s %s #%d ", stamp, clip(target, 24), e.Seq)
	var tail string
	if t, ok := e.LatencyMS["total"]; ok {
		tail = fmt.Sprintf(" (%.0f ms)", t)
	}
	if e.Truth != nil {
		if b, err := json.Marshal(e.Truth); err == nil {
			// One scene held over several frames is classified again
			// at each interval: say so instead of repeating its truth.
			if last, ok := p.lastScene[target]; ok && bytes.Equal(last.truth, b) {
				tail += fmt.Sprintf(" same scene as #%d", last.seq)
			} else {
				tail += " truth: " + truthSummary(b)
				p.lastScene[target] = scene{truth: b, seq: e.Seq}
			}
		}
	}
	var top []string
	for _, s := range e.Top {
		top = append(top, fmt.Sprintf("%s %.2f", s.Label, s.Score))
	}
	// A long truth gives way to the labels, which are the result.
	const minRoom = 30
	labels := listWithin(top, max(lineWidth-len([]rune(head))-len([]rune(tail)), minRoom))
	tail = clip(tail, max(lineWidth-len([]rune(head+labels)), 0))
	fmt.Fprintln(p.w, head+labels+tail)
}

// wrapped writes "head camera what: message", the message wrapped to
// lineWidth under its start, so that nothing of an error is lost.
func (p *eventPrinter) wrapped(head, camera, what, msg string) {
	line := head
	for _, part := range []string{camera, what} {
		if part != "" {
			line += " " + part
		}
	}
	if msg == "" {
		fmt.Fprintln(p.w, line)
		return
	}
	line += ":"
	indent := "    "
	width := len([]rune(line))
	for _, word := range strings.Fields(msg) {
		n := len([]rune(word))
		if width+1+n > lineWidth && width > len(indent) {
			fmt.Fprintln(p.w, line)
			line, width = indent+word, len(indent)+n
			continue
		}
		line += " " + word
		width += 1 + n
	}
	fmt.Fprintln(p.w, line)
}

// listWithin joins items with ", " within width columns, ending with
// ", …" when some are left out; the first item is cut with … if it alone
// is too long.
func listWithin(items []string, width int) string {
	out := ""
	for i, item := range items {
		sep, more := ", ", ", …"
		if i == 0 {
			sep = ""
		}
		if i == len(items)-1 {
			more = ""
		}
		if len([]rune(out+sep+item+more)) <= width {
			out += sep + item
			continue
		}
		if i == 0 {
			return clip(item, width)
		}
		return out + ", …"
	}
	return out
}

// clip shortens s to at most n columns, marking the cut with ….
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:n])
	}
	return string(r[:n-1]) + "…"
}

// truthSummary shortens the synthetic camera's truth to "red circle, blue
// star" for the readable output.
func truthSummary(raw []byte) string {
	var t struct {
		Shapes []struct{ Kind, Color string }
	}
	if json.Unmarshal(raw, &t) != nil || len(t.Shapes) == 0 {
		return string(raw)
	}
	var parts []string
	for _, s := range t.Shapes {
		parts = append(parts, s.Color+" "+s.Kind)
	}
	return strings.Join(parts, ", ")
}

// targetOf names a camera's whole frame ("drive") or a region ("drive/gate").
func targetOf(camera, region string) string {
	if region == "" {
		return camera
	}
	return camera + "/" + region
}

// orNothing shows a first state's unknown predecessor.
func orNothing(previous string) string {
	if previous == "" {
		return "(start)"
	}
	return previous
}
