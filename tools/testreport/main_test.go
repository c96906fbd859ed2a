package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goTestJSON runs `go test -json` on a throwaway module holding one test
// file, so that the events are go's own, not hand-written ones.
func goTestJSON(t *testing.T, testFile string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/m\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m_test.go"), []byte(testFile), 0o644)
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, _ := cmd.CombinedOutput() // failing tests make go test exit 1
	return string(out)
}

func TestReport(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("go is not on PATH")
	}
	events := goTestJSON(t, `package m

import "testing"

func TestPasses(t *testing.T) { t.Log("quiet when passing") }
func TestFails(t *testing.T)  { t.Error("the reason it failed") }
func TestSkips(t *testing.T)  { t.Skip("ffmpeg is not installed") }
`)
	for _, strict := range []bool{false, true} {
		var out strings.Builder
		r, err := report(strings.NewReader(events), &out, strict)
		if err != nil {
			t.Fatal(err)
		}
		got := out.String()
		for _, want := range []string{"--- FAIL: TestFails", "the reason it failed", "FAIL\texample.com/m", "example.com/m.TestSkips: m_test.go:7: ffmpeg is not installed"} {
			if !strings.Contains(got, want) {
				t.Errorf("strict=%v: report lacks %q:\n%s", strict, want, got)
			}
		}
		if strings.Contains(got, "quiet when passing") {
			t.Errorf("a passing test's output was printed:\n%s", got)
		}
		if r.ok() || r.failed == 0 || len(r.skipped) != 1 {
			t.Errorf("strict=%v: result %+v", strict, r)
		}
	}

	skipOnly := goTestJSON(t, "package m\n\nimport \"testing\"\n\nfunc TestSkips(t *testing.T) { t.Skip(\"no data\") }\n")
	for strict, wantOK := range map[bool]bool{false: true, true: false} {
		var out strings.Builder
		r, err := report(strings.NewReader(skipOnly), &out, strict)
		if err != nil || r.ok() != wantOK {
			t.Errorf("only a skip, strict=%v: ok=%v (%v), want %v\n%s", strict, r.ok(), err, wantOK, out.String())
		}
	}
	envSkip := goTestJSON(t, "package m\n\nimport \"testing\"\n\nfunc TestSkips(t *testing.T) { t.Skip(\"environment: /dev is read-only\") }\n")
	var envOut strings.Builder
	if r, err := report(strings.NewReader(envSkip), &envOut, true); err != nil || !r.ok() || !strings.Contains(envOut.String(), "/dev is read-only") {
		t.Errorf("an environmental skip must be listed but pass, even strict: ok=%v (%v)\n%s", r.ok(), err, envOut.String())
	}

	var out strings.Builder
	r, _ := report(strings.NewReader(goTestJSON(t, "package m\n\nfunc broken( {\n")), &out, false)
	if r.ok() || !strings.Contains(out.String(), "m_test.go:3") {
		t.Errorf("a build failure must fail and show the compiler's message: ok=%v\n%s", r.ok(), out.String())
	}
}
