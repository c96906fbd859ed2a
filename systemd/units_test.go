package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The unit files are checked by systemd's own parser; the installed binary
// path does not exist at test time, so it is swapped for /bin/true.
func TestUnitFilesVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	for _, name := range []string{"clipd.service", "clipd.socket"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/usr/local/bin/clipd ", "/bin/true ")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", filepath.Join(dir, "clipd.socket"), filepath.Join(dir, "clipd.service"))
	out, err := cmd.CombinedOutput()
	// verify exits 0 on unknown keys but prints them: any output is a finding.
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestServiceDirectives(t *testing.T) {
	data, err := os.ReadFile("clipd.service")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure",
		"RuntimeDirectory=clipd", "StateDirectory=clipd", "CacheDirectory=clipd",
		"User=clipd", "SupplementaryGroups=video", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "NoNewPrivileges=yes", "DevicePolicy=closed",
		"DeviceAllow=char-video4linux rw", "DeviceAllow=char-nvidia* rw", "DeviceAllow=/dev/nvmap rw",
		"ExecReload=/bin/kill -HUP $MAINPID",
	} {
		if !lines[want] {
			t.Errorf("clipd.service lacks %q", want)
		}
	}
}
