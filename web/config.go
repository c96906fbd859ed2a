package web

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/clipd/clipd/internal/safefile"
)

// DefaultListen is the address docs and the example config suggest: the
// Prometheus exporter port range, loopback only.
const DefaultListen = "127.0.0.1:9464"

// Config is the [http] table. Start from Defaults, set what the file gives
// and call Validate (New does).
type Config struct {
	// Listen is host:port. Empty means the listener is off: the daemon
	// does not create a Server. A host that is not a loopback address
	// ("", 0.0.0.0, a LAN address, a name other than localhost) needs
	// TokenFile.
	Listen string
	// TokenFile holds the bearer token that every route but /metrics and
	// /healthz requires (a trailing newline is not part of it). Required
	// beyond loopback; on loopback, setting it requires the token there
	// too.
	TokenFile string
	// Events is how many recent events the page shows (default 20, at
	// most MaxEvents). Not a key of the list; the daemon may
	// leave it.
	Events int
}

// Defaults and bounds of Config.
const (
	DefaultEvents = 20
	MaxEvents     = 200
	// MinTokenBytes keeps a token out of reach of guessing over the
	// network: 16 random base64 characters are 96 bits.
	MinTokenBytes = 16
	maxTokenBytes = 4 << 10
)

// Defaults returns the configuration of an [http] table that sets nothing.
func Defaults() Config {
	return Config{Events: DefaultEvents}
}

// KeyError is an invalid value of one key; Key is its name in the [http]
// table, so that a config parser can add the file and line.
type KeyError struct {
	Key string
	Msg string
}

func (e *KeyError) Error() string { return "http." + e.Key + ": " + e.Msg }

func keyErr(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks every key and returns the first problem as a *KeyError.
// It reads no file; New reads the token.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return keyErr("listen", "must not be empty (leave [http] out to turn the listener off)")
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return keyErr("listen", "want host:port, e.g. %q, got %.80q", DefaultListen, c.Listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return keyErr("listen", "port %.20q is not a number from 0 to 65535", port)
	}
	if strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return keyErr("listen", "host %.80q contains a space or control character", host)
	}
	if !IsLoopback(c.Listen) && c.TokenFile == "" {
		return keyErr("token_file", "required because listen %.80q is not a loopback address: everything beyond /metrics and /healthz needs a bearer token", c.Listen)
	}
	if c.Events < 0 || c.Events > MaxEvents {
		return keyErr("events", "must be between 1 and %d (0 or absent: %d), got %d", MaxEvents, DefaultEvents, c.Events)
	}
	return nil
}

// IsLoopback says whether a host:port listens on loopback only: a
// loopback IP (127.0.0.0/8, ::1) or the name localhost. Any other name
// counts as reachable from the network, whatever it resolves to today.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// CheckToken reads and checks the token file as New will, so that
// `clipd check` refuses what the daemon would; it keeps nothing.
func (c Config) CheckToken() error {
	if c.TokenFile == "" {
		return nil
	}
	_, err := readToken(c.TokenFile)
	return err
}

// readToken reads the bearer token: a bounded, regular-file read; one
// line of RFC 6750's token characters, at least MinTokenBytes long.
// Errors never repeat the file's content.
func readToken(path string) (string, error) {
	data, err := safefile.ReadFile(path, maxTokenBytes)
	if err != nil {
		return "", keyErr("token_file", "%v", err)
	}
	tok := strings.TrimRight(string(data), "\r\n")
	if len(tok) < MinTokenBytes {
		return "", keyErr("token_file", "%s: the token must be at least %d characters (e.g. openssl rand -base64 24)", path, MinTokenBytes)
	}
	for i := 0; i < len(tok); i++ {
		if !tokenChar(tok[i]) {
			return "", keyErr("token_file", "%s: the token may hold only A-Z a-z 0-9 - . _ ~ + / = on one line", path)
		}
	}
	return tok, nil
}

func tokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/=", c) >= 0
}
