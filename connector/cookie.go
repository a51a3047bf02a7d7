package connector

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/tokencache"
)

// The sign-in page's own session cookie. Its value is sealed with
// AES-256-GCM, so it is both signed and encrypted; the cookie name is bound
// in as additional data. It names a server-side page session (kindPage in
// the store), so signing out ends it for every copy of the cookie.
const (
	cookieName = "odata_bridge"
	cookieTTL  = 12 * time.Hour
	kindPage   = "page"
)

// signinCookieName is the start of the names of the cookies that bind a
// sign-in to the browser that started it; the state's first characters
// follow, so sign-ins started side by side do not overwrite each other.
const signinCookieName = "odata_bridge_signin_"

// pageCookie is what the sealed cookie holds.
type pageCookie struct {
	PageID    string    `json:"pid"` // the server-side page session
	SessionID string    `json:"sid"`
	CSRF      string    `json:"csrf"`
	Expires   time.Time `json:"exp"`
}

var errCookie = errors.New("invalid page cookie")

func (s *Server) cookieAEAD() cipher.AEAD {
	block, err := aes.NewCipher(s.cookieKey)
	if err != nil {
		panic(err) // the key length is checked in New
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// seal encrypts plain for a cookie; ad names what the value is for, so a
// value sealed for one purpose never opens as another.
func (s *Server) seal(plain []byte, ad string) string {
	aead := s.cookieAEAD()
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(ad)))
}

// unseal is the inverse of seal.
func (s *Server) unseal(v, ad string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(v)
	aead := s.cookieAEAD()
	if err != nil || len(raw) < aead.NonceSize() {
		return nil, errCookie
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(ad))
	if err != nil {
		return nil, errCookie
	}
	return plain, nil
}

func (s *Server) sealCookie(pc pageCookie) string {
	plain, _ := json.Marshal(pc)
	return s.seal(plain, cookieName)
}

func (s *Server) openCookie(v string) (pageCookie, error) {
	plain, err := s.unseal(v, cookieName)
	if err != nil {
		return pageCookie{}, err
	}
	var pc pageCookie
	if json.Unmarshal(plain, &pc) != nil || pc.SessionID == "" || pc.PageID == "" || s.now().After(pc.Expires) {
		return pageCookie{}, errCookie
	}
	return pc, nil
}

// hostPrefix is "__Host-" on https: such a cookie is Secure, has Path=/ and
// no Domain, so no sibling host or plain-http page can set or shadow it.
func (s *Server) hostPrefix() string {
	if s.secureCookies() {
		return "__Host-"
	}
	return ""
}

// pageCookieName is the page cookie's name on this bridge.
func (s *Server) pageCookieName() string { return s.hostPrefix() + cookieName }

// newPageSession stores a page session for sid and returns its cookie.
func (s *Server) newPageSession(ctx context.Context, sid string) (pageCookie, error) {
	pc := pageCookie{PageID: randomString(24), SessionID: sid, CSRF: randomString(24), Expires: s.now().Add(cookieTTL)}
	if err := s.opts.Store.PutValue(ctx, kindPage, pc.PageID, []byte(sid), cookieTTL); err != nil {
		return pageCookie{}, err
	}
	return pc, nil
}

// setPageCookie starts the page's session for sid.
func (s *Server) setPageCookie(c *gin.Context, sid string) error {
	pc, err := s.newPageSession(c.Request.Context(), sid)
	if err != nil {
		return err
	}
	s.setCookie(c, s.pageCookieName(), s.sealCookie(pc), cookieTTL)
	return nil
}

// setCookie sets a cookie of the bridge: HttpOnly, SameSite=Lax, Path=/,
// Secure on https. A zero ttl deletes it.
func (s *Server) setCookie(c *gin.Context, name, value string, ttl time.Duration) {
	maxAge := int(ttl / time.Second)
	if ttl <= 0 {
		maxAge = -1
	}
	http.SetCookie(c.Writer, &http.Cookie{
		Name: name, Value: value, Path: "/",
		MaxAge: maxAge, HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearPageCookie(c *gin.Context) {
	s.setCookie(c, s.pageCookieName(), "", 0)
}

// pageCookieOf returns the request's page cookie if it is valid and its
// page session still exists; err is a store failure.
func (s *Server) pageCookieOf(c *gin.Context) (pageCookie, bool, error) {
	v, err := c.Cookie(s.pageCookieName())
	if err != nil || v == "" {
		return pageCookie{}, false, nil
	}
	pc, err := s.openCookie(v)
	if err != nil {
		return pageCookie{}, false, nil
	}
	sid, err := s.opts.Store.Value(c.Request.Context(), kindPage, pc.PageID)
	switch {
	case errors.Is(err, tokencache.ErrNotFound):
		return pageCookie{}, false, nil // signed out, or expired
	case err != nil:
		return pageCookie{}, false, err
	case subtle.ConstantTimeCompare(sid, []byte(pc.SessionID)) != 1:
		return pageCookie{}, false, nil
	}
	return pc, true, nil
}

// maxFormBody bounds the body of a form posted from the page.
const maxFormBody = 64 << 10

// pageSession returns the session of the page's cookie. A state-changing
// request must also carry the cookie's CSRF token in X-CSRF-Token (or the
// csrf form field); a request without a live cookie returns "" and no
// error, so other credentials are tried.
func (s *Server) pageSession(c *gin.Context) (string, error) {
	pc, ok, err := s.pageCookieOf(c)
	if err != nil || !ok {
		return "", err
	}
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		tok := c.GetHeader("X-CSRF-Token")
		if tok == "" {
			// The page's forms are a few fields; a larger body is refused
			// before gin parses it (a multipart form could spill to disk).
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBody)
			tok = c.PostForm("csrf")
		}
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(pc.CSRF)) != 1 {
			return "", errCSRF
		}
	}
	return pc.SessionID, nil
}

// signinBinding is the additional data of a sign-in cookie: the state it
// belongs to, so a cookie of one sign-in never opens for another.
func signinBinding(state string) string { return "signin\x00" + state }

// signinCookie is the name of the cookie that holds the sign-in of state.
func (s *Server) signinCookie(state string) string {
	return s.hostPrefix() + signinCookieName + state[:min(len(state), 12)]
}
