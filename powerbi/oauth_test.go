package powerbi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/odata-bridge/bridge/internal/meval"
	"github.com/odata-bridge/bridge/odata"
)

// RFC 7636 Appendix B: the example verifier and its S256 challenge.
const (
	rfcVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	rfcChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

// s256 computes the PKCE S256 challenge in Go with the same steps as the
// connector's M, one Go call per M step:
//
//	Text.ToBinary(verifier, TextEncoding.Ascii)          → []byte(verifier) (ASCII)
//	Crypto.CreateHash(CryptoAlgorithm.SHA256, octets)    → sha256.Sum256
//	Binary.ToText(digest, BinaryEncoding.Base64)         → base64.StdEncoding
//	Text.Replace(Text.Replace(b, "+", "-"), "/", "_")    → strings.ReplaceAll twice
//	Text.TrimEnd(urlSafe, "=")                           → strings.TrimRight
func s256(verifier string) string {
	digest := sha256.Sum256([]byte(verifier))
	b := base64.StdEncoding.EncodeToString(digest[:])
	b = strings.ReplaceAll(strings.ReplaceAll(b, "+", "-"), "/", "_")
	return strings.TrimRight(b, "=")
}

// connectorM parses the rendered connector for evaluation.
func connectorM(t *testing.T, c Connector, host meval.Host) *meval.Section {
	t.Helper()
	pq, err := c.PQ()
	if err != nil {
		t.Fatal(err)
	}
	s, err := meval.Parse(pq, host)
	if err != nil {
		t.Fatalf("meval.Parse: %v", err)
	}
	return s
}

func TestPKCEChallenge(t *testing.T) {
	// The Go steps agree with RFC 7636 and with the standard library's
	// unpadded URL-safe base64.
	if got := s256(rfcVerifier); got != rfcChallenge {
		t.Fatalf("s256(RFC 7636 verifier) = %s, want %s", got, rfcChallenge)
	}
	// A verifier whose digest in base64 has '+', '/' and padding, so every
	// replacement step matters.
	var tricky string
	for i := 0; tricky == ""; i++ {
		v := fmt.Sprintf("verifier-%d-%s", i, strings.Repeat("x", 40))
		d := sha256.Sum256([]byte(v))
		if std := base64.StdEncoding.EncodeToString(d[:]); strings.Contains(std, "+") && strings.Contains(std, "/") {
			tricky = v
		}
	}
	s := connectorM(t, Connector{PublicURL: "https://bridge.example.com"}, meval.Host{})
	for _, v := range []string{rfcVerifier, tricky, strings.Repeat("a", 128)} {
		got, err := s.Call("Pkce.Challenge", v)
		if err != nil {
			t.Fatalf("Pkce.Challenge(%q): %v", v, err)
		}
		d := sha256.Sum256([]byte(v))
		if want := base64.RawURLEncoding.EncodeToString(d[:]); got != want || got != s256(v) {
			t.Errorf("Pkce.Challenge(%q) = %v, want %s", v, got, want)
		}
	}
	// Base64Url.Encode alone, on bytes that give '+', '/' and "==" padding.
	got, err := s.Call("Base64Url.Encode", []byte{0xfb, 0xff, 0xbf, 0x3e})
	if err != nil || got != "-_-_Pg" {
		t.Errorf(`Base64Url.Encode(fb ff bf 3e) = %v, %v; want "-_-_Pg"`, got, err)
	}
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func TestPKCEVerifier(t *testing.T) {
	s := connectorM(t, Connector{PublicURL: "https://bridge.example.com"}, meval.Host{NewGuid: newGUID})
	seen := map[string]bool{}
	for range 20 {
		v, err := s.Call("Pkce.NewVerifier")
		if err != nil {
			t.Fatal(err)
		}
		// RFC 7636 section 4.1: 43 to 128 unreserved characters.
		if !regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`).MatchString(v.(string)) {
			t.Errorf("verifier %q is not 43..128 unreserved characters", v)
		}
		if seen[v.(string)] {
			t.Errorf("verifier %q repeated", v)
		}
		seen[v.(string)] = true
	}
}

// fakeBridge records the connector's requests and answers them.
type fakeBridge struct {
	requests []meval.Request
	status   int
	body     string
}

func (f *fakeBridge) host() meval.Host {
	return meval.Host{
		NewGuid: newGUID,
		WebContents: func(r meval.Request) (*meval.Response, error) {
			f.requests = append(f.requests, r)
			return &meval.Response{Status: f.status, Body: []byte(f.body)}, nil
		},
	}
}

// form parses a request body as application/x-www-form-urlencoded.
func form(t *testing.T, r meval.Request) map[string]string {
	t.Helper()
	if got := r.Header["Content-Type"]; got != "application/x-www-form-urlencoded" {
		t.Errorf("%s %s: Content-Type %q", r.Method, r.URL, got)
	}
	v, err := url.ParseQuery(string(r.Body))
	if err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	out := map[string]string{}
	for k := range v {
		if len(v[k]) != 1 {
			t.Errorf("form field %s appears %d times", k, len(v[k]))
		}
		out[k] = v.Get(k)
	}
	return out
}

func field(t *testing.T, v meval.Value, name string) meval.Value {
	t.Helper()
	rec, ok := v.(*meval.Record)
	if !ok {
		t.Fatalf("%v is not a record", v)
	}
	f, ok := rec.Field(name)
	if !ok {
		t.Fatalf("record %v has no field %s", rec.Names, name)
	}
	return f
}

func TestOAuthFlow(t *testing.T) {
	for _, set := range loadParamSets(t) {
		t.Run(set.Name, func(t *testing.T) {
			c := set.Connector.withDefaults()
			base := strings.TrimRight(c.PublicURL, "/")
			bridge := &fakeBridge{status: 200}
			s := connectorM(t, set.Connector, bridge.host())

			// StartLogin: the authorize URL with PKCE.
			login, err := s.Call("StartLogin", base, "state-1", nil)
			if err != nil {
				t.Fatalf("StartLogin: %v", err)
			}
			verifier := field(t, login, "Context").(string)
			loginURI, err := url.Parse(field(t, login, "LoginUri").(string))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := loginURI.Scheme+"://"+loginURI.Host+loginURI.Path, base+"/oauth/authorize"; got != want {
				t.Errorf("LoginUri goes to %s, want %s", got, want)
			}
			q := loginURI.Query()
			wantQuery := map[string]string{
				"response_type":         "code",
				"client_id":             c.ClientID,
				"redirect_uri":          RedirectURI,
				"state":                 "state-1",
				"code_challenge":        s256(verifier),
				"code_challenge_method": "S256",
			}
			gotQuery := map[string]string{}
			for k := range q {
				gotQuery[k] = q.Get(k)
			}
			if diff := cmp.Diff(wantQuery, gotQuery); diff != "" {
				t.Errorf("authorize query (-want +got):\n%s", diff)
			}
			if got := field(t, login, "CallbackUri"); got != RedirectURI {
				t.Errorf("CallbackUri = %v", got)
			}
			if len(bridge.requests) != 0 {
				t.Errorf("StartLogin made %d requests", len(bridge.requests))
			}

			// FinishLogin: the code grant with the verifier.
			bridge.body = `{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1","scope":"x"}`
			callback := RedirectURI + "?code=" + url.QueryEscape("c o+de/1") + "&state=state-1"
			tokens, err := s.Call("FinishLogin", verifier, callback, "state-1")
			if err != nil {
				t.Fatalf("FinishLogin: %v", err)
			}
			if got, want := tokens.(*meval.Record).Names, []string{"access_token", "token_type", "expires_in", "refresh_token"}; !cmp.Equal(got, want) {
				t.Errorf("FinishLogin returns fields %v, want %v", got, want)
			}
			if field(t, tokens, "access_token") != "at-1" || field(t, tokens, "refresh_token") != "rt-1" || field(t, tokens, "expires_in") != 3600.0 {
				t.Errorf("FinishLogin = %+v", tokens)
			}
			if len(bridge.requests) != 1 {
				t.Fatalf("FinishLogin made %d requests, want 1", len(bridge.requests))
			}
			r := bridge.requests[0]
			if r.Method != "POST" || r.URL != base+"/oauth/token" {
				t.Errorf("FinishLogin sent %s %s, want POST %s/oauth/token", r.Method, r.URL, base)
			}
			if diff := cmp.Diff(map[string]string{
				"grant_type":    "authorization_code",
				"code":          "c o+de/1",
				"redirect_uri":  RedirectURI,
				"client_id":     c.ClientID,
				"code_verifier": verifier,
			}, form(t, r)); diff != "" {
				t.Errorf("token form (-want +got):\n%s", diff)
			}

			// Refresh: the refresh grant, nothing else.
			bridge.requests = nil
			bridge.body = `{"access_token":"at-2","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}`
			refreshed, err := s.Call("Refresh", base, "rt-1")
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if field(t, refreshed, "refresh_token") != "rt-2" {
				t.Errorf("Refresh = %+v", refreshed)
			}
			if len(bridge.requests) != 1 || bridge.requests[0].URL != base+"/oauth/token" || bridge.requests[0].Method != "POST" {
				t.Fatalf("Refresh requests = %+v", bridge.requests)
			}
			if diff := cmp.Diff(map[string]string{
				"grant_type":    "refresh_token",
				"refresh_token": "rt-1",
				"client_id":     c.ClientID,
			}, form(t, bridge.requests[0])); diff != "" {
				t.Errorf("refresh form (-want +got):\n%s", diff)
			}

			// Logout: RFC 7009 revocation, also when the bridge fails.
			for _, status := range []int{200, 503} {
				bridge.requests, bridge.status, bridge.body = nil, status, ""
				page, err := s.Call("Logout", "at-2")
				if err != nil {
					t.Fatalf("Logout (bridge %d): %v", status, err)
				}
				if page != base+"/" {
					t.Errorf("Logout = %v, want %s/", page, base)
				}
				if len(bridge.requests) != 1 || bridge.requests[0].URL != base+"/oauth/revoke" || bridge.requests[0].Method != "POST" {
					t.Fatalf("Logout requests = %+v", bridge.requests)
				}
				if diff := cmp.Diff(map[string]string{
					"token":           "at-2",
					"token_type_hint": "access_token",
					"client_id":       c.ClientID,
				}, form(t, bridge.requests[0])); diff != "" {
					t.Errorf("revoke form (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestFinishLoginErrors(t *testing.T) {
	tests := []struct {
		name, callback, state string
		status                int
		body                  string
		wantReason, wantMsg   string
		wantRequests          int
	}{
		{name: "denied", callback: RedirectURI + "?error=access_denied&error_description=User+said+no&state=s", state: "s",
			wantReason: "access_denied", wantMsg: "User said no"},
		{name: "error without description", callback: RedirectURI + "?error=server_error", state: "s",
			wantReason: "server_error", wantMsg: "server_error"},
		{name: "no code", callback: RedirectURI + "?state=s", state: "s",
			wantReason: "invalid_request", wantMsg: "NoCode"},
		{name: "other sign-in", callback: RedirectURI + "?code=c&state=other", state: "s",
			wantReason: "invalid_request", wantMsg: "StateMismatch"},
		{name: "invalid grant", callback: RedirectURI + "?code=c&state=s", state: "s", status: 400,
			body: `{"error":"invalid_grant","error_description":"code expired"}`, wantReason: "invalid_grant", wantMsg: "code expired", wantRequests: 1},
		{name: "bridge down", callback: RedirectURI + "?code=c&state=s", state: "s", status: 502,
			wantReason: "DataSource.Error", wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bridge := &fakeBridge{status: tt.status, body: tt.body}
			s := connectorM(t, Connector{PublicURL: "https://bridge.example.com"}, bridge.host())
			got, err := s.Call("FinishLogin", "verifier", tt.callback, tt.state)
			var me *meval.Error
			if !errors.As(err, &me) {
				t.Fatalf("FinishLogin = %v, %v; want an M error", got, err)
			}
			if me.Reason != tt.wantReason || (tt.wantMsg != "" && me.Message != tt.wantMsg) {
				t.Errorf("M error = %q %q, want %q %q", me.Reason, me.Message, tt.wantReason, tt.wantMsg)
			}
			if len(bridge.requests) != tt.wantRequests {
				t.Errorf("%d requests, want %d", len(bridge.requests), tt.wantRequests)
			}
		})
	}
}

func TestFeedOptions(t *testing.T) {
	s := connectorM(t, Connector{PublicURL: "https://bridge.example.com"}, meval.Host{})
	v2 := &meval.Record{Names: []string{"Implementation"}, Values: []meval.Value{"2.0"}}
	tests := []struct {
		version meval.Value
		want    meval.Value
	}{
		{nil, nil}, {odata.Version4, v2}, {4.0, v2}, {"4.01", v2},
		{odata.Version3, nil}, {3.0, nil}, {odata.Version2, nil}, {"1.0", nil},
	}
	for _, tt := range tests {
		got, err := s.Call("FeedOptions", tt.version)
		if err != nil {
			t.Fatalf("FeedOptions(%v): %v", tt.version, err)
		}
		if !cmp.Equal(got, tt.want) {
			t.Errorf("FeedOptions(%v) = %+v, want %+v", tt.version, got, tt.want)
		}
	}
}

func TestSourceRow(t *testing.T) {
	type feedCall struct {
		url     meval.Value
		options meval.Value
	}
	var calls []feedCall
	host := meval.Host{Functions: map[string]func([]meval.Value) (meval.Value, error){
		"OData.Feed": func(args []meval.Value) (meval.Value, error) {
			if len(args) != 3 || args[1] != nil {
				return nil, fmt.Errorf("OData.Feed called with %v", args)
			}
			calls = append(calls, feedCall{args[0], args[2]})
			return "feed", nil
		},
	}}
	s := connectorM(t, Connector{PublicURL: "https://bridge.example.com:8443/b/"}, host)
	rec := func(names []string, values ...meval.Value) *meval.Record {
		return &meval.Record{Names: names, Values: values}
	}
	fields := []string{"name", "title", "kind", "odata_version", "url"}
	v2 := rec([]string{"Implementation"}, "2.0")
	tests := []struct {
		name     string
		source   *meval.Record
		wantRow  []meval.Value
		wantCall *feedCall
		wantErr  string
	}{
		{"v4 source", rec(fields, "k2", "K2 SmartObjects", "odata", odata.Version4, "https://bridge.example.com:8443/b/odata/k2/"),
			[]meval.Value{"K2 SmartObjects", "k2", "feed", "Database", "Database", false},
			&feedCall{"https://bridge.example.com:8443/b/odata/k2/", v2}, ""},
		{"v3 source without title", rec(fields, "legacy", "", "odata", odata.Version3, "https://bridge.example.com:8443/b/odata/legacy/"),
			[]meval.Value{"legacy", "legacy", "feed", "Database", "Database", false},
			&feedCall{"https://bridge.example.com:8443/b/odata/legacy/", nil}, ""},
		{"no version", rec([]string{"name", "url"}, "wf", "https://bridge.example.com:8443/b/odata/wf/"),
			[]meval.Value{"wf", "wf", "feed", "Database", "Database", false},
			&feedCall{"https://bridge.example.com:8443/b/odata/wf/", nil}, ""}, // unknown: the default implementation
		{"feed on another host", rec(fields, "x", "X", "odata", odata.Version4, "https://evil.example/odata/x/"),
			nil, nil, "ForeignFeed"},
		{"feed beside the bridge path", rec(fields, "x", "X", "odata", odata.Version4, "https://bridge.example.com:8443/bx/odata/x/"),
			nil, nil, "ForeignFeed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = nil
			got, err := s.Call("SourceRow", tt.source)
			if tt.wantErr != "" {
				var me *meval.Error
				if !errors.As(err, &me) || me.Message != tt.wantErr {
					t.Fatalf("SourceRow = %v, %v; want the %s error", got, err, tt.wantErr)
				}
				if len(calls) != 0 {
					t.Errorf("OData.Feed was called for a feed outside the bridge: %v", calls)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantRow, got); diff != "" {
				t.Errorf("row (-want +got):\n%s", diff)
			}
			if len(calls) != 1 || !cmp.Equal(calls[0].url, tt.wantCall.url) || !cmp.Equal(calls[0].options, tt.wantCall.options) {
				t.Errorf("OData.Feed calls = %+v, want %+v", calls, *tt.wantCall)
			}
		})
	}
}
