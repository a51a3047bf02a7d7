package tokencache

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

const redacted = "REDACTED"

// Secret is a token, code or key. It prints as REDACTED through fmt (every verb),
// String and log/slog, so it cannot leak into a log line by accident; string(s)
// reveals it where it really has to go out, such as a token response.
type Secret string

// String returns REDACTED.
func (Secret) String() string { return redacted }

// Format prints REDACTED for every verb, %#v and %q included.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue returns REDACTED, whatever the handler.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// GoString returns REDACTED, so %#v of a struct holding a Secret stays safe.
func (Secret) GoString() string { return redacted }

// MarshalText returns REDACTED, so encoding/json (and slog's JSON handler, which does not
// call LogValue on struct fields) never writes the secret: a token response must use
// string(s) on purpose.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Key is one encryption key of the store: the first key of Options.Keys encrypts and
// derives lookup keys, every key decrypts and is tried for lookups, so keys can rotate.
type Key struct {
	ID     string // short name stored in front of every value it encrypts, e.g. "2026a"
	Secret []byte // 32 bytes (AES-256)
}

// String names the key by its ID only.
func (k Key) String() string { return "Key(" + k.ID + ")" }

// Format prints the key by its ID only, for every verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue logs the key by its ID only.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ParseKey parses "ID:BASE64-OF-32-BYTES" (standard or URL base64, padded or not), the
// form of the encryption_keys setting. Its error never echoes any part of s.
func ParseKey(s string) (Key, error) {
	id, b64, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Key{}, errors.New(`encryption key: want "ID:BASE64-OF-32-BYTES"`)
	}
	if err := validKeyID(id); err != nil {
		return Key{}, err
	}
	b64 = strings.TrimRight(b64, "=")
	var secret []byte
	var err error
	if strings.ContainsAny(b64, "-_") {
		secret, err = base64.RawURLEncoding.DecodeString(b64)
	} else {
		secret, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return Key{}, fmt.Errorf("encryption key %q: the part after the colon is not base64", id)
	}
	if len(secret) != 32 {
		return Key{}, fmt.Errorf("encryption key %q: want 32 bytes after base64 decoding, got %d", id, len(secret))
	}
	return Key{ID: id, Secret: secret}, nil
}

// validKeyID accepts 1 to 32 of [A-Za-z0-9._-]. An invalid ID is not echoed: it may be a
// secret pasted in the wrong place.
func validKeyID(id string) error {
	if id == "" || len(id) > 32 {
		return errors.New("encryption key: the ID before the colon must have 1 to 32 characters")
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errors.New("encryption key: the ID before the colon may hold only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}
