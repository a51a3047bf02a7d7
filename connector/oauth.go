package connector

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/tokencache"
)

// Lifetimes of the one-time values of the authorization flow.
const (
	stateTTL = 10 * time.Minute // the user's time at the identity provider
	codeTTL  = 60 * time.Second // RFC 6749 §4.1.2: short-lived, single use
)

// One-time value kinds in the store.
const (
	kindState = "state"
	kindCode  = "code"
)

// maxClientState bounds a client's state: it travels in the sign-in
// cookie, and a browser keeps no cookie past 4 KiB.
const maxClientState = 1024

// pending is an authorization request waiting for the provider's callback.
// It is sealed into a cookie of the browser that started it, under the
// bridge's own state, and nothing is stored until the callback, which
// claims the state so it is single use.
type pending struct {
	Purpose     string    `json:"p"`            // "client": a connector's authorize; "page": the sign-in page; "consent": Entra admin consent
	ClientID    string    `json:"c,omitempty"`  // the connector's client
	RedirectURI string    `json:"r,omitempty"`  // exactly as the client sent it
	State       string    `json:"s,omitempty"`  // the client's own state
	Challenge   string    `json:"ch,omitempty"` // the client's S256 code challenge
	Verifier    string    `json:"v"`            // the bridge's PKCE verifier toward the provider
	Nonce       string    `json:"n"`
	Expires     time.Time `json:"e"`
}

// grant is what a bridge authorization code stands for.
type grant struct {
	SessionID   string    `json:"sid"`
	ClientID    string    `json:"c"`
	RedirectURI string    `json:"r"`
	Challenge   string    `json:"ch"`
	Expires     time.Time `json:"e"`
}

// issuer is the bridge's issuer identifier as an authorization server
// (RFC 8414 §2, RFC 9207 §2): its public URL.
func (s *Server) issuer() string { return s.public.String() }

