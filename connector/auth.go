package connector

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

const sessionKey = "session_id"

// credential is what a caller presented to the bridge.
type credential struct {
	kind  string // "bearer", "key", "session" (the sign-in page's) or "" for none
	value string
}

// callerCredential reads the bridge credential of a request: a bearer
// token, a feed key as the Basic password, or the feed key query parameter
// (Power BI's "Web API" credential). Malformed headers are errors.
func (s *Server) callerCredential(r *http.Request) (credential, error) {
	if sid, ok := r.Context().Value(pageCaller{}).(string); ok {
		return credential{"session", sid}, nil // the page's cookie and CSRF token, checked by pageCallerContext
	}
	h := r.Header.Values("Authorization")
	if len(h) > 1 {
		return credential{}, fault.Because(errBadCredentials, errors.New("more than one Authorization header"))
	}
	if len(h) == 1 {
		scheme, rest, _ := strings.Cut(h[0], " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToLower(scheme) {
		case "bearer":
			if rest == "" {
				// Power Query sends an empty bearer to discover the challenge.
				return credential{}, errNoCredentials
			}
			return credential{"bearer", rest}, nil
		case "basic":
			raw, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				return credential{}, fault.Because(errBadCredentials, errors.New("malformed Basic header"))
			}
			_, password, ok := strings.Cut(string(raw), ":")
			if !ok || password == "" {
				return credential{}, fault.Because(errBadCredentials, errors.New("no feed key in the Basic header"))
			}
			return credential{"key", password}, nil
		default:
			return credential{}, fault.Because(errBadCredentials, errors.New("unsupported Authorization scheme"))
		}
	}
	if k := r.URL.Query()[s.opts.APIKeyParam]; len(k) > 0 {
		if len(k) != 1 || k[0] == "" {
			return credential{}, fault.Because(errBadCredentials, fmt.Errorf("malformed %s", s.opts.APIKeyParam))
		}
		return credential{"key", k[0]}, nil
	}
	return credential{}, errNoCredentials
}

// sessionOf resolves a caller's credential to a session ID.
func (s *Server) sessionOf(ctx context.Context, cr credential) (string, error) {
	var (
		sid string
		err error
	)
	switch cr.kind {
	case "session":
		return cr.value, nil
	case "bearer":
		sid, err = s.opts.Store.Authenticate(ctx, cr.value)
	case "key":
		if !strings.HasPrefix(cr.value, "obk_") {
			return "", fault.Because(errBadCredentials, errors.New("not a feed key"))
		}
		sid, err = s.opts.Store.FeedKey(ctx, cr.value)
	default:
		return "", errNoCredentials
	}
	if errors.Is(err, tokencache.ErrNotFound) {
		return "", fault.Because(errBadCredentials, errors.New("unknown, expired or revoked"))
	}
	return sid, err
}

// requireSession authenticates the /api/keys routes with the sign-in
// page's cookie (and its CSRF token) or a bridge bearer token, never a feed key.
func (s *Server) requireSession(c *gin.Context) {
	sid, err := s.pageSession(c)
	if err == nil && sid == "" {
		var cr credential
		cr, err = s.callerCredential(c.Request)
		switch {
		case err != nil:
		case cr.kind == "key":
			// A feed key reads feeds; it never manages keys, or a leaked key
			// could mint others and outlive its own revocation.
			err = fault.Because(errBadCredentials, errors.New("a feed key cannot manage feed keys"))
		default:
			sid, err = s.sessionOf(c.Request.Context(), cr)
		}
	}
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		c.Abort()
		return
	}
	c.Set(sessionKey, sid)
	c.Next()
}

// sessionAuthorizer sends the session's provider access token upstream: its
// own, or the one issued for the source's audience.
type sessionAuthorizer struct {
	store  Store
	sid    string
	source string               // the source's name, for errors
	aud    *tokencache.Audience // nil: the session's own token
	last   tokencache.Secret
}

func (a *sessionAuthorizer) Authorize(ctx context.Context, out *http.Request, renew bool) error {
	var (
		tok tokencache.Secret
		err error
	)
	switch {
	case a.aud != nil && renew && a.last != "":
		tok, err = a.store.RenewFor(ctx, a.sid, *a.aud, a.last)
	case a.aud != nil:
		tok, err = a.store.TokenFor(ctx, a.sid, *a.aud)
	case renew && a.last != "":
		tok, err = a.store.Renew(ctx, a.sid, a.last)
	default:
		tok, err = a.store.Token(ctx, a.sid)
	}
	if errors.Is(err, tokencache.ErrAudienceRefused) {
		return fault.Withf(errSourceToken, "The identity provider refused a token for source %q. An administrator grants the bridge access to it (consent), or corrects the source's scopes or resource.", a.source)
	}
	if err != nil {
		return err
	}
	a.last = tok
	out.Header.Set("Authorization", "Bearer "+string(tok))
	return nil
}

// errSourceToken means the identity provider refused a source's own token.
var errSourceToken = fault.Sentinel(fault.Forbidden, "SourceTokenRefused", "The identity provider refused a token for this source.")

// basicAuthorizer forwards the caller's Basic credentials unchanged (Basic pass-through).
type basicAuthorizer struct{ header string }

func (a basicAuthorizer) Authorize(_ context.Context, out *http.Request, _ bool) error {
	out.Header.Set("Authorization", a.header)
	return nil
}
