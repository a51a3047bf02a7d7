// Package tokencache keeps the bridge's sessions, feed keys, one-time values (OAuth
// states and codes) and bridge refresh-token families, and hands out fresh identity
// provider access tokens, refreshing each session exactly once across replicas.
//
// # Stores
//
// Without Options.Redis the store is a map in this process: one replica only, and
// every session is lost on restart. With Redis (standalone, Sentinel or Cluster through
// redis.UniversalClient; see NewRedisClient) every replica shares it. All keys of a
// session carry the hash tag {sid} (bridge:{sid}:session, bridge:{sid}:lock,
// bridge:{sid}:fam:…, bridge:{sid}:key:…), so every multi-key operation stays in one
// Cluster slot. Lifetimes slide: a session, its families and feed keys live
// RefreshTTL after their last use.
//
// # At rest
//
// No bridge token, feed key, one-time handle or provider token is stored in clear. A
// lookup key is bridge:at:|rt:|fk:|idx:|once: + HMAC-SHA256 of the opaque token (or
// subject), truncated to 128 bits, under a key derived from the newest encryption key.
// Every value is AES-256-GCM with a random nonce, prefixed by the key ID, and bound to
// its Redis key (and, for feed keys and the subject index, to the subject) as
// additional data, so a value copied under another key does not decrypt. The subject
// index (bridge:idx:, a sorted set listing a subject's sessions for EndSubject and the
// feed-key list) holds one such value per session, sealed with a nonce derived from
// its input so that a session is removed by its ID; a use or a sign-in costs the same
// whatever the number of sessions of its subject (see index.go).
//
// # Operators' records
//
// The Ledger (usage counters, refresh history, refreshes in progress and the audit
// trail) takes the Store's keys (LedgerOptions.Keys) and keeps no subject, e-mail
// address or session prefix in clear in Redis: users are named by HMACs under the
// newest key, and their subjects, the events and the refreshes are sealed, bound to
// their Redis key. See usage.go.
//
// # Upgrades
//
// Every value starts with its version. Replicas of different releases may share one
// Redis during an upgrade, so a replica writes only what the oldest release still
// running reads: the minimum store format, the integer under bridge:format, which the
// operator raises once the older release is gone (redis-cli SET bridge:format 3, or
// Store.RaiseFormat). Until then the subject index is also kept in the list form the
// releases before the sorted set read. See format.go and RELIABILITY.md.
//
// # Key rotation
//
// Put the new key first: Keys: [new, old]. The first key seals and names everything
// written from then on; all keys decrypt, and lookups try every key's HMAC. A session,
// family or feed key in use is rewritten under the new key within a minute of use, so
// the old key can be dropped once RefreshTTL has passed since the rotation; what was not
// used in that time has expired anyway.
//
// # Refresh
//
// Token refreshes a provider token RefreshMargin before it expires. In a process,
// callers of one session share a single flight; across replicas the refresher holds
// bridge:{sid}:lock (SET NX PX with a random token, renewed every third of LockTTL while
// the provider answers, released by compare-and-delete in Lua) and re-reads the session
// once it holds the lock. invalid_grant ends the session (ErrSessionEnded); a 5xx, a
// timeout or a refused connection keeps it (ErrProviderUnavailable).
//
// # Bridge refresh tokens
//
// Every Rotate issues a new refresh token of the same family. A retry with the previous
// token inside ReuseGrace gets the same answer again; any older token, or the previous
// one later, revokes the family and its session (ErrReused).
//
// # Ends
//
// EndSession and EndSubject delete every key of what they end: the session's own keys
// in its slot, its index entries, and the lookup keys of its tokens and feed keys, whose
// names the session records in bridge:{sid}:lookups as it hands them out.
//
// # Hot path and revocation
//
// Authenticate, FeedKey and Token keep their answers in a bounded in-process cache for
// HotCacheTTL (default 5 s), so consecutive OData pages cost no Redis round trip. A
// revocation (Revoke, EndSession, EndSubject, RevokeFeedKey, a detected reuse) takes
// effect at once on the replica that made it and within HotCacheTTL on all others.
//
// # Hygiene
//
// Secret prints, logs and marshals as REDACTED; no error text of this package carries
// a token, code or key.
package tokencache
