package odata

import (
	"errors"

	"github.com/odata-bridge/bridge/fault"
)

// Sentinel errors of the relay and of odata/rest. Callers attach a
// client-safe message, fault.With(ErrNotImplemented, "$apply is not
// supported"), or a cause, fault.Because(ErrUpstreamUnreachable, err), and
// connector/errors.go alone maps their kinds to HTTP status codes.
var (
	// ErrUnknownSource means no source has the requested name (404).
	ErrUnknownSource = fault.Sentinel(fault.NotFound, "UnknownSource", "No such source.")
	// ErrNotFound means the source has no such resource (404).
	ErrNotFound = fault.Sentinel(fault.NotFound, "NotFound", "Not found.")
	// ErrBadRequest means the request is malformed: a path escape, a bad query option (400).
	ErrBadRequest = fault.Sentinel(fault.BadRequest, "BadRequest", "Bad request.")
	// ErrNotImplemented means the request is valid OData the bridge does not serve (501).
	ErrNotImplemented = fault.Sentinel(fault.NotImplemented, "NotImplemented", "Not implemented.")
	// ErrUpstreamUnreachable means the upstream could not be reached or answered nonsense (502).
	ErrUpstreamUnreachable = fault.Sentinel(fault.BadGateway, "UpstreamUnreachable", "The upstream service could not be reached.")
	// ErrUpstreamTimeout means the upstream did not send response headers in time (504).
	ErrUpstreamTimeout = fault.Sentinel(fault.Timeout, "UpstreamTimeout", "The upstream service did not answer in time.")
	// ErrUpstreamUnauthorized means the upstream refused the credentials, even after one renewal (401).
	ErrUpstreamUnauthorized = fault.Sentinel(fault.Unauthorized, "UpstreamUnauthorized", "The upstream service refused the credentials.")
)

// ErrConfig means an Upstream given to NewRelay is invalid; the message names the source and the field.
var ErrConfig = errors.New("invalid source")
