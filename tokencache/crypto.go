package tokencache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"sync/atomic"
)

// Value format: version byte, key-ID length, key ID, 12-byte nonce, AES-256-GCM sealed
// text. The additional data binds the Redis key (and the subject where the reader knows
// it), so a value copied under another key fails to open.
//
// The version byte is the store format (format.go) that introduced the value's layout:
// valueV1 is what formats 1 and 2 write; valueV3, format 3's, also binds the version
// itself in the additional data, so a value cannot be passed off as another version.
// open reads both; seal writes the one the keyring is told to (keyring.write), which
// the store lowers to valueV1 while a release that reads only that may be running.
const (
	valueV1 byte = 1
	valueV3 byte = 3
)

// sealVersion is the version of values sealed before formats were negotiated.
const sealVersion = valueV1

// errCorrupt means a stored value could not be opened: corrupted, moved to another key,
// or sealed with a key that is no longer configured. Callers treat it as ErrNotFound.
var errCorrupt = errors.New("stored value does not decrypt")

// keyring holds the configured keys; keys[0] seals and names new lookups.
type keyring struct {
	keys  []ringKey
	byID  map[string]*ringKey
	write atomic.Uint32 // the value version seal writes: valueV1 or valueV3
}

type ringKey struct {
	id   string
	aead cipher.AEAD
	macs sync.Pool // of hash.Hash: HMAC-SHA256 under the key's lookup key
}

func newKeyring(keys []Key) (*keyring, error) {
	r := &keyring{keys: make([]ringKey, len(keys)), byID: make(map[string]*ringKey, len(keys))}
	r.write.Store(uint32(valueV1))
	for i, k := range keys {
		if err := validKeyID(k.ID); err != nil {
			return nil, err
		}
		if len(k.Secret) != 32 {
			return nil, fmt.Errorf("encryption key %q: want 32 bytes, got %d", k.ID, len(k.Secret))
		}
		if _, dup := r.byID[k.ID]; dup {
			return nil, fmt.Errorf("encryption key %q: the ID is used twice", k.ID)
		}
		// Separate keys for sealing and for lookups, derived from the configured secret.
		block, err := aes.NewCipher(derive(k.Secret, "odata-bridge tokencache seal v1"))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		macKey := derive(k.Secret, "odata-bridge tokencache lookup v1")
		rk := &r.keys[i]
		rk.id, rk.aead = k.ID, aead
		rk.macs.New = func() any { return hmac.New(sha256.New, macKey) }
		r.byID[k.ID] = rk
	}
	return r, nil
}

func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// lookupLen is the length of the truncated HMAC in a lookup key: 128 bits.
const lookupLen = 16

// name returns prefix + base64url(HMAC(lookup key of keys[i], input)), the Redis key under
// which something found by the opaque input lives. Redis never sees the input itself.
func (r *keyring) name(i int, prefix, input string) string {
	k := &r.keys[i]
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(input))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	k.macs.Put(m)
	b := make([]byte, len(prefix)+base64.RawURLEncoding.EncodedLen(lookupLen))
	copy(b, prefix)
	base64.RawURLEncoding.Encode(b[len(prefix):], sum[:lookupLen])
	return string(b)
}

// names returns the lookup key under every configured key, newest first: entries written
// before a rotation are still found.
func (r *keyring) names(prefix, input string) []string {
	out := make([]string, len(r.keys))
	for i := range r.keys {
		out[i] = r.name(i, prefix, input)
	}
	return out
}

// aad binds a value to its Redis key and, where the reader knows it, its subject; from
// valueV3 on, to its version too.
func aad(version byte, key, subject string) []byte {
	b := make([]byte, 0, 16+len(key)+len(subject))
	if version == valueV1 {
		b = append(b, "tokencache/v1\x00"...)
	} else {
		b = append(b, "tokencache/v"...)
		b = strconv.AppendUint(b, uint64(version), 10)
		b = append(b, 0)
	}
	b = append(b, key...)
	b = append(b, 0)
	return append(b, subject...)
}

// seal encrypts plain with the newest key and a random nonce, bound to the Redis key
// and subject.
func (r *keyring) seal(plain []byte, key, subject string) []byte {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return r.sealNonce(plain, key, subject, nonce)
}

func (r *keyring) sealNonce(plain []byte, key, subject string, nonce [12]byte) []byte {
	v := r.version()
	return r.keys[0].seal(v, plain, aad(v, key, subject), nonce)
}

// version is the value version seal writes now.
func (r *keyring) version() byte { return byte(r.write.Load()) }

// sealFixed encrypts plain with keys[i] and a nonce derived, as in SIV modes, from that
// key, the additional data and plain: equal inputs seal to equal bytes, so a sealed
// value can be found again by what it holds (a member of a sorted set is removed by its
// bytes). It reveals that two such values are equal and nothing else; two different inputs
// share a nonce only by a 96-bit collision. The length prefix keeps the additional data and plain apart.
//
// v is the value version; the same input sealed as another version gives other bytes, so
// a caller that removes a member by its bytes removes it in every version it reads.
func (r *keyring) sealFixed(i int, v byte, plain []byte, key, subject string) []byte {
	k := &r.keys[i]
	ad := aad(v, key, subject)
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte("tokencache fixed nonce v1\x00"))
	var n [binary.MaxVarintLen64]byte
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(ad)))])
	m.Write(ad)
	m.Write(plain)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	k.macs.Put(m)
	return k.seal(v, plain, ad, [12]byte(sum[:12]))
}

func (k *ringKey) seal(v byte, plain, ad []byte, nonce [12]byte) []byte {
	out := make([]byte, 0, 2+len(k.id)+12+len(plain)+16)
	out = append(out, v, byte(len(k.id)))
	out = append(out, k.id...)
	out = append(out, nonce[:]...)
	return k.aead.Seal(out, nonce[:], plain, ad)
}

// open decrypts a value sealed by seal under any configured key. It never returns data
// on failure.
func (r *keyring) open(sealed []byte, key, subject string) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != valueV1 && sealed[0] != valueV3 {
		return nil, errCorrupt
	}
	n := int(sealed[1])
	if len(sealed) < 2+n+12+16 {
		return nil, errCorrupt
	}
	k := r.byID[string(sealed[2:2+n])]
	if k == nil {
		return nil, errCorrupt
	}
	nonce := sealed[2+n : 2+n+12]
	plain, err := k.aead.Open(nil, nonce, sealed[2+n+12:], aad(sealed[0], key, subject))
	if err != nil {
		return nil, errCorrupt
	}
	return plain, nil
}

// random returns n random bytes as unpadded base64url.
func random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
