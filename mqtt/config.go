package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode"
)

// Config is the [mqtt] table. The zero value is not usable; start from
// Defaults, set what the file gives and call Validate (New does).
type Config struct {
	// Broker is mqtt://host[:port] (default port 1883) or
	// mqtts://host[:port] (8883). Empty means MQTT is off.
	Broker string
	// Device is this box's topic segment and Home Assistant device id,
	// [A-Za-z0-9_-], at most 64 bytes. Default: the sanitized host name.
	Device string
	// TopicPrefix is the first part of every topic, default "clipd".
	TopicPrefix string
	// ClientID is the MQTT client identifier; "" means "clipd-<device>".
	ClientID string
	// Username and PasswordFile authenticate to the broker; the file holds
	// the password (a trailing newline is not part of it).
	Username     string
	PasswordFile string
	// CAFile verifies the broker's certificate (default: the system's
	// roots); CertFile and KeyFile are a client certificate. mqtts only.
	CAFile   string
	CertFile string
	KeyFile  string
	// QoS is 0 or 1 for everything published, default 1.
	QoS int
	// PublishResults publishes every classified frame, default false.
	PublishResults bool
	// HomeAssistant publishes Home Assistant discovery, default true.
	HomeAssistant bool
	// DiscoveryPrefix is Home Assistant's discovery prefix, default
	// "homeassistant".
	DiscoveryPrefix string
	// Queue is how many events and results are kept while the broker is
	// unreachable (oldest dropped first), default 1000.
	Queue int
	// QueueBytes bounds the payload bytes those messages hold, default
	// 64 MiB. Not a key of the list; the daemon may leave it.
	QueueBytes int64
}

// Defaults for the [mqtt] keys.
const (
	DefaultTopicPrefix     = "clipd"
	DefaultQoS             = 1
	DefaultDiscoveryPrefix = "homeassistant"
	DefaultQueue           = 1000
	DefaultQueueBytes      = 64 << 20
)

// Limits on values, so that a typo cannot ask for absurd memory.
const (
	maxQueue       = 1 << 20
	maxNameBytes   = 64
	maxTopicBytes  = 256
	maxClientID    = 128
	maxUsername    = 1024
	maxSecretBytes = 4 << 10
	maxPEMBytes    = 1 << 20
)

// Defaults returns the configuration of an [mqtt] table that sets nothing
// but broker.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		Device:          SanitizeDevice(host),
		TopicPrefix:     DefaultTopicPrefix,
		QoS:             DefaultQoS,
		HomeAssistant:   true,
		DiscoveryPrefix: DefaultDiscoveryPrefix,
		Queue:           DefaultQueue,
		QueueBytes:      DefaultQueueBytes,
	}
}

