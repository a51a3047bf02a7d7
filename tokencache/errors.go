package tokencache

import "errors"

// Sentinel errors of the token cache. connector/errors.go alone maps them to HTTP
// status codes; their text never contains a token, code, key or secret.
var (
	// ErrNotFound means an unknown, expired or revoked token, key, session or one-time value.
	ErrNotFound = errors.New("not found")
	// ErrUsed means TakeOnce was given a handle that was already taken. TakeOnce returns it
	// together with the first taker's value, so the caller can undo what the first use issued.
	ErrUsed = errors.New("already used")
	// ErrReused means Rotate was given an already-used refresh token outside the grace
	// window; the whole token family and its session are now revoked.
	ErrReused = errors.New("refresh token reused")
	// ErrSessionEnded means the identity provider answered invalid_grant; the session is gone
	// and the user has to sign in again.
	ErrSessionEnded = errors.New("session ended by the identity provider")
	// ErrProviderUnavailable means the identity provider failed (5xx, timeout, refused
	// connection, or any answer other than invalid_grant); the session is kept.
	ErrProviderUnavailable = errors.New("identity provider unavailable")
	// ErrUnavailable means the store (Redis) cannot be reached or failed.
	ErrUnavailable = errors.New("token store unavailable")
)
