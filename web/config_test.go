package web

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tokenFile := "/etc/clipd/http.token"
	for _, c := range []Config{
		{Listen: DefaultListen},
		{Listen: "localhost:9464"},
		{Listen: "[::1]:9464"},
		{Listen: "127.0.0.2:0", Events: MaxEvents},
		{Listen: "0.0.0.0:9464", TokenFile: tokenFile},
		{Listen: ":9464", TokenFile: tokenFile},
		{Listen: "clipd.lan:9464", TokenFile: tokenFile},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "http.listen: must not be empty"},
		{Config{Listen: "9464"}, "http.listen: want host:port"},
		{Config{Listen: "127.0.0.1:http"}, "http.listen: port"},
		{Config{Listen: "127.0.0.1:70000"}, "http.listen: port"},
		{Config{Listen: "local host:1"}, "http.listen: host"},
		{Config{Listen: ":9464"}, "http.token_file: required"},
		{Config{Listen: "0.0.0.0:9464"}, "http.token_file: required"},
		{Config{Listen: "192.168.1.10:9464"}, "http.token_file: required"},
		{Config{Listen: "[::]:9464"}, "http.token_file: required"},
		{Config{Listen: "clipd.lan:9464"}, "http.token_file: required"},
		{Config{Listen: DefaultListen, Events: -1}, "http.events"},
		{Config{Listen: DefaultListen, Events: MaxEvents + 1}, "http.events"},
	} {
		err := c.cfg.Validate()
		var ke *KeyError
		if err == nil || !errors.As(err, &ke) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a KeyError saying %q", c.cfg, err, c.want)
		}
	}
	if d := Defaults(); d.Events != DefaultEvents || d.Listen != "" || d.TokenFile != "" {
		t.Errorf("Defaults() = %+v", d)
	}
}

func TestIsLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:1": true, "127.9.9.9:1": true, "[::1]:1": true, "localhost:1": true, "[::ffff:127.0.0.1]:1": true,
		":1": false, "0.0.0.0:1": false, "[::]:1": false, "10.0.0.1:1": false, "localhost.lan:1": false, "garbage": false,
	} {
		if got := IsLoopback(listen); got != want {
			t.Errorf("IsLoopback(%q) = %v", listen, got)
		}
	}
}

// TestTokenFile: the token is read like every file clipd reads, and no
// error repeats what the file holds.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := readToken(write("ok", testToken+"\r\n")); err != nil || tok != testToken {
		t.Errorf("readToken = %q, %v", tok, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"):            "no such file",
		fifo:                                     "not a regular file",
		zero:                                     "not a regular file",
		dir:                                      "not a regular file",
		write("big", strings.Repeat("a", 8<<10)): "too large",
		write("short", "Sup3rSecretPw\n"):        "at least 16",
		write("space", "Sup3rSecret Passw0rd\n"): "only A-Z",
		write("lines", "Sup3rSecretPassw0rd\nsecond\n"): "only A-Z",
		write("empty", ""): "at least 16",
	} {
		_, err := readToken(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "http.token_file: ") {
			t.Errorf("%s: %v, want http.token_file: … %s", filepath.Base(path), err, want)
			continue
		}
		if strings.Contains(err.Error(), "Sup3rSecret") {
			t.Errorf("%s: the error repeats the token: %v", filepath.Base(path), err)
		}
	}
	// New refuses a listener whose token cannot be read, before listening.
	if _, err := New(Config{Listen: "127.0.0.1:0", TokenFile: fifo}, newTestBackend(t, false), Options{}); err == nil {
		t.Error("New with a FIFO as token file succeeded")
	}
}
