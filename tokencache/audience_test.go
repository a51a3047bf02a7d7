package tokencache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// audienceProvider issues tokens bound to the resource asked for, rotating
// the refresh token on every grant, and refuses the resources it is told to.
type audienceProvider struct {
	rotatingRefresher
	grants  map[string]int // resource → grants
	refuse  map[string]bool
	expires time.Time
}

func (p *audienceProvider) RefreshFor(_ context.Context, rt string, scopes []string, resource string) (*oauth2.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	p.used = append(p.used, rt)
	if p.refuse[resource] {
		return nil, &oauth2.RetrieveError{Response: &http.Response{StatusCode: http.StatusBadRequest}, ErrorCode: "invalid_resource"}
	}
	if p.err != nil {
		return nil, p.err
	}
	p.grants[resource]++
	return &oauth2.Token{
		AccessToken:  fmt.Sprintf("at-for-%s-%s-%d", resource, strings.Join(scopes, "+"), p.grants[resource]),
		RefreshToken: fmt.Sprintf("rt-%d", p.calls),
		Expiry:       p.expires,
	}, nil
}

func TestTokenForAudiences(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		p := &audienceProvider{grants: map[string]int{}, refuse: map[string]bool{"https://refused": true}, expires: clk.Now().Add(time.Hour)}
		s := e.store(t, Options{Now: clk.Now, Refresher: p})
		sid, err := s.CreateSession(ctx, Session{Subject: "sub-1", AccessToken: "at-0", RefreshToken: "rt-0", Expiry: clk.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		k2 := Audience{Name: "k2", Resource: "https://api.k2.com"}
		crm := Audience{Name: "crm", Scopes: []string{"https://crm/.default"}, Resource: "https://crm"}

		// Three uses of each audience cost one grant each, and each token is its audience's.
		for range 3 {
			got, err := s.TokenFor(ctx, sid, k2)
			if err != nil || got != "at-for-https://api.k2.com--1" {
				t.Fatalf("TokenFor(k2) = %q, %v", string(got), err)
			}
			got, err = s.TokenFor(ctx, sid, crm)
			if err != nil || got != "at-for-https://crm-https://crm/.default-1" {
				t.Fatalf("TokenFor(crm) = %q, %v", string(got), err)
			}
		}
		if diff := cmp.Diff(map[string]int{"https://api.k2.com": 1, "https://crm": 1}, p.grants); diff != "" {
			t.Errorf("grants (-want +got):\n%s", diff)
		}
		// The provider rotated the refresh token; every grant used the latest.
		if diff := cmp.Diff([]string{"rt-0", "rt-1"}, p.used); diff != "" {
			t.Errorf("refresh tokens redeemed (-want +got):\n%s", diff)
		}
		if sess, _ := s.Session(ctx, sid); sess.RefreshToken != "rt-2" {
			t.Errorf("session refresh token = %q, want the rotated rt-2", string(sess.RefreshToken))
		}
		// The session's own token is untouched.
		if got, err := s.Token(ctx, sid); err != nil || got != "at-0" {
			t.Errorf("Token = %q, %v; want the session's own at-0", string(got), err)
		}

		// Another replica (no hot cache) reads the stored token instead of a new grant.
		other := e.store(t, Options{Now: clk.Now, Refresher: p, HotCacheTTL: -1})
		if got, err := other.TokenFor(ctx, sid, k2); err != nil || got != "at-for-https://api.k2.com--1" {
			t.Errorf("other replica TokenFor(k2) = %q, %v", string(got), err)
		}
		if p.grants["https://api.k2.com"] != 1 {
			t.Errorf("the second replica made a grant")
		}

		// A refused grant names the audience, and the session and its other tokens live on.
		_, err = s.TokenFor(ctx, sid, Audience{Name: "hr", Resource: "https://refused"})
		if !errors.Is(err, ErrAudienceRefused) || !strings.Contains(err.Error(), "hr") {
			t.Errorf("refused audience: err = %v, want ErrAudienceRefused naming hr", err)
		}
		if _, err := s.TokenFor(ctx, sid, k2); err != nil {
			t.Errorf("TokenFor(k2) after a refusal for hr: %v", err)
		}

		// Near expiry, and after a 401, a new grant is made.
		clk.Add(59 * time.Minute)
		p.expires = clk.Now().Add(time.Hour)
		if got, err := s.TokenFor(ctx, sid, k2); err != nil || got != "at-for-https://api.k2.com--2" {
			t.Errorf("TokenFor(k2) inside the margin = %q, %v; want a new grant", string(got), err)
		}
		if got, err := s.RenewFor(ctx, sid, k2, "at-for-https://api.k2.com--2"); err != nil || got != "at-for-https://api.k2.com--3" {
			t.Errorf("RenewFor(k2) = %q, %v; want a new grant", string(got), err)
		}
		if got, err := s.RenewFor(ctx, sid, k2, "at-for-https://api.k2.com--2"); err != nil || got != "at-for-https://api.k2.com--3" {
			t.Errorf("RenewFor(k2, already replaced) = %q, %v; want the current token", string(got), err)
		}

		// A source whose resource changes never gets its former audience's token.
		moved := Audience{Name: "k2", Resource: "https://api2.k2.com"}
		if got, err := s.TokenFor(ctx, sid, moved); err != nil || got != "at-for-https://api2.k2.com--1" {
			t.Errorf("TokenFor(k2 with a new resource) = %q, %v; want a token for the new resource", string(got), err)
		}

		// Ending the session drops its audience tokens everywhere.
		if err := s.EndSession(ctx, sid); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TokenFor(ctx, sid, k2); !errors.Is(err, ErrNotFound) {
			t.Errorf("TokenFor after EndSession: %v, want ErrNotFound", err)
		}
		if raw, err := s.b.get(ctx, s.audienceKey(sid)); !errors.Is(err, ErrNotFound) {
			t.Errorf("the audience record outlived its session: %d bytes, %v", len(raw), err)
		}
	})
}

func TestTokenForOneGrantAtATime(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		p := &audienceProvider{grants: map[string]int{}, expires: clk.Now().Add(time.Hour)}
		// Two replicas, each with its own flight: the lock makes them take turns.
		a := e.store(t, Options{Now: clk.Now, Refresher: p})
		b := e.store(t, Options{Now: clk.Now, Refresher: p})
		sid, err := a.CreateSession(ctx, Session{Subject: "sub-1", AccessToken: "at-0", RefreshToken: "rt-0", Expiry: clk.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		aud := Audience{Name: "k2", Resource: "https://api.k2.com"}
		var wg sync.WaitGroup
		for i := range 20 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				if _, err := s.TokenFor(ctx, sid, aud); err != nil {
					t.Errorf("TokenFor: %v", err)
				}
			})
		}
		wg.Wait()
		if got := p.grants["https://api.k2.com"]; got != 1 {
			t.Errorf("grants = %d, want 1", got)
		}
	})
}

func TestTokenForWithoutAudienceRefresher(t *testing.T) {
	s := (&env{name: "memory"}).store(t, Options{Refresher: &rotatingRefresher{}})
	sid := newSession(t, s, "sub-1")
	if _, err := s.TokenFor(ctx, sid, Audience{Name: "k2", Resource: "r"}); !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("err = %v, want ErrProviderUnavailable", err)
	}
}
