package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// Bounds of keySet's fetches: a token naming a key the set does not hold
// fetches it again at most once per keyRefreshMin; a set older than
// keyRefreshMax is fetched again at the next use.
const (
	keyRefreshMin = time.Minute
	keyRefreshMax = 24 * time.Hour
)

// keySet is the tenant's JSON Web Key Set for the organizational-account
// path, where anyone may send the bridge a JWT. go-oidc's RemoteKeySet
// fetches the set again for every token whose key ID it does not know, so a
// stream of tokens with made-up key IDs would be a stream of requests to
// Entra ID; here an unknown key ID refetches at most once a minute. Entra
// publishes a new signing key well before it signs with it.
//
// fetch (through ensure) is the only network I/O; VerifySignature, the
// oidc.KeySet method, uses the keys held.
type keySet struct {
	uri    string
	client *http.Client
	now    func() time.Time
	flight singleflight.Group

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // zero: never
}

// errUnknownKey is a token signed with a key the set does not hold.
var errUnknownKey = errors.New("the token's signing key is not in the tenant's key set")

func parseJWS(raw string) (*jose.JSONWebSignature, string, error) {
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, "", fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", errors.New("malformed token: not one signature")
	}
	return jws, jws.Signatures[0].Header.KeyID, nil
}

// ensure fetches the set when the token raw names a key it does not hold
// and the last fetch is a minute old, or when the set is a day old. A token
// that does not parse needs no keys; the verifier refuses it. A failed
// fetch is ErrUnavailable while no keys are held.
func (k *keySet) ensure(ctx context.Context, raw string) error {
	_, kid, err := parseJWS(raw)
	if err != nil {
		return nil
	}
	k.mu.Lock()
	age := k.now().Sub(k.fetched)
	known, have := false, len(k.keys) > 0
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			known = true
		}
	}
	k.mu.Unlock()
	switch {
	case !have || age >= keyRefreshMax:
	case !known && age >= keyRefreshMin:
	default:
		return nil
	}
	_, err, _ = k.flight.Do("", func() (any, error) { return nil, k.fetch(context.WithoutCancel(ctx)) })
	if err != nil && !have {
		return err
	}
	return nil // with keys held, a failed refresh leaves them in use
}

func (k *keySet) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, k.client, "entra keys", k.uri, &set); err != nil {
		return err
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Valid() && key.IsPublic() && (key.Use == "" || key.Use == "sig") {
			keys = append(keys, key)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// An empty set is an answer too: it ends the keys Entra no longer lists,
	// and the minute bound keeps it from being asked again at once.
	k.keys, k.fetched = keys, k.now()
	return nil
}

// VerifySignature implements oidc.KeySet with the keys held.
func (k *keySet) VerifySignature(_ context.Context, raw string) ([]byte, error) {
	jws, kid, err := parseJWS(raw)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(key); err == nil {
			return payload, nil
		}
	}
	return nil, errUnknownKey
}
