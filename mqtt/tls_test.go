package mqtt

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/mqtttest"
	"github.com/clipd/clipd/internal/syncbuf"
)

// testPKI is a CA made by openssl for the test, a server certificate for
// 127.0.0.1 and a client certificate.
type testPKI struct {
	dir                                              string
	ca, serverCert, serverKey, clientCert, clientKey string
}

func makePKI(t *testing.T) testPKI {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not found: install openssl (make deps)")
	}
	dir := t.TempDir()
	k := testPKI{dir: dir}
	path := func(name string) string { return filepath.Join(dir, name) }
	k.ca, k.serverCert, k.serverKey = path("ca.crt"), path("server.crt"), path("server.key")
	k.clientCert, k.clientKey = path("client.crt"), path("client.key")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	run(append(append([]string{"req", "-x509"}, ec...), "-keyout", path("ca.key"), "-out", k.ca, "-days", "2",
		"-subj", "/CN=clipd test CA", "-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign")...)
	sign := func(name, cn, ext string) {
		if err := os.WriteFile(path(name+".ext"), []byte(ext), 0o600); err != nil {
			t.Fatal(err)
		}
		run(append(append([]string{"req"}, ec...), "-keyout", path(name+".key"), "-out", path(name+".csr"), "-subj", "/CN="+cn)...)
		run("x509", "-req", "-in", path(name+".csr"), "-CA", k.ca, "-CAkey", path("ca.key"), "-CAcreateserial",
			"-out", path(name+".crt"), "-days", "2", "-extfile", path(name+".ext"))
	}
	sign("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
	sign("client", "clipd-cert-box", "extendedKeyUsage=clientAuth\n")
	return k
}

// TLS with a test CA, with username/password on one listener and a client
// certificate on another; credentials never reach logs, Status or errors.
func TestTLSAndCredentials(t *testing.T) {
	const user, password = "clipd-user-7a1c", "pa55-Wörd-9f3e"
	pki := makePKI(t)
	passwd := filepath.Join(pki.dir, "passwd")
	if out, err := exec.Command(mqtttest.LookTool(t, "mosquitto_passwd"), "-c", "-b", passwd, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	pwPort, certPort := mqtttest.FreePort(t), mqtttest.FreePort(t)
	b := mqtttest.StartBroker(t,
		fmt.Sprintf("listener %d 127.0.0.1", pwPort),
		"cafile "+pki.ca, "certfile "+pki.serverCert, "keyfile "+pki.serverKey,
		"allow_anonymous false", "password_file "+passwd,
		fmt.Sprintf("listener %d 127.0.0.1", certPort),
		"cafile "+pki.ca, "certfile "+pki.serverCert, "keyfile "+pki.serverKey,
		"require_certificate true", "use_identity_as_username true",
	)
	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/+/availability")
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "mqtt.password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "wrong.password")
	os.WriteFile(badFile, []byte(password+"-wrong\n"), 0o600)

	tlsConfig := func(port int, device string) Config {
		c := testConfig(fmt.Sprintf("mqtts://127.0.0.1:%d", port), device)
		c.CAFile = pki.ca
		return c
	}
	var logs []*syncbuf.Buffer
	var pubs []*Publisher
	start := func(c Config) *Publisher {
		p, l := newTestPublisher(t, c, Options{MaxBackoff: time.Second})
		logs, pubs = append(logs, l), append(pubs, p)
		return p
	}

	good := tlsConfig(pwPort, "tls-pw")
	good.Username, good.PasswordFile = user, pwFile
	start(good)
	sub.WaitPayload("clipd/tls-pw/availability", "online", 10*time.Second)

	withCert := tlsConfig(certPort, "tls-cert")
	withCert.CertFile, withCert.KeyFile = pki.clientCert, pki.clientKey
	start(withCert)
	sub.WaitPayload("clipd/tls-cert/availability", "online", 10*time.Second)

	wrong := tlsConfig(pwPort, "tls-wrong")
	wrong.Username, wrong.PasswordFile = user, badFile
	st := waitStatus(t, start(wrong), 10*time.Second, "wrong password refused", func(st Status) bool { return st.LastError != "" })
	if st.Connected || !strings.Contains(strings.ToLower(st.LastError), "authori") {
		t.Errorf("wrong password: %+v", st)
	}

	noCA := tlsConfig(pwPort, "tls-noca")
	noCA.CAFile = ""
	noCA.Username, noCA.PasswordFile = user, pwFile
	st = waitStatus(t, start(noCA), 10*time.Second, "unknown CA refused", func(st Status) bool { return st.LastError != "" })
	if st.Connected || !strings.Contains(st.LastError, "certificate") {
		t.Errorf("server certificate of an unknown CA: %+v", st)
	}

	noCert := tlsConfig(certPort, "tls-nocert")
	st = waitStatus(t, start(noCert), 10*time.Second, "missing client certificate refused", func(st Status) bool { return st.LastError != "" })
	if st.Connected {
		t.Errorf("no client certificate: %+v", st)
	}

	// Configuration errors name the file, never its content.
	bad := good
	bad.PasswordFile = filepath.Join(dir, "missing")
	if _, err := New(bad, Options{}); err == nil || !strings.HasPrefix(err.Error(), "mqtt.password_file: ") {
		t.Errorf("missing password file: %v", err)
	}

	for _, p := range pubs {
		st := p.Status()
		js, _ := json.Marshal(st)
		t.Logf("status %s", js)
		for _, secret := range []string{password, user} {
			if strings.Contains(string(js), secret) {
				t.Errorf("status %s holds a credential", js)
			}
		}
		p.Close()
	}
	for _, l := range logs {
		for _, secret := range []string{password, user} {
			if strings.Contains(l.String(), secret) {
				t.Errorf("log holds a credential:\n%s", l)
			}
		}
	}
	sub.WaitPayload("clipd/tls-pw/availability", "offline", 5*time.Second)
}

// CheckSecrets accepts what openssl made and refuses a key that is not the
// certificate's, naming cert_file and no key material.
func TestCheckSecretsWithRealCertificates(t *testing.T) {
	k := makePKI(t)
	c := validConfig()
	c.Broker, c.CAFile, c.CertFile, c.KeyFile = "mqtts://127.0.0.1:8883", k.ca, k.clientCert, k.clientKey
	if err := c.CheckSecrets(); err != nil {
		t.Fatalf("CheckSecrets: %v", err)
	}
	c.KeyFile = k.serverKey
	err := c.CheckSecrets()
	key, _ := os.ReadFile(k.serverKey)
	body := strings.Split(strings.TrimSpace(string(key)), "\n")[1]
	if err == nil || !strings.HasPrefix(err.Error(), "mqtt.cert_file: ") || strings.Contains(err.Error(), body) {
		t.Errorf("mismatched key: %v", err)
	}
	if _, err := New(c, Options{}); err == nil || err.Error() != c.CheckSecrets().Error() {
		t.Errorf("New: %v, want CheckSecrets' error", err)
	}
}
