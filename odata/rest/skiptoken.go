package rest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

// A $skiptoken is opaque to clients: version byte, row offset and page size
// as uvarints, then the first 16 bytes of HMAC-SHA256 over those bytes and
// the request's query fingerprint, all base64url without padding. Binding
// the fingerprint means a token cannot be replayed against another $filter
// or $orderby, and any edit fails verification.
const skipTokenVersion = 1

const skipTokenMAC = 16

type skipToken struct {
	offset   int
	pageSize int
}

func (s *Service) signSkipToken(t skipToken, fingerprint string) string {
	b := []byte{skipTokenVersion}
	b = binary.AppendUvarint(b, uint64(t.offset))
	b = binary.AppendUvarint(b, uint64(t.pageSize))
	b = append(b, s.mac(b, fingerprint)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Service) mac(payload []byte, fingerprint string) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write(payload)
	m.Write([]byte{0})
	m.Write([]byte(fingerprint))
	return m.Sum(nil)[:skipTokenMAC]
}

var errBadSkipToken = fault.With(odata.ErrBadRequest, "the $skiptoken is invalid or does not belong to this query; follow @odata.nextLink unchanged")

func (s *Service) verifySkipToken(tok, fingerprint string) (skipToken, error) {
	// The decoder skips CR and LF; a token must be exactly what was signed.
	if strings.ContainsAny(tok, "\r\n") {
		return skipToken{}, errBadSkipToken
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 1+skipTokenMAC || b[0] != skipTokenVersion {
		return skipToken{}, errBadSkipToken
	}
	payload, sum := b[:len(b)-skipTokenMAC], b[len(b)-skipTokenMAC:]
	if !hmac.Equal(sum, s.mac(payload, fingerprint)) {
		return skipToken{}, errBadSkipToken
	}
	rest := payload[1:]
	off, n := binary.Uvarint(rest)
	if n <= 0 {
		return skipToken{}, errBadSkipToken
	}
	size, m := binary.Uvarint(rest[n:])
	if m <= 0 || n+m != len(rest) || off > 1<<40 || size == 0 || size > 1<<30 {
		return skipToken{}, errBadSkipToken
	}
	return skipToken{offset: int(off), pageSize: int(size)}, nil
}
