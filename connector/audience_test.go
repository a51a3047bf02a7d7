package connector

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// audienceIdP makes the test provider issue audience-bound tokens: a refresh
// grant that names a resource gets a signed token whose aud is that resource,
// and a resource it is told to refuse gets invalid_resource (RFC 6749 §5.2
// with Entra's AADSTS500011 meaning).
type audienceIdP struct {
	*testIdP
	refuse string

	mu     sync.Mutex
	grants map[string]int
}

func (p *audienceIdP) serve(w http.ResponseWriter, r *http.Request) bool {
	if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("resource") == "" {
		return false
	}
	res := r.PostForm.Get("resource")
	w.Header().Set("Content-Type", "application/json")
	if res == p.refuse {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_resource", "error_description": "AADSTS500011: not found in the tenant"})
		return true
	}
	p.mu.Lock()
	p.grants[res]++
	p.mu.Unlock()
	now := time.Now()
	tok, err := p.m.Keypair.SignJWT(jwt.RegisteredClaims{
		Issuer: p.m.Issuer(), Subject: "user", Audience: jwt.ClaimStrings{res},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return true
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	return true
}

// audienceUpstream is a feed that sends the Authorizer's token where an
// upstream would see it and records the token's audience.
type audienceUpstream struct {
	t    *testing.T
	idp  *audienceIdP
	mu   sync.Mutex
	seen []string // the aud of every token received
}

func (u *audienceUpstream) ServeFeed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) odata.Served {
	out, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://upstream.invalid/"+path, nil)
	if err := auth.Authorize(r.Context(), out, false); err != nil {
		WriteError(w, odata.Version4, err)
		return odata.Served{}
	}
	raw := strings.TrimPrefix(out.Header.Get("Authorization"), "Bearer ")
	var claims jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return u.idp.m.Keypair.PublicKey, nil }); err != nil {
		u.t.Errorf("the upstream received a token that does not verify: %v", err)
	}
	u.mu.Lock()
	u.seen = append(u.seen, strings.Join(claims.Audience, " "))
	u.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	return odata.Served{}
}

func (u *audienceUpstream) Version() string { return odata.Version4 }

func TestSourceTokensAreAudienceBound(t *testing.T) {
	k2, crm, hr := &audienceUpstream{t: t}, &audienceUpstream{t: t}, &audienceUpstream{t: t}
	b := newBridge(t, func(*idp.Provider) []Source {
		return []Source{
			{Name: "k2", Kind: "odata", Auth: AuthUser, Feed: k2, Audience: &tokencache.Audience{Name: "k2", Resource: "https://api.k2.example"}},
			{Name: "crm", Kind: "odata", Auth: AuthUser, Feed: crm, Audience: &tokencache.Audience{Name: "crm", Resource: "https://crm.example"}},
			{Name: "hr", Kind: "odata", Auth: AuthUser, Feed: hr, Audience: &tokencache.Audience{Name: "hr", Resource: "https://hr.example"}},
		}
	})
	aidp := &audienceIdP{testIdP: b.idp, refuse: "https://hr.example", grants: map[string]int{}}
	k2.idp, crm.idp, hr.idp = aidp, aidp, aidp
	b.idp.setFail(aidp.serve)
	access, _ := b.signIn(t)

	for page := range 3 {
		for _, src := range []string{"k2", "crm"} {
			resp, body := b.get(t, "/odata/"+src+"/Items?$skiptoken="+string(rune('0'+page)), bearer(access))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s page %d: status %d %s", src, page, resp.StatusCode, body)
			}
		}
	}
	for _, tc := range []struct {
		up   *audienceUpstream
		want string
	}{{k2, "https://api.k2.example"}, {crm, "https://crm.example"}} {
		if len(tc.up.seen) != 3 {
			t.Errorf("upstream %s saw %d requests, want 3", tc.want, len(tc.up.seen))
		}
		for _, aud := range tc.up.seen {
			if aud != tc.want {
				t.Errorf("upstream %s received a token for %q", tc.want, aud)
			}
		}
	}
	aidp.mu.Lock()
	if aidp.grants["https://api.k2.example"] != 1 || aidp.grants["https://crm.example"] != 1 {
		t.Errorf("token grants per resource = %v, want one each for three pages", aidp.grants)
	}
	aidp.mu.Unlock()

	// A refused grant is an OData error naming the source; the session lives on.
	resp, body := b.get(t, "/odata/hr/Items", bearer(access))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"code":"SourceTokenRefused"`) || !strings.Contains(body, `source \"hr\"`) {
		t.Errorf("refused source: status %d %s; want 403 SourceTokenRefused naming hr", resp.StatusCode, body)
	}
	if len(hr.seen) != 0 {
		t.Errorf("the refused source's upstream was called %d times", len(hr.seen))
	}
	if resp, body := b.get(t, "/odata/k2/Items", bearer(access)); resp.StatusCode != http.StatusOK {
		t.Errorf("k2 after hr was refused: status %d %s", resp.StatusCode, body)
	}
}
