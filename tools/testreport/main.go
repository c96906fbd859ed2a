// Command testreport reads `go test -json` on its standard input and
// prints what plain `go test` would: a line a package, and the output of
// every failed test. With -fail-on-skip it also fails when a test was
// skipped: tests skip when a tool or data set is missing, and in CI, which
// installs everything, such a skip means an install step is missing rather
// than a test that passed. Skips whose reason starts with "environment:"
// (what no install can change, such as a read-only /dev in a container)
// are listed but never fail the run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	failOnSkip := flag.Bool("fail-on-skip", false, "exit 1 if any test was skipped")
	flag.Parse()
	r, err := report(os.Stdin, os.Stdout, *failOnSkip)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if !r.ok() {
		os.Exit(1)
	}
}

type result struct {
	failed        int
	skipped       []string // for want of a tool or data
	environmental []string // for what no install can change
	failOnSkip    bool
}

func (r result) ok() bool { return r.failed == 0 && (!r.failOnSkip || len(r.skipped) == 0) }

func report(in io.Reader, out io.Writer, failOnSkip bool) (result, error) {
	r := result{failOnSkip: failOnSkip}
	// Output is held per test until it is known whether the test failed.
	held := map[string][]string{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			// Not an event (a build error printed as text): pass it on.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		key := ev.Package + " " + ev.Test
		switch ev.Action {
		case "output", "build-output":
			if ev.Test == "" {
				// Package-level output: the ok/FAIL line, panics, build errors.
				if ev.Action == "build-output" || !strings.HasPrefix(ev.Output, "=== ") && !strings.HasPrefix(ev.Output, "--- PASS") && !strings.HasPrefix(ev.Output, "PASS") {
					fmt.Fprint(out, ev.Output)
				}
				continue
			}
			held[key] = append(held[key], ev.Output)
		case "fail":
			r.failed++
			fmt.Fprint(out, strings.Join(held[key], ""))
			delete(held, key)
		case "skip":
			if ev.Test != "" {
				reason := skipReason(held[key])
				entry := ev.Package + "." + ev.Test + ": " + reason
				if isEnvironmental(reason) {
					r.environmental = append(r.environmental, entry)
				} else {
					r.skipped = append(r.skipped, entry)
				}
			}
			delete(held, key)
		case "pass":
			delete(held, key)
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if len(r.environmental) > 0 {
		fmt.Fprintf(out, "%d tests skipped for this environment:\n", len(r.environmental))
		for _, s := range r.environmental {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	if len(r.skipped) > 0 {
		verdict := "skipped"
		if failOnSkip {
			verdict = "SKIPPED, which fails this run (-fail-on-skip): a tool or data set the tests need was not installed"
		}
		fmt.Fprintf(out, "%d tests %s:\n", len(r.skipped), verdict)
		for _, s := range r.skipped {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	return r, nil
}

// skipReason is the message the test gave to Skip: the output line after
// its "--- SKIP" line.
func skipReason(output []string) string {
	for i, line := range output {
		if strings.Contains(line, "--- SKIP") && i+1 < len(output) {
			return strings.TrimSpace(output[i+1])
		}
	}
	for _, line := range output {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
			return t
		}
	}
	return "(no reason given)"
}

// isEnvironmental says whether a skip reason ("file_test.go:12: reason")
// is marked as one no install can change.
func isEnvironmental(reason string) bool {
	if _, msg, found := strings.Cut(reason, ": "); found {
		reason = msg
	}
	return strings.HasPrefix(reason, "environment:")
}
