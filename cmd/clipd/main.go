// Command clipd is the CLIP camera classifier: a daemon (clipd run) and the
// one-shot tools around it (tokenize, preprocess, embed, classify, tail,
// check, verify).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the daemon: cameras → CLIP → unix socket", cmdRun},
		{"check", "validate a config file without starting", cmdCheck},
		{"tail", "print the results a running daemon publishes", cmdTail},
		{"status", "print a running daemon's status (cameras, rates, latencies, GPU)", cmdStatus},
		{"search", "search a running daemon's camera memory by text, image or label", cmdSearch},
		{"classify", "classify image files against a labels file", cmdClassify},
		{"embed", "print L2-normalized embeddings of images and texts", cmdEmbed},
		{"tokenize", "turn JSON strings (one per line) into 77 token ids", cmdTokenize},
		{"preprocess", "write the model input tensor of an image", cmdPreprocess},
		{"verify", "compare a backend against the FP32 ONNX Runtime path", cmdVerify},
		{"version", "print the version", func(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
			fmt.Println("clipd", version)
			return nil
		}},
	}
}

// errUsage marks errors already explained by a usage message; errHelp a
// usage message that was asked for.
var (
	errUsage = errors.New("usage")
	errHelp  = errors.New("help")
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, errHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "clipd:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "clipd: unknown command %q\n\n", args[0])
	usage(stderr)
	return errUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: clipd COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n'clipd COMMAND -h' shows a command's flags.")
}

// parseFlags parses flags that may come before, between or after positional
// arguments (`clipd preprocess --size 224 IMAGE --out FILE`), which the flag
// package alone does not allow.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			// The flag package has already printed the problem and the
			// usage; -h is a request, not a mistake.
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseNoArgs parses a command that takes flags only; each of required
// must end up non-empty. Mistakes print the usage.
func parseNoArgs(fs *flag.FlagSet, args []string, required ...*string) error {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	missing := len(pos) > 0
	for _, r := range required {
		missing = missing || *r == ""
	}
	if missing {
		fs.Usage()
		return errUsage
	}
	return nil
}

// newFlagSet makes a flag set whose errors and help go to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: clipd %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}
