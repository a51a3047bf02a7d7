package tokencache

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fuzzRing is the fixed key the fuzz seeds are sealed with.
func fuzzRing(t testing.TB) *keyring {
	r, err := newKeyring([]Key{sharedKey, {ID: "old", Secret: bytes.Repeat([]byte{7}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sampleRecords() []interface{ marshal() []byte } {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return []interface{ marshal() []byte }{
		&sessionRecord{Subject: "sub", Name: "Ada", Email: "ada@example.com",
			AccessToken: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlc2lnbmF0dXJl", RefreshToken: "0.AXoA" + strings.Repeat("Qk", 40),
			Expiry: t0, CreatedAt: t0, LastUsed: t0, Families: []string{"fam"}, Keys: []string{"k1", "k2"}},
		&familyRecord{Secret: bytes.Repeat([]byte{1}, familySecretLen), Gen: 3, RotatedAt: t0},
		&pointer{SID: "sid", ID: "id", Subject: "sub", Expires: t0},
		&keyRecord{Name: "Excel", CreatedAt: t0, LastUsed: t0},
		&indexRecord{SIDs: []string{"a", "b"}},
		&indexEntry{SID: "AAECAwQFBgcICQoLDA0ODw"},
		&indexEntry{SID: "not-canonical"},
		&onceRecord{Expires: t0, Value: []byte("value")},
	}
}

// The decrypt path never panics and never returns data for anything but an untouched
// sealed value: corrupted, truncated, extended or re-keyed ciphertexts all fail.
func FuzzOpen(f *testing.F) {
	ring := fuzzRing(f)
	var seeds [][]byte
	for i, rec := range sampleRecords() {
		// Fixed nonces: the fuzzing workers rebuild the same seeds.
		seeds = append(seeds, ring.sealNonce(rec.marshal(), "bridge:{sid}:session", "", [12]byte{byte(i)}))
	}
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)-1])
		flipped := bytes.Clone(s)
		flipped[len(flipped)/2] ^= 0x80
		f.Add(flipped)
	}
	f.Add([]byte{})
	f.Add([]byte{sealVersion, 2, 'k', '1'})
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := ring.open(data, "bridge:{sid}:session", "")
		if err != nil {
			if plain != nil {
				t.Fatalf("open failed but returned %d bytes", len(plain))
			}
			return
		}
		for _, s := range seeds {
			if bytes.Equal(s, data) {
				return
			}
		}
		t.Fatalf("open accepted a value that was never sealed: %x", data)
	})
}

// Every record decoder survives arbitrary bytes, and what it accepts encodes back to
// something it decodes to the same record.
func FuzzRecords(f *testing.F) {
	for _, rec := range sampleRecords() {
		f.Add(rec.marshal())
	}
	f.Add([]byte{tagSession, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs := []interface {
			marshal() []byte
			unmarshal([]byte) error
		}{&sessionRecord{}, &familyRecord{}, &pointer{}, &keyRecord{}, &indexRecord{}, &indexEntry{}, &onceRecord{}}
		for _, rec := range recs {
			if rec.unmarshal(data) != nil {
				continue
			}
			again := rec.marshal()
			if err := rec.unmarshal(again); err != nil {
				t.Fatalf("%T: re-encoding does not decode: %v", rec, err)
			}
			if !bytes.Equal(again, rec.marshal()) {
				t.Fatalf("%T: encoding is not stable", rec)
			}
		}
	})
}

// The compact token form gives back every string byte for byte.
func FuzzTokenCodec(f *testing.F) {
	for _, s := range []string{"", ".", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl",
		"0.AXoA" + strings.Repeat("Qk-_", 30), "AAAAAAAB", "AAAAAAA\n", "AAAAAAA=", "ÿ\x00.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w := wbuf{}
		w.token(s)
		d := rbuf{b: w.b}
		if got := d.token(); got != s || d.done() != nil {
			t.Fatalf("round trip of %q gave %q (%v)", s, got, d.err)
		}
	})
}

// ParseKey never panics and never echoes what it was given.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"2026a:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "k:" + strings.Repeat("A", 43),
		"SECRETSECRETSECRET", "k:SECRET-not-base64!", ":abc", "{x}:MDEy"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err == nil {
			if len(k.Secret) != 32 {
				t.Fatalf("accepted a %d-byte key", len(k.Secret))
			}
			return
		}
		id, after, ok := strings.Cut(strings.TrimSpace(s), ":")
		// The messages' own words (e.g. "base64 decoding") are no leak.
		const words = `encryption key: want "ID:BASE64-OF-32-BYTES" the part after the colon is not base64 want 32 bytes after base64 decoding, got`
		if ok && len(after) >= 4 && strings.Contains(err.Error(), after) && !strings.Contains(id, after) && !strings.Contains(words, after) {
			t.Fatalf("the error echoes the secret part: %v", err)
		}
	})
}

// Refresh-token parsing never panics and accepts only the exact shape.
func FuzzParseRefreshToken(f *testing.F) {
	_, rt := familyTokens(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16), 7)
	for _, s := range []string{rt, rt[:len(rt)-1], "obr_", "oba_" + rt[4:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		handle, _, tag, ok := parseRefreshToken(s)
		if ok && (len(handle) != 16 || len(tag) != 16 || len(s) != refreshTokenLen) {
			t.Fatalf("accepted a malformed token %q", s)
		}
	})
}
