package tokencache

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// The records below are encoded in a small versioned binary form before sealing: Redis
// memory per session is a budget (docs/design.md, Performance targets: < 2 KiB for a typical Entra token set), and
// JSON field names, escapes and base64 text would spend much of it.

// sessionRecord is what bridge:{sid}:session holds.
type sessionRecord struct {
	Subject, Name, Email      string
	AccessToken, RefreshToken string
	Expiry                    time.Time // of the provider access token
	CreatedAt, LastUsed       time.Time
	Families                  []string // IDs of the bridge refresh-token families
	Keys                      []string // IDs of the feed keys
}

// familyRecord is what bridge:{sid}:fam:<id> holds: the state of one bridge
// refresh-token family. Tokens are derived from Secret, so none is stored.
type familyRecord struct {
	Secret    []byte
	Gen       uint64    // generation of the one refresh token that may rotate now
	RotatedAt time.Time // when Gen-1 was rotated into Gen; starts the grace window
}

// pointer is what a lookup key (bridge:at:, bridge:rt:, bridge:fk:) holds.
type pointer struct {
	SID     string
	ID      string    // family or feed-key ID
	Subject string    // feed keys: binds the key record to its subject
	Expires time.Time // access tokens; zero: the backend TTL alone
}

// keyRecord is what bridge:{sid}:key:<id> holds.
type keyRecord struct {
	Name                string
	CreatedAt, LastUsed time.Time
}

// indexRecord is what bridge:sub:<hmac(subject)> holds: the subject index as versions
// before the sorted set (index.go) wrote it. It is still read, never written.
type indexRecord struct{ SIDs []string }

// indexEntry is one member of the subject index bridge:idx:<hmac(subject)>, before
// sealing: a session ID, stored as the 16 bytes it encodes.
type indexEntry struct{ SID string }

// onceRecord is what bridge:once:{<hmac>} holds.
type onceRecord struct {
	Expires time.Time
	Value   []byte
}

const (
	tagSession byte = 's'
	tagFamily  byte = 'f'
	tagPointer byte = 'p'
	tagKey     byte = 'k'
	tagIndex   byte = 'i'
	tagOnce    byte = 'o'
	tagEntry   byte = 'e'
)

var errDecode = errors.New("malformed record")

func (r *sessionRecord) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 64+len(r.AccessToken)+len(r.RefreshToken))}
	w.b = append(w.b, tagSession)
	w.str(r.Subject)
	w.str(r.Name)
	w.str(r.Email)
	w.token(r.AccessToken)
	w.token(r.RefreshToken)
	w.secs(r.Expiry)
	w.secs(r.CreatedAt)
	w.secs(r.LastUsed)
	w.strs(r.Families)
	w.strs(r.Keys)
	return w.b
}

func (r *sessionRecord) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagSession)
	r.Subject, r.Name, r.Email = d.str(), d.str(), d.str()
	r.AccessToken, r.RefreshToken = d.token(), d.token()
	r.Expiry, r.CreatedAt, r.LastUsed = d.secs(), d.secs(), d.secs()
	r.Families, r.Keys = d.strs(), d.strs()
	return d.done()
}

func (r *familyRecord) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 64)}
	w.b = append(w.b, tagFamily)
	w.bytes(r.Secret)
	w.uvarint(r.Gen)
	w.time(r.RotatedAt)
	return w.b
}

func (r *familyRecord) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagFamily)
	r.Secret = d.bytes()
	r.Gen = d.uvarint()
	r.RotatedAt = d.time()
	if d.err == nil && len(r.Secret) != familySecretLen {
		return errDecode
	}
	return d.done()
}

func (r *pointer) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 16+len(r.SID)+len(r.ID)+len(r.Subject))}
	w.b = append(w.b, tagPointer)
	w.str(r.SID)
	w.str(r.ID)
	w.str(r.Subject)
	w.time(r.Expires)
	return w.b
}

func (r *pointer) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagPointer)
	r.SID, r.ID, r.Subject = d.str(), d.str(), d.str()
	r.Expires = d.time()
	return d.done()
}

func (r *keyRecord) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 32+len(r.Name))}
	w.b = append(w.b, tagKey)
	w.str(r.Name)
	w.time(r.CreatedAt)
	w.time(r.LastUsed)
	return w.b
}

func (r *keyRecord) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagKey)
	r.Name = d.str()
	r.CreatedAt, r.LastUsed = d.time(), d.time()
	return d.done()
}

func (r *indexRecord) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 8+24*len(r.SIDs))}
	w.b = append(w.b, tagIndex)
	w.strs(r.SIDs)
	return w.b
}

func (r *indexRecord) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagIndex)
	r.SIDs = d.strs()
	return d.done()
}