// randomString returns n random bytes, base64url encoded.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// s256 is the PKCE S256 transform (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// validChallenge checks an S256 code challenge: the unpadded base64url
// form of a SHA-256 digest, 43 characters (RFC 7636 §4.2).
func validChallenge(ch string) bool {
	if len(ch) != 43 {
		return false
	}
	for i := 0; i < len(ch); i++ {
		c := ch[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validState checks a client's state: RFC 6749 Appendix A.5 allows only
// VSCHAR (%x20-7E), so control characters and bytes beyond ASCII are
// refused before anything is stored.
func validState(state string) bool {
	for i := 0; i < len(state); i++ {
		if state[i] < 0x20 || state[i] > 0x7e {
			return false
		}
	}
	return true
}

// registeredRedirect reports whether uri is one of the client's redirect
// URIs. RFC 9700 §2.1: exact string comparison, nothing else.
func (cl Client) registeredRedirect(uri string) bool {
	for _, r := range cl.RedirectURIs {
		if subtle.ConstantTimeCompare([]byte(r), []byte(uri)) == 1 {
			return true
		}
	}
	return false
}

func (s *Server) authServerMetadata(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{
		"issuer":                                     s.issuer(),
		"authorization_endpoint":                     s.url("/oauth/authorize"),
		"token_endpoint":                             s.url("/oauth/token"),
		"revocation_endpoint":                        s.url("/oauth/revoke"),
		"response_types_supported":                   []string{"code"},
		"grant_types_supported":                      []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":           []string{"S256"},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
		// RFC 9207: every authorization response names the bridge as iss.
		"authorization_response_iss_parameter_supported": true,
	})
}

var errorPage = template.Must(template.ParseFS(assets, "assets/error.html"))

// showError renders an error page. It never redirects: a request with a bad
// client or redirect URI must not reach that URI (RFC 6749 §4.1.2.1).
func showError(c *gin.Context, status int, message string) {
	pageHeaders(c)
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	_ = errorPage.Execute(c.Writer, message)
}

// redirectError sends an RFC 6749 §4.1.2.1 error to a validated redirect URI.
func (s *Server) redirectError(c *gin.Context, redirectURI, state, code, desc string) {
	u, _ := url.Parse(redirectURI)
	q := u.Query()
	q.Set("error", code)
	if desc != "" {
		q.Set("error_description", desc)
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.issuer()) // RFC 9207 §2
	u.RawQuery = q.Encode()
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, u.String())
}

// authorize is steps 1–2 of the custom-connector flow: validate the client, then hand over to the
// identity provider with the bridge's own state, nonce and PKCE.
func (s *Server) authorize(c *gin.Context) {
	q := c.Request.URL.Query()
	client, ok := s.clients[q.Get("client_id")]
	if !ok || len(q["client_id"]) != 1 {
		showError(c, http.StatusBadRequest, "Unknown client.")
		return
	}
	redirectURI := q.Get("redirect_uri")
	if len(q["redirect_uri"]) != 1 || !client.registeredRedirect(redirectURI) {
		showError(c, http.StatusBadRequest, "The redirect URI is not registered for this client.")
		return
	}
	state := q.Get("state")
	// From here on errors go back to the client's registered redirect URI.
	switch {
	case !validState(state):
		// Not echoed back: it is what the check refused.
		s.redirectError(c, redirectURI, "", "invalid_request", "state must be printable ASCII")
		return
	case len(state) > maxClientState:
		s.redirectError(c, redirectURI, "", "invalid_request", "state is too long")
		return
	case q.Get("response_type") != "code":
		s.redirectError(c, redirectURI, state, "unsupported_response_type", "response_type must be code")
		return
	case q.Get("code_challenge") == "":
		s.redirectError(c, redirectURI, state, "invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
		return
	case q.Get("code_challenge_method") != "S256":
		s.redirectError(c, redirectURI, state, "invalid_request", "code_challenge_method must be S256")
		return
	case !validChallenge(q.Get("code_challenge")):
		s.redirectError(c, redirectURI, state, "invalid_request", "code_challenge must be a base64url SHA-256 value")
		return
	}
	p := pending{
		Purpose:     "client",
		ClientID:    client.ID,
		RedirectURI: redirectURI,
		State:       state,
		Challenge:   q.Get("code_challenge"),
	}
	s.startSignIn(c, p)
}

// startSignIn binds p to the browser and redirects to the identity
// provider.
func (s *Server) startSignIn(c *gin.Context, p pending) {
	ctx := c.Request.Context()
	p.Verifier = randomString(32)
	p.Nonce = randomString(16)
	state := s.bindSignIn(c, p)
	to, err := s.opts.Provider.AuthCodeURL(ctx, state, p.Nonce, p.Verifier)
	if err != nil {
		s.log.ErrorContext(ctx, "identity provider", slog.Any("error", err))
		s.failPage(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, to)
}

// bindSignIn seals p into a short-lived cookie of this browser under a
// fresh state and returns the state. Nothing is stored on the server, so
// anonymous starts cost no memory; only the browser that holds the cookie
// can finish the sign-in (RFC 6749 §10.12, RFC 9700 §4.7: a callback URL
// prepared by someone else does not sign a victim into their account).
func (s *Server) bindSignIn(c *gin.Context, p pending) string {
	state := randomString(32)
	p.Expires = s.now().Add(stateTTL)
	// Without HTML escaping a '<' of the client's state stays one byte, so
	// the longest state still gives a cookie a browser keeps.
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p) // strings and a time: cannot fail
	// Every start adds a cookie; a page that starts sign-ins over and over
	// would grow the browser's Cookie header until the bridge or a proxy
	// refuses it. Past a few, the unfinished ones are dropped.
	var started []string
	for _, ck := range c.Request.Cookies() {
		if strings.HasPrefix(ck.Name, s.hostPrefix()+signinCookieName) {
			started = append(started, ck.Name)
		}
	}
	if len(started) >= maxPendingSignIns {
		for _, name := range started {
			s.setCookie(c, name, "", 0)
		}
	}
	s.setCookie(c, s.signinCookie(state), s.seal(raw.Bytes(), signinBinding(state)), stateTTL)
	return state
}

// maxPendingSignIns is how many unfinished sign-ins one browser keeps.
const maxPendingSignIns = 4

// errNoSignIn is a callback whose state this browser did not start, or
// that was already used or has expired.
var errNoSignIn = errors.New("unknown sign-in state")

// takeSignIn opens the sign-in of state from the browser's cookie and
// claims the state, so each is used once, whoever holds a copy.
func (s *Server) takeSignIn(c *gin.Context, state string) (pending, error) {
	name := s.signinCookie(state)
	v, err := c.Cookie(name)
	if err != nil || v == "" {
		return pending{}, errNoSignIn
	}
	plain, err := s.unseal(v, signinBinding(state))
	if err != nil {
		return pending{}, errNoSignIn
	}
	var p pending
	now := s.now()
	if json.Unmarshal(plain, &p) != nil || !now.Before(p.Expires) {
		return pending{}, errNoSignIn
	}
	if err := s.opts.Store.Claim(c.Request.Context(), kindState, state, p.Expires.Sub(now)); err != nil {
		if errors.Is(err, tokencache.ErrUsed) {
			return pending{}, errNoSignIn
		}
		return pending{}, err
	}
	s.setCookie(c, name, "", 0)
	return p, nil
}

// failPage shows an outage as an error page with Retry-After.
func (s *Server) failPage(c *gin.Context, err error) {
	f := classify(err)
	if f.retry {
		c.Header("Retry-After", retryAfterSeconds)
	}
	showError(c, f.status, f.message)
}

// callback is step 3 of the custom-connector flow. The state is taken first, and only a valid state
// lets the provider's code be redeemed.
func (s *Server) callback(c *gin.Context) {
	ctx := c.Request.Context()
	q := c.Request.URL.Query()
	state := q.Get("state")
	if state == "" {
		if adminConsentResponse(q) {
			// A consent result is shown only for a consent this bridge started.
			showError(c, http.StatusBadRequest, "The bridge did not start this admin consent in this browser, so it cannot confirm the answer. Entra ID's Enterprise applications show whether consent was granted; to see the result here, start admin consent at "+s.url("/admin/consent")+"?tenant= followed by the tenant.")
			return
		}
		showError(c, http.StatusBadRequest, "The sign-in response has no state.")
		return
	}
	p, err := s.takeSignIn(c, state)
	if err != nil {
		if !errors.Is(err, errNoSignIn) {
			s.log.ErrorContext(ctx, "claim sign-in state", slog.Any("error", err))
			s.failPage(c, err)
			return
		}
		showError(c, http.StatusBadRequest, "This sign-in is unknown, expired or already used, or it was started in another browser. Start it again.")
		return
	}
	if p.Purpose == "consent" {
		s.consentResult(c)
		return
	}
	if e := q.Get("error"); e != "" {
		s.metrics.signIns.WithLabelValues("provider_error").Inc()
		if p.Purpose == "client" {
			s.redirectError(c, p.RedirectURI, p.State, oauthErrorCode(e), q.Get("error_description"))
			return
		}
		showError(c, http.StatusBadRequest, "The identity provider refused the sign-in: "+q.Get("error_description"))
		return
	}
	code := q.Get("code")
	if code == "" {
		showError(c, http.StatusBadRequest, "The sign-in response has no code.")
		return
	}
	id, tok, err := s.opts.Provider.Exchange(ctx, code, p.Verifier, p.Nonce)
	if err != nil {
		s.metrics.signIns.WithLabelValues("exchange_failed").Inc()
		s.log.WarnContext(ctx, "sign-in failed", slog.Any("error", err))
		if p.Purpose == "client" && !errors.Is(err, idp.ErrUnavailable) {
			s.redirectError(c, p.RedirectURI, p.State, "access_denied", "the identity provider did not confirm the sign-in")
			return
		}
		s.failPage(c, err)
		return
	}
	// A new session every time: an earlier one is never reused (no fixation).
	sid, err := s.opts.Store.CreateSession(ctx, tokencache.Session{
		Subject:      id.Subject,
		Name:         id.Name,
		Email:        id.Email,
		AccessToken:  tokencache.Secret(tok.AccessToken),
		RefreshToken: tokencache.Secret(tok.RefreshToken),
		Expiry:       tok.Expiry,
	})
	if err != nil {
		s.log.ErrorContext(ctx, "create session", slog.Any("error", err))
		s.failPage(c, err)
		return
	}
	s.metrics.signIns.WithLabelValues("ok").Inc()
	s.log.InfoContext(ctx, "signed in", slog.String("purpose", p.Purpose), slog.String("session", shortID(sid)))
	s.rememberIdentity(ctx, sid, id)
	s.audit(ctx, tokencache.Event{Kind: tokencache.AuditSignIn, Subject: id.Subject, Email: id.Email, Session: shortID(sid), Detail: p.Purpose})
	if p.Purpose == "page" {
		s.finishPageSignIn(c, sid, p)
		return
	}
	g, _ := json.Marshal(grant{SessionID: sid, ClientID: p.ClientID, RedirectURI: p.RedirectURI, Challenge: p.Challenge, Expires: s.now().Add(codeTTL)})
	bridgeCode, err := s.opts.Store.PutOnce(ctx, kindCode, g, codeTTL)
	if err != nil {
		s.log.ErrorContext(ctx, "store code", slog.Any("error", err))
		s.failPage(c, err)
		return
	}
	u, _ := url.Parse(p.RedirectURI)
	rq := u.Query()
	rq.Set("code", string(bridgeCode))
	if p.State != "" {
		rq.Set("state", p.State)
	}
	rq.Set("iss", s.issuer()) // RFC 9207 §2
	u.RawQuery = rq.Encode()
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, u.String())
}

// shortID is a log-safe prefix of a session ID; session IDs are lookup
// handles, not credentials, but logs need no more than this.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// oauthErrorCode keeps RFC 6749 §4.1.2.1 codes and maps anything else to
// access_denied, so a provider's own codes do not confuse the client.
func oauthErrorCode(e string) string {
	switch e {
	case "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
		"invalid_scope", "server_error", "temporarily_unavailable", "interaction_required",
		"login_required", "consent_required":
		return e
	}
	return "access_denied"
}

// tokenResponse is flat: Power Query drops nested values.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// token is steps 4 and 6 of the custom-connector flow: the authorization_code and refresh_token grants.
func (s *Server) token(c *gin.Context) {
	ctx := c.Request.Context()
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		s.writeTokenError(c, invalidRequest("the body must be application/x-www-form-urlencoded"))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBody)
	if err := c.Request.ParseForm(); err != nil {
		s.writeTokenError(c, invalidRequest("the form cannot be read"))
		return
	}
	f := c.Request.PostForm
	for k, v := range f {
		if len(v) > 1 {
			// RFC 6749 §3.2: parameters must not be repeated.
			s.writeTokenError(c, invalidRequest("parameter "+k+" is repeated"))
			return
		}
	}
	var (
		toks      tokencache.Tokens
		err       error
		reusedSID string // the session of a refresh token, named before the grant
	)
	switch f.Get("grant_type") {
	case "authorization_code":
		toks, err = s.redeemCode(c, f)
	case "refresh_token":
		// A reused refresh token revokes its family and its session, and
		// with them its lookup: the session is named before the grant.
		reusedSID = s.tokenSession(ctx, f.Get("refresh_token"))
		toks, err = s.refreshGrant(c, f)
	case "":
		err = invalidRequest("grant_type is required")
	default:
		err = unsupportedGrantType("supported: authorization_code, refresh_token")
	}
	if err != nil {
		if errors.Is(err, tokencache.ErrReused) {
			s.auditSession(ctx, tokencache.AuditRefreshReuse, reusedSID, "", "")
		}
		s.log.InfoContext(ctx, "token request refused", slog.String("grant_type", f.Get("grant_type")), slog.Any("error", err))
		s.writeTokenError(c, err)
		return
	}
	expires := toks.ExpiresIn
	if expires <= 0 {
		expires = s.opts.AccessTTL
	}
	c.JSON(http.StatusOK, tokenResponse{
		AccessToken:  string(toks.AccessToken),
		TokenType:    "Bearer",
		ExpiresIn:    int64(expires / time.Second),
		RefreshToken: string(toks.RefreshToken),
	})
}

