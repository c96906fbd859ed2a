package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// sessionCookie carries a browser's proof of the token: an HMAC of a fixed
// text keyed with the token, so the cookie is not the token itself and a
// new token ends every session.
const sessionCookie = "clipd_session"

type authenticator struct {
	// token is empty when none is configured (loopback only).
	token   []byte
	session string
}

func newAuthenticator(cfg Config) (*authenticator, error) {
	a := &authenticator{}
	if cfg.TokenFile == "" {
		return a, nil
	}
	tok, err := readToken(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	a.token = []byte(tok)
	mac := hmac.New(sha256.New, a.token)
	mac.Write([]byte("clipd web session v1"))
	a.session = hex.EncodeToString(mac.Sum(nil))
	return a, nil
}

// equal compares in constant time whatever the lengths: both sides are
// hashed first, so not even the token's length leaks.
func equal(a, b []byte) bool {
	ha, hb := sha256.Sum256(a), sha256.Sum256(b)
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// allowed says whether r may see what is behind the token.
func (a *authenticator) allowed(r *http.Request) bool {
	if len(a.token) == 0 {
		return loopbackHost(r.Host)
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, ok := strings.Cut(h, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && equal([]byte(strings.TrimSpace(cred)), a.token)
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return equal([]byte(c.Value), []byte(a.session))
	}
	return false
}

// loopbackHost says whether a Host header names this machine by a
// loopback address or localhost. A page elsewhere that rebinds its own
// name to 127.0.0.1 sends its name, and is refused.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

func (a *authenticator) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.allowed(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if len(a.token) == 0 {
			// Only a Host that is not loopback gets here.
			writeError(w, r, http.StatusMisdirectedRequest, "this listener answers only requests to a loopback address or localhost")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="clipd"`)
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		writeError(w, r, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <token of http.token_file>)")
	})
}

// loginAllowed checks a login form's token.
func (a *authenticator) loginAllowed(token string) bool {
	return len(a.token) > 0 && equal([]byte(token), a.token)
}

func (a *authenticator) setSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: a.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}
