// Package demo is the demo world of the bridge: an embedded OpenID Connect
// provider and a K2-like upstream (SmartObject OData v4 and v3 services and a
// Workflow REST API) over the same generated data, all on loopback.
//
// It exists for `bridge demo` and for tests. The serve command never uses it.
//
// The provider is github.com/oauth2-proxy/mockoidc behind a thin front that
// picks the demo user, checks redirect URIs, accepts client_secret_basic and
// reports expires_in in seconds (RFC 6749 §5.1). The upstreams accept only
// access tokens signed by that provider.
package demo
