package demo

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// userKey is the context key of the signed-in person.
type userKey struct{}

// userFrom returns the person a request was authenticated as.
func userFrom(ctx context.Context) person {
	p, _ := ctx.Value(userKey{}).(person)
	return p
}

// bearerAuth admits only access tokens issued by the embedded provider:
// signature by its key, its issuer, its client as audience, not expired
// (RFC 6750, RFC 7519 §7.2).
type bearerAuth struct {
	verifier *oidc.IDTokenVerifier
	// maxLifetime tells access tokens from refresh tokens, which mockoidc
	// signs with the same claims but a longer lifetime.
	maxLifetime time.Duration
	logger      *slog.Logger
}

// wrap guards next; deny writes the service's own error shape.
func (a *bearerAuth) wrap(next http.Handler, deny func(w http.ResponseWriter, status int, msg string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || raw == "" {
			// RFC 6750 §3.1: no error code when the request had no credentials.
			w.Header().Set("WWW-Authenticate", `Bearer realm="K2 demo"`)
			deny(w, http.StatusUnauthorized, "Authorization has been denied for this request.")
			return
		}
		tok, err := a.verifier.Verify(r.Context(), strings.TrimSpace(raw))
		if err == nil && tok.Expiry.Sub(tok.IssuedAt) > a.maxLifetime {
			err = errNotAccessToken
		}
		if err != nil {
			// The reason is logged without the token; the client learns only invalid_token.
			a.logger.InfoContext(r.Context(), "demo upstream refused a bearer token", "path", r.URL.Path, "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="K2 demo", error="invalid_token"`)
			deny(w, http.StatusUnauthorized, "Authorization has been denied for this request.")
			return
		}
		p, ok := personByName(tok.Subject)
		if !ok {
			p = person{username: tok.Subject, displayName: tok.Subject}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, p)))
	})
}
