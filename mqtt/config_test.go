package mqtt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func validConfig() Config {
	c := Defaults()
	c.Broker = "mqtt://broker.lan:1883"
	c.Device = "box"
	return c
}

func TestDefaults(t *testing.T) {
	c := Defaults()
	host, _ := os.Hostname()
	want := Config{Device: SanitizeDevice(host), TopicPrefix: "clipd", QoS: 1, HomeAssistant: true,
		DiscoveryPrefix: "homeassistant", Queue: 1000, QueueBytes: 64 << 20}
	if c != want {
		t.Errorf("Defaults() = %+v, want %+v", c, want)
	}
	if c.PublishResults || c.ClientID != "" {
		t.Errorf("Defaults: publish_results %v, client_id %q", c.PublishResults, c.ClientID)
	}
}

func TestSanitizeDevice(t *testing.T) {
	for in, want := range map[string]string{
		"jetson-01":                    "jetson-01",
		"Jetson-01.local":              "jetson-01",
		"edge box #3":                  "edge-box-3",
		"__x__":                        "x",
		"":                             "clipd",
		"...":                          "clipd",
		"überbox":                      "berbox",
		strings.Repeat("a", 80):        strings.Repeat("a", 64),
		strings.Repeat("a", 63) + "-b": strings.Repeat("a", 63),
	} {
		got := SanitizeDevice(in)
		if got != want {
			t.Errorf("SanitizeDevice(%q) = %q, want %q", in, got, want)
		}
		c := validConfig()
		c.Device = got
		if err := c.Validate(); err != nil {
			t.Errorf("sanitized %q does not validate: %v", got, err)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (func() *Config { c := validConfig(); return &c })().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no broker", func(c *Config) { c.Broker = "" }, "mqtt.broker: must not be empty"},
		{"bad scheme", func(c *Config) { c.Broker = "tcp://h:1883" }, `mqtt.broker: scheme must be mqtt or mqtts, got "tcp"`},
		{"no host", func(c *Config) { c.Broker = "mqtt://:1883" }, "mqtt.broker: has no host"},
		{"path", func(c *Config) { c.Broker = "mqtt://h:1883/x" }, "mqtt.broker: must be scheme://host[:port]"},
		{"bad port", func(c *Config) { c.Broker = "mqtt://h:70000" }, "mqtt.broker: port must be between 1 and 65535"},
		{"empty device", func(c *Config) { c.Device = "" }, "mqtt.device: must not be empty"},
		{"bad device", func(c *Config) { c.Device = "a/b" }, `mqtt.device: must be at most 64 of A-Z a-z 0-9 _ -, got "a/b"`},
		{"wildcard prefix", func(c *Config) { c.TopicPrefix = "a/#" }, "mqtt.topic_prefix: must not contain +, # or NUL"},
		{"empty level", func(c *Config) { c.TopicPrefix = "a//b" }, "mqtt.topic_prefix: must not have empty topic levels"},
		{"leading slash", func(c *Config) { c.DiscoveryPrefix = "/ha" }, "mqtt.discovery_prefix: must not have empty topic levels"},
		{"dollar", func(c *Config) { c.TopicPrefix = "$SYS" }, "mqtt.topic_prefix: must not start with $"},
		{"empty discovery prefix", func(c *Config) { c.DiscoveryPrefix = "" }, "mqtt.discovery_prefix: must not be empty"},
		{"client id", func(c *Config) { c.ClientID = "a\nb" }, "mqtt.client_id: must be at most 128 printable characters"},
		{"password without user", func(c *Config) { c.PasswordFile = "/p" }, "mqtt.password_file: needs a username"},
		{"ca on plain", func(c *Config) { c.CAFile = "/ca" }, "mqtt.ca_file: needs an mqtts:// broker"},
		{"cert without key", func(c *Config) { c.Broker = "mqtts://h"; c.CertFile = "/c" }, "mqtt.cert_file: cert_file and key_file go together"},
		{"key without cert", func(c *Config) { c.Broker = "mqtts://h"; c.KeyFile = "/k" }, "mqtt.cert_file: cert_file and key_file go together"},
		{"qos", func(c *Config) { c.QoS = 2 }, "mqtt.qos: must be 0 or 1, got 2"},
		{"queue", func(c *Config) { c.Queue = 0 }, "mqtt.queue: must be between 1 and 1048576, got 0"},
		{"queue bytes", func(c *Config) { c.QueueBytes = 10 }, "mqtt.queue_bytes: must be between 1 KiB and 4 GiB, got 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.edit(&c)
			err := c.Validate()
			var ke *KeyError
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.As(err, &ke) {
				t.Fatalf("Validate() = %v, want a *KeyError starting %q", err, tc.want)
			}
			if !strings.HasPrefix(tc.want, "mqtt."+ke.Key+":") {
				t.Errorf("Key = %q for %q", ke.Key, err)
			}
		})
	}
	for _, ok := range []string{"mqtt://10.0.0.2", "mqtts://broker.lan", "MQTT://h:1", "mqtt://[::1]:1883", "mqtt://h:1883/"} {
		c := validConfig()
		c.Broker = ok
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	c := validConfig()
	c.Broker = "mqtts://h"
	if u, _ := c.brokerURL(); u != "ssl://h:8883" {
		t.Errorf("mqtts default port: %s", u)
	}
	c.Broker = "mqtt://[::1]"
	if u, _ := c.brokerURL(); u != "tcp://[::1]:1883" {
		t.Errorf("mqtt default port: %s", u)
	}
}

// Neither the password nor the username is ever part of an error, even
// when the broker URL carries them against the rules.
func TestValidateNeverEchoesCredentials(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	for _, edit := range []func(*Config){
		func(c *Config) { c.Broker = "mqtt://user:" + secret + "@h:1883" },
		func(c *Config) { c.Broker = "mqtt://user:" + secret + "@h:bad" },
		func(c *Config) { c.Broker = "mqtt://u:" + secret + "@h:1883\x7f" },
		func(c *Config) { c.Username = secret + "\n" },
	} {
		c := validConfig()
		edit(&c)
		err := c.Validate()
		if err == nil {
			t.Fatalf("%+v validated", c)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}

// The files' problems, as New and `clipd check` (CheckSecrets) see them.
func TestReadSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := validConfig()
	c.Username = "u"
	c.PasswordFile = write("pw", "p@ss word\n")
	s, err := c.readSecrets()
	if err != nil || s.password != "p@ss word" || s.tls != nil {
		t.Errorf("readSecrets = %+v, %v", s, err)
	}

	c.PasswordFile = write("empty", "\n")
	if err := c.CheckSecrets(); err == nil || !strings.HasPrefix(err.Error(), "mqtt.password_file: ") || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty password: %v", err)
	}
	c.PasswordFile = write("big", strings.Repeat("x", maxSecretBytes+1))
	if err := c.CheckSecrets(); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big password file: %v", err)
	}
	c.PasswordFile = dir
	if err := c.CheckSecrets(); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	c.PasswordFile = fifo // would block a plain open without a writer
	if err := c.CheckSecrets(); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}
	c.PasswordFile = filepath.Join(dir, "missing")
	if err := c.CheckSecrets(); err == nil || !strings.HasPrefix(err.Error(), "mqtt.password_file: ") {
		t.Errorf("missing: %v", err)
	}

	c = validConfig()
	c.Broker = "mqtts://broker.lan"
	c.CAFile = write("ca.pem", "not a certificate")
	if err := c.CheckSecrets(); err == nil || !strings.HasPrefix(err.Error(), "mqtt.ca_file: ") {
		t.Errorf("bad CA: %v", err)
	}
	c.CAFile = ""
	c.CertFile, c.KeyFile = write("c.pem", "x"), write("k.pem", "y")
	if err := c.CheckSecrets(); err == nil || !strings.HasPrefix(err.Error(), "mqtt.cert_file: ") {
		t.Errorf("bad client cert: %v", err)
	}
	c.CertFile, c.KeyFile = "", ""
	s, err = c.readSecrets()
	if err != nil || s.tls == nil || s.tls.ServerName != "broker.lan" || s.tls.RootCAs != nil {
		t.Errorf("mqtts without files: %+v, %v", s.tls, err)
	}
}