func (r *indexEntry) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 3+len(r.SID))}
	w.b = append(w.b, tagEntry)
	// Every session ID is canonical base64url of 16 bytes; the string form only keeps
	// the encoding total.
	if raw, ok := canonicalBase64URL(r.SID); ok && len(raw) == 16 {
		w.b = append(w.b, 1)
		w.b = append(w.b, raw...)
		return w.b
	}
	w.b = append(w.b, 0)
	w.str(r.SID)
	return w.b
}

func (r *indexEntry) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagEntry)
	if d.err != nil || len(d.b) == 0 {
		return errDecode
	}
	kind := d.b[0]
	d.b = d.b[1:]
	switch {
	case kind == 0:
		r.SID = d.str()
	case kind == 1 && len(d.b) == 16:
		r.SID = base64.RawURLEncoding.EncodeToString(d.b)
		d.b = nil
	default:
		return errDecode
	}
	return d.done()
}

func (r *onceRecord) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 16+len(r.Value))}
	w.b = append(w.b, tagOnce)
	w.time(r.Expires)
	w.bytes(r.Value)
	return w.b
}

func (r *onceRecord) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagOnce)
	r.Expires = d.time()
	r.Value = d.bytes()
	return d.done()
}

type wbuf struct{ b []byte }

func (w *wbuf) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *wbuf) bytes(p []byte)   { w.uvarint(uint64(len(p))); w.b = append(w.b, p...) }
func (w *wbuf) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }

func (w *wbuf) strs(ss []string) {
	w.uvarint(uint64(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

func (w *wbuf) time(t time.Time) {
	if t.IsZero() {
		w.b = binary.AppendVarint(w.b, 0)
		return
	}
	w.b = binary.AppendVarint(w.b, t.UnixNano())
}

// secs stores a time to the second: the session's times need no more, and every byte
// of the session record counts.
func (w *wbuf) secs(t time.Time) {
	if t.IsZero() {
		w.b = binary.AppendVarint(w.b, 0)
		return
	}
	w.b = binary.AppendVarint(w.b, t.Unix())
}

// token stores a provider token compactly: a JWT or any dotted token is split at its
// dots, and every part that is canonical base64url is stored as the bytes it encodes,
// which saves a quarter of its length; a part that encodes JSON (a JWT header or payload)
// is deflated too. Decoding gives back the same string byte for byte.
func (w *wbuf) token(s string) {
	parts := strings.Split(s, ".")
	w.uvarint(uint64(len(parts)))
	for _, p := range parts {
		if raw, ok := canonicalBase64URL(p); ok {
			if len(raw) > 0 && raw[0] == '{' {
				if z := deflateJSON(raw); len(z) < len(raw) {
					w.b = append(w.b, 2)
					w.bytes(z)
					continue
				}
			}
			w.b = append(w.b, 1)
			w.bytes(raw)
			continue
		}
		w.b = append(w.b, 0)
		w.str(p)
	}
}

func canonicalBase64URL(s string) ([]byte, bool) {
	if len(s) < 8 || strings.ContainsAny(s, "\r\n") { // the decoder skips newlines
		return nil, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, false
	}
	return raw, true
}

type rbuf struct {
	b   []byte
	err error
}

func (d *rbuf) fail() { d.err = errDecode; d.b = nil }

func (d *rbuf) tag(want byte) {
	if len(d.b) == 0 || d.b[0] != want {
		d.fail()
		return
	}
	d.b = d.b[1:]
}

func (d *rbuf) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *rbuf) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *rbuf) str() string { return string(d.bytes()) }

func (d *rbuf) strs() []string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) { // every string takes at least one byte
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *rbuf) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *rbuf) secs() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(v, 0).UTC()
}

func (d *rbuf) token() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	var out []byte
	for i := uint64(0); i < n && d.err == nil; i++ {
		if i > 0 {
			out = append(out, '.')
		}
		if len(d.b) == 0 {
			d.fail()
			break
		}
		kind := d.b[0]
		d.b = d.b[1:]
		switch kind {
		case 0:
			out = append(out, d.bytes()...)
		case 1, 2:
			raw := d.bytes()
			if kind == 2 && d.err == nil {
				var ok bool
				if raw, ok = inflateJSON(raw); !ok {
					d.fail()
					break
				}
			}
			if out == nil {
				out = make([]byte, 0, 2*len(d.b)) // room for the whole token in one go
			}
			out = base64.RawURLEncoding.AppendEncode(out, raw)
		default:
			d.fail()
		}
	}
	if d.err != nil {
		return ""
	}
	return string(out)
}

func (d *rbuf) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errDecode
	}
	return d.err
}