func (s *Server) writeTokenError(c *gin.Context, err error) {
	status, code, desc, retry := tokenError(err)
	if retry {
		c.Header("Retry-After", retryAfterSeconds)
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Basic realm="OData Bridge"`)
	}
	c.JSON(status, gin.H{"error": code, "error_description": desc})
}

// redeemCode checks a bridge code against its client, redirect URI and PKCE
// verifier, then issues bridge tokens.
func (s *Server) redeemCode(c *gin.Context, f url.Values) (tokencache.Tokens, error) {
	ctx := c.Request.Context()
	code := f.Get("code")
	if code == "" {
		return tokencache.Tokens{}, invalidRequest("code is required")
	}
	if _, ok := s.clients[f.Get("client_id")]; !ok {
		return tokencache.Tokens{}, invalidClient("unknown client")
	}
	raw, err := s.opts.Store.TakeOnce(ctx, kindCode, code)
	if errors.Is(err, tokencache.ErrUsed) {
		// RFC 6749 §4.1.2: a code used twice revokes what it issued.
		var g grant
		if json.Unmarshal(raw, &g) == nil && g.SessionID != "" {
			if err := s.opts.Store.EndSession(ctx, g.SessionID); err != nil {
				s.log.ErrorContext(ctx, "revoke after code reuse", slog.Any("error", err))
			}
			s.forgetSession(g.SessionID)
			s.log.WarnContext(ctx, "authorization code reused; session revoked", slog.String("session", shortID(g.SessionID)))
		}
		return tokencache.Tokens{}, invalidGrant("the code was already used")
	}
	if err != nil {
		return tokencache.Tokens{}, err
	}
	var g grant
	if err := json.Unmarshal(raw, &g); err != nil {
		return tokencache.Tokens{}, invalidGrant("the code is invalid")
	}
	fail := func(desc string) (tokencache.Tokens, error) {
		// The code is spent; the session it stood for is of no further use.
		_ = s.opts.Store.EndSession(ctx, g.SessionID)
		return tokencache.Tokens{}, invalidGrant(desc)
	}
	switch {
	case s.now().After(g.Expires):
		return fail("the code has expired")
	case f.Get("client_id") != g.ClientID:
		return fail("the code was issued to another client")
	case f.Get("redirect_uri") != g.RedirectURI:
		return fail("redirect_uri differs from the authorization request")
	case f.Get("code_verifier") == "":
		return fail("code_verifier is required")
	case !validVerifier(f.Get("code_verifier")):
		return fail("code_verifier is malformed")
	case subtle.ConstantTimeCompare([]byte(s256(f.Get("code_verifier"))), []byte(g.Challenge)) != 1:
		return fail("code_verifier does not match the code challenge")
	}
	return s.opts.Store.Issue(ctx, g.SessionID)
}

// refreshGrant rotates a bridge refresh token and makes sure the session is
// still alive at the identity provider, so a revoked user is asked to sign
// in instead of being handed tokens that cannot work.
func (s *Server) refreshGrant(c *gin.Context, f url.Values) (tokencache.Tokens, error) {
	ctx := c.Request.Context()
	rt := f.Get("refresh_token")
	if rt == "" {
		return tokencache.Tokens{}, invalidRequest("refresh_token is required")
	}
	if id := f.Get("client_id"); id != "" {
		if _, ok := s.clients[id]; !ok {
			return tokencache.Tokens{}, invalidClient("unknown client")
		}
	}
	toks, err := s.opts.Store.Rotate(ctx, rt)
	if err != nil {
		return tokencache.Tokens{}, err
	}
	if _, err := s.opts.Store.Token(ctx, toks.SessionID); err != nil {
		return tokencache.Tokens{}, err
	}
	return toks, nil
}

// revoke is RFC 7009: the session behind a bridge token ends. Unknown
// tokens get 200 too, so the endpoint reveals nothing.
func (s *Server) revoke(c *gin.Context) {
	ctx := c.Request.Context()
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBody)
	if err := c.Request.ParseForm(); err != nil {
		s.writeTokenError(c, invalidRequest("the form cannot be read"))
		return
	}
	tok := c.Request.PostForm.Get("token")
	if tok == "" {
		s.writeTokenError(c, invalidRequest("token is required"))
		return
	}
	s.auditToken(ctx, tokencache.AuditSessionRevoked, tok, false)
	// The session an access token names, to drop what feeds keep for it; a
	// refresh token's entries expire within the sources' repeat_ttl.
	sid, _ := s.opts.Store.Authenticate(ctx, tok)
	if err := s.opts.Store.Revoke(ctx, tok); err != nil {
		s.log.ErrorContext(ctx, "revoke", slog.Any("error", err))
		s.writeTokenError(c, err)
		return
	}
	s.forgetSession(sid)
	c.Status(http.StatusOK)
}
