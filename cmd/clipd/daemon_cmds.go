package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
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
	log := newLogger(conf.Log, stderr)
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
	opts := daemon.Options{ConfigPath: *path, Config: conf, Log: log, Version: version, Reload: reload}
	if *show {
		var mu sync.Mutex
		opts.OnEvent = func(ev server.Event) {
			mu.Lock()
			defer mu.Unlock()
			printEvent(stdout, ev)
		}
	}
	return daemon.Run(ctx, opts)
}

func newLogger(conf config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(conf.Level)); err != nil {
		level = slog.LevelInfo
	}
	ho := &slog.HandlerOptions{Level: level}
	if conf.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

func cmdTail(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", "[--socket PATH] [--camera NAME]... [--json]", stderr)
	path := fs.String("socket", server.DefaultPath, "the daemon's socket")
	var cameras multiFlag
	fs.Var(&cameras, "camera", "only this camera (repeatable)")
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
		if *raw {
			stdout.Write(append(m.Raw, '\n'))
			continue
		}
		var ev server.Event
		switch m.Type {
		case "result":
			ev = &server.Result{}
		case "labels":
			ev = &server.LabelsUpdate{}
		case "error":
			ev = &server.ErrorReport{}
		case "dropped":
			fmt.Fprintf(stdout, "(%d results dropped: this terminal did not keep up)\n", m.Count)
			continue
		default:
			continue
		}
		if err := m.Decode(ev); err != nil {
			return err
		}
		printEvent(stdout, ev)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// printEvent writes one event as a line a person can follow.
func printEvent(w io.Writer, ev server.Event) {
	switch e := ev.(type) {
	case *server.Result:
		var top []string
		for _, s := range e.Top {
			top = append(top, fmt.Sprintf("%s %.2f", s.Label, s.Score))
		}
		line := fmt.Sprintf("%s %-8s #%-6d %s", e.Time.Local().Format("15:04:05.000"), e.Camera, e.Seq, strings.Join(top, ", "))
		if t, ok := e.LatencyMS["total"]; ok {
			line += fmt.Sprintf("  (%.0f ms)", t)
		}
		if e.Truth != nil {
			if b, err := json.Marshal(e.Truth); err == nil {
				line += "  truth: " + truthSummary(b)
			}
		}
		fmt.Fprintln(w, line)
	case *server.LabelsUpdate:
		fmt.Fprintf(w, "%s labels v%d for %s: %s\n", time.Now().Format("15:04:05.000"), e.Version, e.Camera, strings.Join(e.Labels, ", "))
	case *server.ErrorReport:
		where := e.File
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.File, e.Line)
		}
		fmt.Fprintf(w, "%s error %s %s %s\n", time.Now().Format("15:04:05.000"), e.Camera, where, e.Message)
	}
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
