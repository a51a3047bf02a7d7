package tokencache

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/oauth2"
)

// The stampede tests rely on the provider refusing a used refresh token: check that it
// does, so that a double refresh would fail them.
func TestProviderRefusesUsedRefreshToken(t *testing.T) {
	p := startProvider(t)
	tok := p.signIn(t)
	ctx := context.Background()
	first, err := p.refresher().Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	if first.RefreshToken == "" || first.RefreshToken == tok.RefreshToken {
		t.Fatalf("the provider did not rotate the refresh token")
	}
	_, err = p.refresher().Refresh(ctx, tok.RefreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("second refresh with the used token: got %v, want invalid_grant", err)
	}
}
