package odata

import "errors"

// Sentinel errors of the relay and of odata/rest. Callers wrap them with a
// client-safe message, fmt.Errorf("%w: $apply is not supported", ErrNotImplemented),
// and connector/errors.go alone maps them to HTTP status codes.
var (
	// ErrUnknownSource means no source has the requested name (404).
	ErrUnknownSource = errors.New("unknown source")
	// ErrNotFound means the source has no such resource (404).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest means the request is malformed: a path escape, a bad query option (400).
	ErrBadRequest = errors.New("bad request")
	// ErrNotImplemented means the request is valid OData the bridge does not serve (501).
	ErrNotImplemented = errors.New("not implemented")
	// ErrUpstreamUnreachable means the upstream could not be reached or answered nonsense (502).
	ErrUpstreamUnreachable = errors.New("upstream unreachable")
	// ErrUpstreamTimeout means the upstream did not send response headers in time (504).
	ErrUpstreamTimeout = errors.New("upstream timeout")
	// ErrUpstreamUnauthorized means the upstream refused the credentials, even after one renewal (401).
	ErrUpstreamUnauthorized = errors.New("upstream refused the credentials")
)

// ErrConfig means a Source given to NewRelay is invalid; the message names the source and the field.
var ErrConfig = errors.New("invalid source")
