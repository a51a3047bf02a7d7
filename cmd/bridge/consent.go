package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/odata-bridge/bridge/idp"
)

// entraOptions is the Entra ID part of the connector's options. Admin
// consent and organizational accounts are on when the config is Entra's:
// org_account or a pinned tenant is set, or the issuer is on the authority.
func entraOptions(cfg *Config) idp.EntraConfig {
	e := cfg.IdP.Entra
	authority := strings.TrimSuffix(e.Authority, "/")
	if !e.OrgAccount && e.Tenant == "" && (authority == "" || !strings.HasPrefix(cfg.IdP.Issuer, authority+"/")) {
		return idp.EntraConfig{}
	}
	return consentOptions(cfg)
}

// consentOptions are the Entra options whatever the issuer, for admins who
// configured Entra by hand.
func consentOptions(cfg *Config) idp.EntraConfig {
	e := cfg.IdP.Entra
	return idp.EntraConfig{
		Authority:      e.Authority,
		Tenant:         e.Tenant,
		AllowedTenants: e.AllowedTenants,
		ClientID:       cfg.IdP.ClientID,
		ClientSecret:   cfg.IdP.ClientSecret,
		OrgAccount:     e.OrgAccount,
		AppIDURI:       e.AppIDURI,
	}
}

// printConsentURL prints the admin-consent URL of a tenant: the URL that
// GET /admin/consent?tenant=… redirects to, without the state that binds
// Entra's answer to a browser, so the bridge shows no result page for it.
func printConsentURL(args []string, getenv func(string) string, stdout io.Writer) error {
	var tenant string
	var rest []string
	// --tenant is this command's own; the others (--config) are the config's.
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--tenant" || a == "-tenant":
			if i+1 >= len(args) {
				return usageError("consent-url: --tenant needs a tenant ID or domain name")
			}
			tenant = args[i+1]
			i++
		case strings.HasPrefix(a, "--tenant=") || strings.HasPrefix(a, "-tenant="):
			tenant = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := configFor(rest, getenv)
	if err != nil {
		return err
	}
	if cfg.IdP.ClientID == "" {
		return usageError("consent-url: idp.client_id is not set")
	}
	u, err := consentOptions(cfg).AdminConsentURL(cfg.PublicURL, tenant)
	if err != nil {
		return usageError("consent-url: %v", err)
	}
	fmt.Fprintln(stdout, u)
	return nil
}
