// Package idp is the bridge's side of the identity provider, as its OAuth
// client: OIDC discovery, the authorization-code exchange with PKCE,
// refresh, the verification of every ID token, client-credentials tokens
// for shared service sources, and Entra ID's specifics: the verification of
// organizational-account access tokens against the tenant's key set, the
// on-behalf-of exchange, the tenants a bridge accepts, and admin-consent
// URLs.
//
// It serves no HTTP route; package connector does, and maps the sentinel
// errors below to statuses.
package idp

import (
	"errors"

	"github.com/odata-bridge/bridge/fault"
)

// Sentinel errors of the identity provider; callers test them with errors.Is.
// Those a client may see are faults, with the message written for it.
var (
	// ErrUnavailable means the identity provider could not be reached or
	// answered with a server error.
	ErrUnavailable = fault.Sentinel(fault.Unavailable, "ProviderUnavailable", "The identity provider is unavailable. Retry later.")
	// ErrRefused means the provider refused a code or grant (a 4xx answer).
	ErrRefused = errors.New("identity provider refused the grant")
	// ErrIDToken means the provider's ID token failed verification.
	ErrIDToken = errors.New("identity provider returned an invalid ID token")
	// ErrInvalidToken means an Entra access token sent to the bridge failed
	// verification, or Entra refused it in the on-behalf-of exchange.
	ErrInvalidToken = fault.Sentinel(fault.Unauthorized, "InvalidToken", "The credentials are invalid, expired or revoked. Sign in again.")
	// ErrBadTenant means a tenant is not a tenant ID (GUID) or domain name,
	// or not one this bridge accepts.
	ErrBadTenant = fault.Sentinel(fault.BadRequest, "BadRequest", "Bad tenant.")
	// ErrNotConfigured means Entra ID is not configured for what was asked.
	ErrNotConfigured = fault.Sentinel(fault.NotFound, "NotFound", "Entra ID is not configured.")
	// ErrConsentRequired means the tenant has not consented to the bridge.
	ErrConsentRequired = fault.Sentinel(fault.Forbidden, "ConsentRequired", "Consent required.")
	// ErrOBORefused means Entra refused the bridge's on-behalf-of request
	// itself (its client ID, secret or permissions).
	ErrOBORefused = errors.New("the identity provider refused the on-behalf-of exchange")
)
