package connector

import (
	"errors"
	"net/http"
	"strings"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// This file is the one place where errors become HTTP status codes.

// retryAfterSeconds is what a caller is told to wait after a 503.
const retryAfterSeconds = "10"

// Authentication failures of the /odata and /api routes.
var (
	errNoCredentials  = errors.New("authentication required")
	errBadCredentials = errors.New("the credentials are invalid, expired or revoked")
	errRateLimited    = errors.New("rate limit exceeded")
	errCSRF           = errors.New("missing or wrong CSRF token")
)

// failure is how an error is shown to a client.
type failure struct {
	status  int
	code    string // OData error code
	message string // safe for the client
	retry   bool   // send Retry-After
	bearer  bool   // send a Bearer invalid_token challenge
}

// classify maps every error the bridge can produce to what the client sees.
// Internal detail never reaches the client: 5xx messages are fixed strings.
func classify(err error) failure {
	switch {
	case errors.Is(err, errNoCredentials):
		return failure{status: http.StatusUnauthorized, code: "Unauthorized", message: "Sign in: use a bridge token (Bearer) or a feed key (Basic)."}
	case errors.Is(err, errBadCredentials), errors.Is(err, idp.ErrInvalidToken), errors.Is(err, tokencache.ErrNotFound), errors.Is(err, tokencache.ErrReused):
		return failure{status: http.StatusUnauthorized, code: "InvalidToken", message: "The credentials are invalid, expired or revoked. Sign in again.", bearer: true}
	case errors.Is(err, tokencache.ErrSessionEnded):
		return failure{status: http.StatusUnauthorized, code: "SessionEnded", message: "The identity provider ended the session. Sign in again.", bearer: true}
	case errors.Is(err, errCSRF):
		return failure{status: http.StatusForbidden, code: "Forbidden", message: "The request did not come from the sign-in page (CSRF token missing or wrong)."}
	case errors.Is(err, idp.ErrConsentRequired):
		return failure{status: http.StatusForbidden, code: "ConsentRequired", message: clientMessage(err)}
	case errors.Is(err, idp.ErrBadTenant):
		return failure{status: http.StatusBadRequest, code: "BadRequest", message: clientMessage(err)}
	case errors.Is(err, idp.ErrNotConfigured), errors.Is(err, errNoRefresh):
		return failure{status: http.StatusNotFound, code: "NotFound", message: clientMessage(err)}
	case errors.Is(err, errRefreshForbidden):
		return failure{status: http.StatusForbidden, code: "UpstreamForbidden", message: "The upstream service refused the refresh for this account."}
	case errors.Is(err, errRefreshFailed):
		return failure{status: http.StatusBadGateway, code: "UpstreamError", message: "The upstream service could not refresh."}
	case errors.Is(err, errRateLimited):
		return failure{status: http.StatusTooManyRequests, code: "TooManyRequests", message: "Too many requests. Retry after the time in Retry-After."}
	case errors.Is(err, tokencache.ErrProviderUnavailable), errors.Is(err, idp.ErrUnavailable):
		return failure{status: http.StatusServiceUnavailable, code: "ProviderUnavailable", message: "The identity provider is unavailable. Retry later.", retry: true}
	case errors.Is(err, tokencache.ErrUnavailable):
		return failure{status: http.StatusServiceUnavailable, code: "StoreUnavailable", message: "The token store is unavailable. Retry later.", retry: true}
	case errors.Is(err, odata.ErrUnknownSource):
		return failure{status: http.StatusNotFound, code: "UnknownSource", message: clientMessage(err)}
	case errors.Is(err, odata.ErrNotFound):
		return failure{status: http.StatusNotFound, code: "NotFound", message: clientMessage(err)}
	case errors.Is(err, odata.ErrBadRequest):
		return failure{status: http.StatusBadRequest, code: "BadRequest", message: clientMessage(err)}
	case errors.Is(err, odata.ErrNotImplemented):
		return failure{status: http.StatusNotImplemented, code: "NotImplemented", message: clientMessage(err)}
	case errors.Is(err, odata.ErrUpstreamUnauthorized):
		return failure{status: http.StatusUnauthorized, code: "UpstreamUnauthorized", message: "The upstream service refused the credentials.", bearer: true}
	case errors.Is(err, odata.ErrUpstreamTimeout):
		return failure{status: http.StatusGatewayTimeout, code: "UpstreamTimeout", message: "The upstream service did not answer in time."}
	case errors.Is(err, odata.ErrUpstreamUnreachable):
		return failure{status: http.StatusBadGateway, code: "UpstreamUnreachable", message: "The upstream service could not be reached."}
	}
	return failure{status: http.StatusInternalServerError, code: "InternalError", message: "Internal error."}
}

// clientMessage is the message of a 4xx error: the wrapped text after the
// sentinel, which callers write for the client by construction.
func clientMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		// "relay: bad request: path escapes the source" → keep the last, client-facing part.
		return msg[i+2:]
	}
	return msg
}

// challenge is the WWW-Authenticate value of a 401 on /odata: Basic for the
// built-in connectors, Bearer for the custom connector. authorizationURI,
// when set, is Entra's sign-in, which makes Power Query offer
// "Organizational account".
func challenge(f failure, authorizationURI string) []string {
	bearer := `Bearer realm="OData Bridge"`
	if authorizationURI != "" {
		bearer = `Bearer authorization_uri="` + authorizationURI + `", realm="OData Bridge"`
	}
	if f.bearer {
		bearer += `, error="invalid_token"`
	}
	return []string{`Basic realm="OData Bridge", charset="UTF-8"`, bearer}
}

// writeODataError renders err in the OData error shape of version, with
// the headers its status needs. It is the relay's and the REST service's
// ErrorHandler as well as the auth middleware's.
func writeODataError(w http.ResponseWriter, version string, err error) {
	writeFeedError(w, version, err, "")
}

// writeFeedError is writeODataError whose Bearer challenge names
// authorizationURI when it is set.
func writeFeedError(w http.ResponseWriter, version string, err error, authorizationURI string) {
	f := classify(err)
	h := w.Header()
	if f.retry {
		h.Set("Retry-After", retryAfterSeconds)
	}
	if f.status == http.StatusUnauthorized {
		for _, c := range challenge(f, authorizationURI) {
			h.Add("WWW-Authenticate", c)
		}
	}
	odata.WriteError(w, version, f.status, f.code, f.message)
}

// oauthError is an RFC 6749 §5.2 error of the token endpoint.
type oauthError struct {
	status      int
	code        string
	description string
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

func invalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

func invalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", desc}
}

// tokenError maps a failure of the token endpoint to its RFC 6749 §5.2 form.
// A store or provider outage is a 503 with Retry-After, so the connector
// retries instead of asking the user to sign in again.
func tokenError(err error) (status int, code, desc string, retry bool) {
	var oe *oauthError
	switch {
	case errors.As(err, &oe):
		return oe.status, oe.code, oe.description, false
	case errors.Is(err, tokencache.ErrNotFound), errors.Is(err, tokencache.ErrUsed):
		return http.StatusBadRequest, "invalid_grant", "the grant is invalid, expired or already used", false
	case errors.Is(err, tokencache.ErrReused):
		return http.StatusBadRequest, "invalid_grant", "the refresh token was already used; the session is revoked", false
	case errors.Is(err, tokencache.ErrSessionEnded):
		return http.StatusBadRequest, "invalid_grant", "the identity provider ended the session", false
	}
	f := classify(err)
	if f.status == http.StatusServiceUnavailable {
		return f.status, "temporarily_unavailable", f.message, true
	}
	return http.StatusInternalServerError, "server_error", "internal error", false
}
