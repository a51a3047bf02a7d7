package idp

import (
	"net/url"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/idp/idptest"
)

func TestValidTenant(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{idptest.TenantA, true},
		{strings.ToUpper(idptest.TenantA), true},
		{"contoso.onmicrosoft.com", true},
		{"xn--bcher-kva.example", true},
		{"a.io", true},
		{"", false},
		{"common", false},
		{"organizations", false},
		{"6f1c2a3b-1111-4a5b-8c9d-0123456789a", false},
		{"contoso..com", false},
		{".contoso.com", false},
		{"contoso.com.", false},
		{"-contoso.com", false},
		{"contoso-.com", false},
		{"1.2.3.4", false},
		{"con toso.com", false},
		{"contoso.com/x", false},
		{"contoso.com?x", false},
		{"contoso.com%2F", false},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("a.", 127) + "com", false},
	} {
		if got := ValidTenant(tc.in); got != tc.want {
			t.Errorf("ValidTenant(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzAdminConsentURL checks that a tenant either is refused or becomes
// exactly one path segment of Entra's admin-consent URL.
func FuzzAdminConsentURL(f *testing.F) {
	for _, s := range []string{idptest.TenantA, idptest.TenantADomain, "common", "../x", "a.b/c", "x.com?y=1", "a%2Fb.com", "", "1.2.3.4"} {
		f.Add(s)
	}
	o := EntraConfig{ClientID: idptest.ClientID}
	f.Fuzz(func(t *testing.T, tenant string) {
		u, err := o.AdminConsentURL("https://bridge.example.com", tenant)
		if err != nil {
			return
		}
		p, perr := url.Parse(u)
		if perr != nil {
			t.Fatalf("AdminConsentURL(%q) = %q does not parse: %v", tenant, u, perr)
		}
		if p.Host != "login.microsoftonline.com" || p.Path != "/"+tenant+"/v2.0/adminconsent" || p.RawQuery == "" || p.Fragment != "" {
			t.Errorf("AdminConsentURL(%q) = %q", tenant, u)
		}
		if p.Query().Get("redirect_uri") != "https://bridge.example.com/oauth/callback" {
			t.Errorf("AdminConsentURL(%q): redirect_uri = %q", tenant, p.Query().Get("redirect_uri"))
		}
	})
}

func TestIssuerTenant(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://login.microsoftonline.com/" + idptest.TenantA + "/v2.0", idptest.TenantA},
		{"https://sts.windows.net/" + strings.ToUpper(idptest.TenantA) + "/", idptest.TenantA},
		{"https://login.microsoftonline.com/{tenantid}/v2.0", ""},
		{"https://login.microsoftonline.com/common/v2.0", ""},
		{"::", ""},
	} {
		if got := issuerTenant(tc.in); got != tc.want {
			t.Errorf("issuerTenant(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
