package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entraYAML is a config of a bridge in front of Entra ID with a K2 source.
const entraYAML = `
public_url: "https://bridge.example.com/"
idp:
  issuer: "https://login.microsoftonline.com/common/v2.0"
  client_id: "b1d2f3a4-3333-4c5d-8e9f-23456789abcd"
  client_secret: "s"
  entra:
    org_account: true
    allowed_tenants: ["contoso.onmicrosoft.com"]
sources:
  - name: "k2"
    preset: "k2-smartobjects-v4"
    url: "https://k2.example.com/api/odatav4/v4"
  - name: "k2v3"
    preset: "k2-smartobjects-v3"
    url: "https://k2.example.com/prefix/api/odata/v3/"
    resource: "https://api.k2.example"
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConsentURLIsWhereTheRouteRedirects(t *testing.T) {
	path := writeConfig(t, entraYAML)
	getenv := func(string) string { return "" }
	cfg, err := configFor([]string{"--config", path}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	a, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	for _, tenant := range []string{"contoso.onmicrosoft.com", "6f1c2a3b-1111-4a5b-8c9d-0123456789ab"} {
		for _, args := range [][]string{
			{"consent-url", "--tenant", tenant, "--config", path},
			{"consent-url", "--config=" + path, "--tenant=" + tenant},
		} {
			var out bytes.Buffer
			if err := run(context.Background(), args, getenv, &out); err != nil {
				t.Fatalf("run %q: %v", args, err)
			}
			rec := httptest.NewRecorder()
			a.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/consent?tenant="+tenant, nil))
			if rec.Code != http.StatusFound {
				t.Fatalf("/admin/consent: status = %d, want 302", rec.Code)
			}
			// The route adds a state that binds Entra's answer to the browser.
			loc, state, _ := strings.Cut(rec.Header().Get("Location"), "&state=")
			if len(state) < 43 {
				t.Errorf("/admin/consent redirects to %q, want a state", rec.Header().Get("Location"))
			}
			if got, want := strings.TrimSuffix(out.String(), "\n"), loc; got != want {
				t.Errorf("consent-url %q printed\n %q\nthe route redirects to\n %q", args, got, want)
			}
			if !strings.HasPrefix(out.String(), "https://login.microsoftonline.com/"+tenant+"/v2.0/adminconsent?client_id=b1d2f3a4-3333-4c5d-8e9f-23456789abcd&redirect_uri=https%3A%2F%2Fbridge.example.com%2Foauth%2Fcallback&scope=") {
				t.Errorf("consent-url printed %q", out.String())
			}
		}
	}
}

func TestConsentURLUsage(t *testing.T) {
	path := writeConfig(t, entraYAML)
	getenv := func(string) string { return "" }
	for _, args := range [][]string{
		{"consent-url", "--config", path},
		{"consent-url", "--config", path, "--tenant"},
		{"consent-url", "--config", path, "--tenant", "../evil"},
		{"consent-url", "--config", path, "--tenant", "common"},
	} {
		err := run(context.Background(), args, getenv, io.Discard)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("run %q = %v, want exit code 2", args, err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"consent-url", "--help"}, getenv, &out); err != nil || !strings.Contains(out.String(), "--tenant") {
		t.Errorf("consent-url --help = %q, %v", out.String(), err)
	}
}

func TestK2Presets(t *testing.T) {
	cfg, err := configFor([]string{"--config", writeConfig(t, entraYAML)}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ resource, refresh string }{
		{"https://api.k2.com", "https://k2.example.com/api/odata/op/refresh"},
		{"https://api.k2.example", "https://k2.example.com/prefix/api/odata/op/refresh"},
	} {
		sc := cfg.Sources[i]
		if got := sc.resource(cfg.IdP.Resource); got != want.resource || k2RefreshURL(sc) != want.refresh {
			t.Errorf("sources[%d]: resource %q, refresh %q; want %q, %q", i, got, k2RefreshURL(sc), want.resource, want.refresh)
		}
	}
	if got := k2RefreshURL(SourceConfig{Kind: "odata", URL: "https://crm.example.com/odata/"}); got != "" {
		t.Errorf("a source without preset has refresh URL %q", got)
	}
}

func TestEntraOptionsOnlyForEntra(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  IdPConfig
		on   bool
	}{
		{"Entra issuer", IdPConfig{Issuer: "https://login.microsoftonline.com/x/v2.0", ClientID: "c", Entra: EntraConfig{Authority: "https://login.microsoftonline.com"}}, true},
		{"other issuer", IdPConfig{Issuer: "https://keycloak.example.com/realms/x", ClientID: "c", Entra: EntraConfig{Authority: "https://login.microsoftonline.com"}}, false},
		{"other issuer, org_account", IdPConfig{Issuer: "https://sso.example.com", ClientID: "c", Entra: EntraConfig{Authority: "https://login.microsoftonline.com", OrgAccount: true}}, true},
		{"look-alike host", IdPConfig{Issuer: "https://login.microsoftonline.com.evil.example/x", ClientID: "c", Entra: EntraConfig{Authority: "https://login.microsoftonline.com"}}, false},
	} {
		got := entraOptions(&Config{IdP: tc.cfg})
		if on := got.ClientID != ""; on != tc.on {
			t.Errorf("%s: Entra on = %v, want %v", tc.name, on, tc.on)
		}
	}
}
