package demo

import (
	"bytes"
	"encoding/json"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// provider is the embedded identity provider: mockoidc behind a front that
// serialises its handlers (its session store is a plain map), chooses the
// demo user, validates redirect URIs and fixes the token response.
type provider struct {
	m            *mockoidc.MockOIDC
	logger       *slog.Logger
	redirectURIs []string
	choose       bool

	mu      sync.Mutex // serialises every mockoidc handler and guards pending
	pending []string   // users queued by UseUser, first in first out
}

// demoUser is a mockoidc.User with the name claim too, so a sign-in page
// can greet the person.
type demoUser struct{ p person }

var _ mockoidc.User = demoUser{}

// ID is the subject claim: the demo user name.
func (u demoUser) ID() string { return u.p.username }

type demoUserinfo struct {
	Subject           string `json:"sub"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     bool   `json:"email_verified,omitempty"`
}

func (u demoUser) info(scopes []string) demoUserinfo {
	out := demoUserinfo{Subject: u.p.username}
	if slices.Contains(scopes, "profile") {
		out.Name, out.PreferredUsername = u.p.displayName, u.p.username
	}
	if slices.Contains(scopes, "email") {
		out.Email, out.EmailVerified = u.p.email(), true
	}
	return out
}

// Userinfo answers the userinfo endpoint for the granted scopes.
func (u demoUser) Userinfo(scopes []string) ([]byte, error) { return json.Marshal(u.info(scopes)) }

// demoClaims are the ID token claims; the embedded registered claims carry sub.
type demoClaims struct {
	*mockoidc.IDTokenClaims
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     bool   `json:"email_verified,omitempty"`
}

// Claims builds the ID token claims for the granted scopes.
func (u demoUser) Claims(scopes []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	info := u.info(scopes)
	return &demoClaims{base, info.Name, info.PreferredUsername, info.Email, info.EmailVerified}, nil
}

// front is the middleware in front of every mockoidc endpoint.
func (p *provider) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch r.URL.Path {
		case mockoidc.AuthorizationEndpoint:
			p.authorize(next, w, r)
		case mockoidc.TokenEndpoint:
			p.token(next, w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// authorize checks the redirect URI, picks the user and lets mockoidc
// issue the code. Called with p.mu held.
func (p *provider) authorize(next http.Handler, w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed authorization request", http.StatusBadRequest)
		return
	}
	// RFC 6749 §4.1.2.1: never redirect to an unregistered URI; tell the user instead.
	if !p.redirectAllowed(r.Form.Get("redirect_uri")) {
		http.Error(w, "redirect_uri is not registered with the demo identity provider", http.StatusBadRequest)
		return
	}
	// mockoidc rejects scopes it does not list. RFC 6749 §3.3 lets a server
	// ignore part of the request, so others are dropped: offline_access
	// (OIDC Core §11) is granted anyway, as mockoidc always issues refresh
	// tokens, and per-API scopes mean nothing to the demo upstreams.
	kept := slices.DeleteFunc(strings.Fields(r.Form.Get("scope")), func(s string) bool {
		return !slices.Contains(mockoidc.ScopesSupported, s)
	})
	if len(kept) == 0 {
		kept = []string{"openid"}
	}
	r.Form.Set("scope", strings.Join(kept, " "))

	name := r.Form.Get("login_hint")
	if _, ok := demoUserByName(name); !ok {
		switch {
		case len(p.pending) > 0:
			name, p.pending = p.pending[0], p.pending[1:]
		case p.choose:
			p.chooser(w, r)
			return
		default:
			name = demoUsers[0].username
		}
	}
	u, _ := demoUserByName(name)
	p.m.UserQueue.Lock()
	p.m.UserQueue.Queue = []mockoidc.User{demoUser{u}}
	p.m.UserQueue.Unlock()
	p.logger.InfoContext(r.Context(), "demo identity provider signs in", "user", name)
	next.ServeHTTP(w, r)
}

// redirectAllowed accepts the bridge's callback on any loopback port, plus
// the URIs listed in Options.RedirectURIs.
func (p *provider) redirectAllowed(raw string) bool {
	if slices.Contains(p.redirectURIs, raw) {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Path != "/oauth/callback" || u.User != nil || u.Fragment != "" {
		return false
	}
	if !loopback(u.Hostname()) {
		return false
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	return true
}

var chooserPage = template.Must(template.New("chooser").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo sign-in</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto}a{display:block;margin:.5rem 0;padding:.75rem 1rem;border:1px solid #888;border-radius:.4rem;text-decoration:none;color:inherit}</style>
</head><body><h1>Demo identity provider</h1><p>Choose who to sign in as. There is no password in the demo.</p>
{{range .}}<a href="{{.URL}}" id="user-{{.Name}}">{{.DisplayName}} <small>({{.Name}})</small></a>
{{end}}</body></html>`))

// chooser shows a page with one link per demo user; each link repeats the
// authorization request with a login_hint.
func (p *provider) chooser(w http.ResponseWriter, r *http.Request) {
	type choice struct{ Name, DisplayName, URL string }
	var choices []choice
	for _, u := range demoUsers {
		q := url.Values{}
		for k, v := range r.Form {
			q[k] = v
		}
		q.Set("login_hint", u.username)
		choices = append(choices, choice{u.username, u.displayName, mockoidc.AuthorizationEndpoint + "?" + q.Encode()})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = chooserPage.Execute(w, choices)
}

// token adapts the client to mockoidc and fixes its answer. Called with p.mu held.
func (p *provider) token(next http.Handler, w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	// RFC 6749 §2.3.1: servers must accept client_secret_basic, which mockoidc
	// advertises but reads only from the form.
	if id, secret, ok := r.BasicAuth(); ok && r.Form.Get("client_id") == "" {
		id, err1 := url.QueryUnescape(id)
		secret, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client")
			return
		}
		r.Form.Set("client_id", id)
		r.Form.Set("client_secret", secret)
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, r)

	if rec.status != http.StatusOK {
		// mockoidc echoes the code or secret it refused in error_description;
		// only the error code goes out, so no credential lands in a client's log.
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(rec.body.Bytes(), &e)
		if e.Error == "" {
			e.Error = "server_error"
		}
		p.logger.InfoContext(r.Context(), "demo identity provider refused a token request",
			"grant_type", r.Form.Get("grant_type"), "error", e.Error)
		writeOAuthError(w, rec.status, e.Error)
		return
	}
	// RFC 6749 §5.1: expires_in is in seconds; mockoidc writes a
	// time.Duration, which is nanoseconds.
	var body map[string]any
	dec := json.NewDecoder(&rec.body)
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error")
		return
	}
	body["expires_in"] = int64(p.m.AccessTTL / time.Second)
	body["token_type"] = "Bearer"
	out, err := json.Marshal(body)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error")
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// writeOAuthError writes an RFC 6749 §5.2 error with Cache-Control: no-store.
func writeOAuthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": code})
	_, _ = w.Write(b)
}

// recorder buffers a small mockoidc response so the front can rewrite it.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

// Header returns the buffered header map.
func (r *recorder) Header() http.Header { return r.header }

// WriteHeader records the status code.
func (r *recorder) WriteHeader(status int) { r.status = status }

// Write buffers body bytes.
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// demoUserByName returns the demo user with that name.
func demoUserByName(name string) (person, bool) {
	for _, u := range demoUsers {
		if u.username == name {
			return u, true
		}
	}
	return person{}, false
}

// loopback reports whether host is a loopback name or address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
