package idp_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/odata-bridge/bridge/idp"
)

// A provider with every endpoint configured needs no discovery: its
// authorization URL is built offline, and the ID tokens its token endpoint
// returns are verified against jwks_url with the issuer as their iss.
func ExampleProvider_AuthCodeURL() {
	p := idp.NewProvider(idp.ProviderConfig{
		Issuer:      "https://sso.example.com",
		AuthURL:     "https://sso.example.com/authorize",
		TokenURL:    "https://sso.example.com/token",
		JWKSURL:     "https://sso.example.com/keys",
		ClientID:    "bridge",
		Scopes:      []string{"openid", "offline_access"},
		RedirectURL: "https://bridge.example.com/oauth/callback",
	})
	u, err := p.AuthCodeURL(context.Background(), "state-1", "nonce-1", strings.Repeat("v", 43))
	if err != nil {
		panic(err)
	}
	fmt.Println(u)
	// Output:
	// https://sso.example.com/authorize?client_id=bridge&code_challenge=7w_YNF9DSfIdPf_pRjSq646_kPr-2-o9NAl16JGghdM&code_challenge_method=S256&nonce=nonce-1&redirect_uri=https%3A%2F%2Fbridge.example.com%2Foauth%2Fcallback&response_type=code&scope=openid+offline_access&state=state-1
}