// SanitizeDevice turns a host name into a device name: the part before the
// first dot, lower case, every run of other characters than [a-z0-9_-] made
// one "-", at most 64 bytes; "clipd" if nothing is left.
func SanitizeDevice(host string) string {
	host, _, _ = strings.Cut(host, ".")
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(host) {
		if r < unicode.MaxASCII && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-_")
	if len(s) > maxNameBytes {
		s = strings.Trim(s[:maxNameBytes], "-_")
	}
	if s == "" {
		return "clipd"
	}
	return s
}

// KeyError is an invalid value of one key. Key is the key's name in the
// [mqtt] table, so that a config parser can add the file and line.
type KeyError struct {
	Key string
	Msg string
}

func (e *KeyError) Error() string { return "mqtt." + e.Key + ": " + e.Msg }

func keyErr(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate checks every key and returns the first problem as a *KeyError.
// It reads no files; New does.
func (c *Config) Validate() error {
	if _, err := c.brokerURL(); err != nil {
		return err
	}
	switch {
	case c.Device == "":
		return keyErr("device", "must not be empty")
	case len(c.Device) > maxNameBytes || !nameRE.MatchString(c.Device):
		return keyErr("device", "must be at most %d of A-Z a-z 0-9 _ -, got %q", maxNameBytes, c.Device)
	}
	if err := checkTopicPrefix("topic_prefix", c.TopicPrefix); err != nil {
		return err
	}
	if err := checkTopicPrefix("discovery_prefix", c.DiscoveryPrefix); err != nil {
		return err
	}
	if len(c.ClientID) > maxClientID || strings.IndexFunc(c.ClientID, unicode.IsControl) >= 0 {
		return keyErr("client_id", "must be at most %d printable characters", maxClientID)
	}
	if len(c.Username) > maxUsername || strings.IndexFunc(c.Username, unicode.IsControl) >= 0 {
		// The value itself is never repeated: it may be half a secret.
		return keyErr("username", "must be at most %d printable characters", maxUsername)
	}
	if c.PasswordFile != "" && c.Username == "" {
		return keyErr("password_file", "needs a username (MQTT sends a password only with one)")
	}
	tlsBroker := strings.HasPrefix(strings.ToLower(c.Broker), "mqtts://")
	for _, f := range []struct{ key, val string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.val != "" && !tlsBroker {
			return keyErr(f.key, "needs an mqtts:// broker")
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return keyErr("cert_file", "cert_file and key_file go together")
	}
	if c.QoS != 0 && c.QoS != 1 {
		return keyErr("qos", "must be 0 or 1, got %d", c.QoS)
	}
	if c.Queue < 1 || c.Queue > maxQueue {
		return keyErr("queue", "must be between 1 and %d, got %d", maxQueue, c.Queue)
	}
	if c.QueueBytes < 1<<10 || c.QueueBytes > 1<<32 {
		return keyErr("queue_bytes", "must be between 1 KiB and 4 GiB, got %d", c.QueueBytes)
	}
	return nil
}

// brokerURL checks Broker and returns it in the form paho dials, with the
// default port filled in.
func (c *Config) brokerURL() (string, error) {
	if c.Broker == "" {
		return "", keyErr("broker", "must not be empty (leave [mqtt] out to turn MQTT off)")
	}
	u, err := url.Parse(c.Broker)
	if err != nil {
		// url's error repeats the whole URL, which may hold credentials.
		return "", keyErr("broker", "not a URL (want mqtt://host:port or mqtts://host:port)")
	}
	if u.User != nil {
		return "", keyErr("broker", "must not hold credentials; use username and password_file")
	}
	var scheme, port string
	switch strings.ToLower(u.Scheme) {
	case "mqtt":
		scheme, port = "tcp", "1883"
	case "mqtts":
		scheme, port = "ssl", "8883"
	default:
		return "", keyErr("broker", "scheme must be mqtt or mqtts, got %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", keyErr("broker", "has no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", keyErr("broker", "must be scheme://host[:port] without a path or query")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", keyErr("broker", "port must be between 1 and 65535, got %q", p)
		}
		port = p
	}
	return scheme + "://" + net.JoinHostPort(u.Hostname(), port), nil
}

func checkTopicPrefix(key, s string) error {
	switch {
	case s == "":
		return keyErr(key, "must not be empty")
	case len(s) > maxTopicBytes:
		return keyErr(key, "must be at most %d bytes", maxTopicBytes)
	case strings.ContainsAny(s, "+#\x00"):
		return keyErr(key, "must not contain +, # or NUL, got %q", s)
	case strings.HasPrefix(s, "$"):
		return keyErr(key, "must not start with $ (reserved by brokers), got %q", s)
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//"):
		return keyErr(key, "must not have empty topic levels, got %q", s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return keyErr(key, "must not contain control characters")
	}
	return nil
}

// secrets are what New reads from the configured files.
type secrets struct {
	password string
	tls      *tls.Config
}

// CheckSecrets reads and checks password_file, ca_file, cert_file and
// key_file as New does (New reads them with the same code), so that
// `clipd check` can report a missing, oversized, empty or unparsable file
// before the daemon starts. It connects to nothing and keeps nothing. Each
// error is a *KeyError naming the key; none holds a secret. Call it on a
// Config that passed Validate.
func (c Config) CheckSecrets() error {
	_, err := c.readSecrets()
	return err
}

// readSecrets reads what the files hold; see CheckSecrets.
func (c *Config) readSecrets() (secrets, error) {
	var s secrets
	if c.PasswordFile != "" {
		data, err := readBounded(c.PasswordFile, maxSecretBytes)
		if err != nil {
			return s, keyErr("password_file", "%v", err)
		}
		s.password = strings.TrimRight(string(data), "\r\n")
		if s.password == "" {
			return s, keyErr("password_file", "%s: empty", c.PasswordFile)
		}
	}
	if !strings.HasPrefix(strings.ToLower(c.Broker), "mqtts://") {
		return s, nil
	}
	u, _ := url.Parse(c.Broker)
	s.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
	if c.CAFile != "" {
		pem, err := readBounded(c.CAFile, maxPEMBytes)
		if err != nil {
			return s, keyErr("ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return s, keyErr("ca_file", "%s: no PEM certificate", c.CAFile)
		}
		s.tls.RootCAs = pool
	}
	if c.CertFile != "" {
		certPEM, err := readBounded(c.CertFile, maxPEMBytes)
		if err != nil {
			return s, keyErr("cert_file", "%v", err)
		}
		keyPEM, err := readBounded(c.KeyFile, maxPEMBytes)
		if err != nil {
			return s, keyErr("key_file", "%v", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// crypto/tls's messages name the problem, never key material.
			return s, keyErr("cert_file", "%s with %s: %v", c.CertFile, c.KeyFile, err)
		}
		s.tls.Certificates = []tls.Certificate{cert}
	}
	return s, nil
}

// readBounded reads a regular file of at most limit bytes. O_NONBLOCK keeps
// a FIFO put in the file's place from blocking the open.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

var errClosed = errors.New("mqtt: publisher closed")
