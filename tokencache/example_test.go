package tokencache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/odata-bridge/bridge/tokencache"
)

// A sign-in becomes a session; the bridge hands out its own tokens for it, and the relay
// turns a bridge access token into a fresh provider token for the upstream.
func ExampleStore() {
	ctx := context.Background()
	store, err := tokencache.New(tokencache.Options{}) // in memory; set Redis and Keys to share it
	if err != nil {
		panic(err)
	}
	defer store.Close()

	sid, _ := store.CreateSession(ctx, tokencache.Session{
		Subject: "oid-of-ada", Name: "Ada", AccessToken: "provider-access-token",
		RefreshToken: "provider-refresh-token", Expiry: time.Now().Add(time.Hour),
	})
	toks, _ := store.Issue(ctx, sid) // the token response of the bridge
	fmt.Println("printed token:", toks.AccessToken)

	got, _ := store.Authenticate(ctx, string(toks.AccessToken)) // an OData request
	upstream, _ := store.Token(ctx, got)
	fmt.Println("upstream token:", string(upstream))
	// Output:
	// printed token: REDACTED
	// upstream token: provider-access-token
}
