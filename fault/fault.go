// Package fault is the error type of everything a client of the bridge may
// see: what went wrong as a Kind, an error code and a message written for
// the client, next to the cause, which only the logs see.
//
// Packages that answer clients (odata, odata/rest, connector) declare their
// sentinels with Sentinel and attach the client's message at the failure
// with With or Withf; a cause is attached with Because. Nothing reads an
// error's text to find the message: connector/errors.go reads the Error's
// fields and alone maps its Kind to an HTTP status.
package fault

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind is the class of a failure, and so its HTTP status and whether the
// caller may retry.
type Kind uint8

// The kinds of failure. The zero Kind is Internal.
const (
	Internal        Kind = iota // a defect or an unclassified failure; its detail never reaches the client
	BadRequest                  // the request is malformed
	Unauthorized                // no credentials, or credentials that are invalid, expired or revoked
	Forbidden                   // the caller is known and not allowed
	NotFound                    // no such route, source, key or resource
	Conflict                    // the request conflicts with what exists, such as a limit reached
	TooManyRequests             // a rate limit; the caller retries later
	NotImplemented              // valid, but not served by the bridge
	BadGateway                  // an upstream could not be reached or answered nonsense
	Unavailable                 // a dependency (store, identity provider) is down; the caller retries later
	Timeout                     // an upstream did not answer in time
)

// Error is a failure with what the client may see of it.
type Error struct {
	// Kind classifies the failure; zero: Internal.
	Kind Kind
	// Code is the error code of the response body, such as the OData
	// code "UnknownSource" or the OAuth code "invalid_grant"; empty: the
	// renderer's code for the Kind.
	Code string
	// Message is written for the client; empty: the renderer's fixed
	// message for the Kind. It never holds a secret or internal detail.
	Message string
	// Err is the cause, for logs and errors.Is; never shown to a client.
	Err error

	sentinel *Error // the sentinel this error was made from; nil for a sentinel
}

// Sentinel returns a package's sentinel error of kind with its code and
// default client message.
func Sentinel(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// With returns an error of the sentinel's kind and code whose client
// message is message; errors.Is(err, sentinel) holds.
func With(sentinel *Error, message string) *Error {
	return &Error{Kind: sentinel.Kind, Code: sentinel.Code, Message: message, sentinel: sentinel}
}

// Withf is With with a formatted message. Its arguments must be safe for
// the client to read.
func Withf(sentinel *Error, format string, args ...any) *Error {
	return With(sentinel, fmt.Sprintf(format, args...))
}

// Because returns an error of the sentinel's kind, code and message whose
// cause is cause; errors.Is holds for both the sentinel and the cause.
func Because(sentinel *Error, cause error) *Error {
	return &Error{Kind: sentinel.Kind, Code: sentinel.Code, Message: sentinel.Message, Err: cause, sentinel: sentinel}
}

// Error returns the client message followed by the cause, for logs.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "internal error"
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinel and the cause, so errors.Is finds both.
func (e *Error) Unwrap() []error {
	var out []error
	if e.sentinel != nil {
		out = append(out, e.sentinel)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// As returns the outermost *Error in err's chain, or nil.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// statuses is the one table from kinds to HTTP statuses.
var statuses = [...]int{
	Internal:        http.StatusInternalServerError,
	BadRequest:      http.StatusBadRequest,
	Unauthorized:    http.StatusUnauthorized,
	Forbidden:       http.StatusForbidden,
	NotFound:        http.StatusNotFound,
	Conflict:        http.StatusConflict,
	TooManyRequests: http.StatusTooManyRequests,
	NotImplemented:  http.StatusNotImplemented,
	BadGateway:      http.StatusBadGateway,
	Unavailable:     http.StatusServiceUnavailable,
	Timeout:         http.StatusGatewayTimeout,
}

// Status is the HTTP status of the kind; an unknown kind is Internal's.
func (k Kind) Status() int {
	if int(k) < len(statuses) {
		return statuses[k]
	}
	return http.StatusInternalServerError
}

// Retry reports whether the caller should retry later (Retry-After).
func (k Kind) Retry() bool { return k == Unavailable }
