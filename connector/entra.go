package connector

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// isJWT reports whether a bearer token is a JWT: bridge tokens are opaque
// and never hold a dot (tokencache's token formats).
func isJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// orgAccounts reports whether Entra access tokens are accepted on /odata.
func (s *Server) orgAccounts() bool { return s.entra != nil && s.opts.Entra.OrgAccount }

// oboAuthorizer sends the on-behalf-of token of the caller upstream; after
// an upstream 401 it exchanges again instead of reusing the cached one.
type oboAuthorizer struct {
	e         *idp.Entra
	assertion string
	caller    idp.Caller
	resource  string
	token     tokencache.Secret
}

func (a *oboAuthorizer) Authorize(ctx context.Context, out *http.Request, renew bool) error {
	if renew || a.token == "" {
		tok, err := a.e.OnBehalfOf(ctx, a.assertion, a.caller, a.resource, renew)
		if err != nil {
			return err
		}
		a.token = tok
	}
	out.Header.Set("Authorization", "Bearer "+string(a.token))
	return nil
}

// feedCaller authenticates the caller of a source. An Entra access token
// is accepted where organizational accounts are on: it is verified and, for
// auth user, exchanged on-behalf-of before anything reaches the upstream,
// and the returned Authorizer sends the result. Otherwise auth is nil and
// user is the caller's bridge session.
func (s *Server) feedCaller(ctx context.Context, cr credential, src *Source) (user string, auth odata.Authorizer, err error) {
	if cr.kind != "bearer" || !isJWT(cr.value) || !s.orgAccounts() {
		user, err = s.sessionOf(ctx, cr)
		return user, nil, err
	}
	c, err := s.entra.Verify(ctx, cr.value)
	if err != nil {
		return "", nil, err
	}
	user = "entra:" + c.Key("")
	if src.Auth != "user" {
		return user, nil, nil
	}
	if src.Resource == "" {
		return "", nil, fmt.Errorf("source %s: %w: no resource for on-behalf-of", src.Name, idp.ErrOBORefused)
	}
	a := &oboAuthorizer{e: s.entra, assertion: cr.value, caller: c, resource: src.Resource}
	if a.token, err = s.entra.OnBehalfOf(ctx, cr.value, c, src.Resource, false); err != nil {
		return "", nil, err
	}
	return user, a, nil
}

// authorizationURI is the Bearer challenge's authorization_uri where
// organizational accounts are on, else empty.
func (s *Server) authorizationURI() string {
	if !s.orgAccounts() {
		return ""
	}
	return s.opts.Entra.AuthorizationURI()
}
