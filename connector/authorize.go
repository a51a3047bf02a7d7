package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

// AuthMode is how a source's upstream calls are authorized.
type AuthMode string

// The auth modes of a source.
const (
	// AuthUser sends the caller's own provider access token.
	AuthUser AuthMode = "user"
	// AuthClientCredentials sends one service token for every caller; every
	// caller still signs in to the bridge.
	AuthClientCredentials AuthMode = "client-credentials"
	// AuthBasicPassthrough forwards the caller's Basic credentials unchanged;
	// the bridge keeps nothing.
	AuthBasicPassthrough AuthMode = "basic-passthrough"
	// AuthNone sends no credentials upstream; every caller still signs in to
	// the bridge.
	AuthNone AuthMode = "none"
)

// errBasicRequired answers a basic-passthrough source's caller who sent no
// Basic credentials.
var errBasicRequired = fault.Sentinel(fault.Unauthorized, "Unauthorized", "Send the upstream account's user name and password (Basic).")

// caller is who sent a request that goes upstream.
type caller struct {
	cred credential // what the caller presented to the bridge; zero for basic-passthrough
	user string     // the session ID, or "entra:…" for an organizational account; "" for basic-passthrough
}

// cacheKey is the caller as the feeds key what they keep per caller (the relay's
// repeats, pages read ahead and $metadata, the REST service's rows): the session, or
// for a feed key the session and a hash of the key, so that revoking one key or one
// session drops exactly its own entries and no raw key sits in a map. "" keeps nothing.
func (c caller) cacheKey() string {
	if c.user == "" {
		return ""
	}
	if c.cred.kind == "key" {
		h := sha256.Sum256([]byte(c.cred.value))
		return c.user + keyCallerSep + hex.EncodeToString(h[:16])
	}
	return c.user
}

// keyCallerSep joins a session and a feed key's hash in a cacheKey.
const keyCallerSep = "/key:"

// forgetter is a Feed that keeps responses per caller (by the user of ServeFeed), and
// drops them when the caller is revoked.
type forgetter interface {
	Forget(match func(user string) bool)
}

var _ forgetter = (*odata.Feed)(nil)

// forget drops what every feed keeps for the callers match accepts. The requests of a
// revoked caller fail authorization before any feed is asked; this frees the memory.
func (s *Server) forget(match func(user string) bool) {
	for _, src := range s.sources {
		if f, ok := src.Feed.(forgetter); ok {
			f.Forget(match)
		}
	}
}

// forgetSession drops what feeds keep for a session and for its feed keys.
func (s *Server) forgetSession(sid string) {
	if sid == "" {
		return
	}
	s.forget(func(user string) bool { return user == sid || strings.HasPrefix(user, sid+keyCallerSep) })
}

// forgetFeedKeys drops what feeds keep for callers with a feed key. A key is revoked by
// its ID, which names no cache entry (they are keyed by the key's hash), so the
// entries of every feed key on this replica go: they cost one more upstream request
// each, never an answer to the wrong caller.
func (s *Server) forgetFeedKeys() {
	s.forget(func(user string) bool { return strings.Contains(user, keyCallerSep) })
}

// authorizeUpstream is the one authorization decision of every route that calls an
// upstream: given a request for src, it says who the caller is and how the
// upstream call is authorized. Only credentials in headers (and the feed
// key parameter) count, never the page's cookie. A nil Authorizer sends no
// credentials upstream (auth none).
func (s *Server) authorizeUpstream(ctx context.Context, r *http.Request, src *Source) (caller, odata.Authorizer, error) {
	if src.Auth == AuthBasicPassthrough {
		h := r.Header.Get("Authorization")
		if !strings.HasPrefix(strings.ToLower(h), "basic ") {
			return caller{}, nil, errBasicRequired
		}
		return caller{}, basicAuthorizer{header: h}, nil
	}
	cr, err := s.callerCredential(r)
	if err != nil {
		return caller{}, nil, err
	}
	user, auth, err := s.feedCaller(ctx, cr, src)
	if err != nil {
		return caller{}, nil, err
	}
	who := caller{cred: cr, user: user}
	switch {
	case auth != nil:
		// An organizational account, exchanged on-behalf-of.
		return who, auth, nil
	case src.Auth == AuthUser:
		return who, &sessionAuthorizer{store: s.opts.Store, sid: user, source: src.Name, aud: src.Audience}, nil
	case src.Auth == AuthClientCredentials:
		return who, serviceAuthorizer{src.Service}, nil
	}
	return who, nil, nil
}

// writeAuthError renders a failed authorization of a call to src in the
// OData error shape of version, with the challenge the caller needs.
func (s *Server) writeAuthError(w http.ResponseWriter, version string, err error) {
	if errors.Is(err, errBasicRequired) {
		// The upstream's own accounts: only the Basic challenge makes sense.
		w.Header().Set("WWW-Authenticate", `Basic realm="OData Bridge", charset="UTF-8"`)
		f := classify(err)
		odata.WriteError(w, version, f.status, f.code, f.message)
		return
	}
	writeFeedError(w, version, err, s.authorizationURI())
}
