package connector

import (
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
)

// The sign-in page's own session cookie. Its value is sealed with
// AES-256-GCM, so it is both signed and encrypted; the cookie name is bound
// in as additional data.
const (
	cookieName = "odata_bridge"
	cookieTTL  = 12 * time.Hour
)

// pageCookie is what the sealed cookie holds.
type pageCookie struct {
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

func (s *Server) sealCookie(pc pageCookie) string {
	plain, _ := json.Marshal(pc)
	aead := s.cookieAEAD()
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(cookieName)))
}

func (s *Server) openCookie(v string) (pageCookie, error) {
	raw, err := base64.RawURLEncoding.DecodeString(v)
	aead := s.cookieAEAD()
	if err != nil || len(raw) < aead.NonceSize() {
		return pageCookie{}, errCookie
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(cookieName))
	if err != nil {
		return pageCookie{}, errCookie
	}
	var pc pageCookie
	if json.Unmarshal(plain, &pc) != nil || pc.SessionID == "" || s.now().After(pc.Expires) {
		return pageCookie{}, errCookie
	}
	return pc, nil
}

// setPageCookie starts the page's session for sid.
func (s *Server) setPageCookie(c *gin.Context, sid string) {
	pc := pageCookie{SessionID: sid, CSRF: randomString(24), Expires: s.now().Add(cookieTTL)}
	http.SetCookie(c.Writer, &http.Cookie{
		Name: cookieName, Value: s.sealCookie(pc), Path: "/",
		MaxAge: int(cookieTTL / time.Second), HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearPageCookie(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

// pageCookieOf returns the request's page cookie, if valid.
func (s *Server) pageCookieOf(c *gin.Context) (pageCookie, bool) {
	v, err := c.Cookie(cookieName)
	if err != nil || v == "" {
		return pageCookie{}, false
	}
	pc, err := s.openCookie(v)
	return pc, err == nil
}

// maxFormBody bounds the body of a form posted from the page.
const maxFormBody = 64 << 10

// pageSession returns the session of the page's cookie. A state-changing
// request must also carry the cookie's CSRF token in X-CSRF-Token (or the
// csrf form field); a request without the cookie returns "" and no error,
// so other credentials are tried.
func (s *Server) pageSession(c *gin.Context) (string, error) {
	pc, ok := s.pageCookieOf(c)
	if !ok {
		return "", nil
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
