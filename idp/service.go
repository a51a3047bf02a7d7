package idp

import (
	"context"
	"net/url"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ServiceTokens is a client-credentials token source shared by all callers
// of one source. One fetch runs at a time; a renewal after an upstream 401
// drops the cached token.
type ServiceTokens struct {
	p        *Provider
	scopes   []string
	resource string

	mu  sync.Mutex
	tok *oauth2.Token
}

var _ oauth2.TokenSource = (*ServiceTokens)(nil)

// ServiceTokens returns the client-credentials token source of a source
// with its own scopes or Azure AD v1 resource.
func (p *Provider) ServiceTokens(scopes []string, resource string) *ServiceTokens {
	return &ServiceTokens{p: p, scopes: scopes, resource: resource}
}

// Token returns the cached token while it is valid, else fetches one.
func (t *ServiceTokens) Token() (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok.Valid() {
		return t.tok, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oc, err := t.p.config(ctx)
	if err != nil {
		return nil, err
	}
	cc := &clientcredentials.Config{
		ClientID:     oc.ClientID,
		ClientSecret: oc.ClientSecret,
		TokenURL:     oc.Endpoint.TokenURL,
		Scopes:       t.scopes,
	}
	if t.resource != "" {
		cc.EndpointParams = url.Values{"resource": {t.resource}}
	}
	tok, err := cc.Token(t.p.ctx(ctx))
	if err != nil {
		return nil, err
	}
	t.tok = tok
	return tok, nil
}

// Renew drops the cached token.
func (t *ServiceTokens) Renew() {
	t.mu.Lock()
	t.tok = nil
	t.mu.Unlock()
}
