package connector

import (
	"errors"
	"net/http"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// This file decides what a client sees of every error: its fault (kind,
// code and message), read from the error's fields, never from its text.
// fault.Kind.Status is the one table from kinds to HTTP statuses.

// retryAfterSeconds is what a caller is told to wait after a 503.
const retryAfterSeconds = "10"

// Authentication failures of the /odata and /api routes.
var (
	errNoCredentials  = fault.Sentinel(fault.Unauthorized, "Unauthorized", "Sign in: use a bridge token (Bearer) or a feed key (Basic).")
	errBadCredentials = fault.Sentinel(fault.Unauthorized, "InvalidToken", "The credentials are invalid, expired or revoked. Sign in again.")
	errSessionEnded   = fault.Sentinel(fault.Unauthorized, "SessionEnded", "The identity provider ended the session. Sign in again.")
	errRateLimited    = fault.Sentinel(fault.TooManyRequests, "TooManyRequests", "Too many requests. Retry after the time in Retry-After.")
	errCSRF           = fault.Sentinel(fault.Forbidden, "Forbidden", "The request did not come from the sign-in page (CSRF token missing or wrong).")
	errProviderDown   = fault.Sentinel(fault.Unavailable, "ProviderUnavailable", "The identity provider is unavailable. Retry later.")
	errStoreDown      = fault.Sentinel(fault.Unavailable, "StoreUnavailable", "The token store is unavailable. Retry later.")
	errInternal       = fault.Sentinel(fault.Internal, "InternalError", "Internal error.")
	errNoSuchFeedKey  = fault.Sentinel(fault.NotFound, "NotFound", "No feed key of yours has this ID.")
	errKeyLimit       = fault.Sentinel(fault.Conflict, "Conflict", "The feed-key limit is reached.")
)

// foreign gives the sentinels of the packages that do not speak fault (the
// token cache, the identity provider) what a client sees of them. The
// first match wins.
var foreign = []struct {
	err error
	is  *fault.Error
}{
	{tokencache.ErrNotFound, errBadCredentials},
	{tokencache.ErrReused, errBadCredentials},
	{tokencache.ErrSessionEnded, errSessionEnded},
	{tokencache.ErrProviderUnavailable, errProviderDown},
	{tokencache.ErrUnavailable, errStoreDown},
}

// failure is how an error is shown to a client.
type failure struct {
	status  int
	code    string // the OData error code
	message string // safe for the client
	retry   bool   // send Retry-After
	bearer  bool   // send a Bearer invalid_token challenge
}

// classify finds what the client may see of err: its outermost fault, or
// the fault of a foreign sentinel it wraps. Anything else is an internal
// error whose detail never reaches the client.
func classify(err error) failure {
	fe := fault.As(err)
	if fe == nil {
		fe = errInternal
		for _, f := range foreign {
			if errors.Is(err, f.err) {
				fe = f.is
				break
			}
		}
	}
	if fe.Kind == fault.Internal {
		fe = errInternal
	}
	return failure{
		status:  fe.Kind.Status(),
		code:    fe.Code,
		message: fe.Message,
		retry:   fe.Kind.Retry(),
		// A missing credential is asked for; a refused one is named invalid.
		bearer: fe.Kind == fault.Unauthorized && !errors.Is(err, errNoCredentials),
	}
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

// The RFC 6749 §5.2 errors of the token endpoint; their Code is the OAuth
// error code and their Message the error_description.
func invalidRequest(desc string) *fault.Error {
	return &fault.Error{Kind: fault.BadRequest, Code: "invalid_request", Message: desc}
}

func invalidGrant(desc string) *fault.Error {
	return &fault.Error{Kind: fault.BadRequest, Code: "invalid_grant", Message: desc}
}

func invalidClient(desc string) *fault.Error {
	return &fault.Error{Kind: fault.Unauthorized, Code: "invalid_client", Message: desc}
}

func unsupportedGrantType(desc string) *fault.Error {
	return &fault.Error{Kind: fault.BadRequest, Code: "unsupported_grant_type", Message: desc}
}

// oauthCodes are the RFC 6749 §5.2 codes the token endpoint sends.
var oauthCodes = map[string]bool{"invalid_request": true, "invalid_grant": true, "invalid_client": true, "unsupported_grant_type": true}

// tokenError maps a failure of the token endpoint to its RFC 6749 §5.2 form.
// A store or provider outage is a 503 with Retry-After, so the connector
// retries instead of asking the user to sign in again.
func tokenError(err error) (status int, code, desc string, retry bool) {
	if fe := fault.As(err); fe != nil && oauthCodes[fe.Code] {
		return fe.Kind.Status(), fe.Code, fe.Message, false
	}
	switch {
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
