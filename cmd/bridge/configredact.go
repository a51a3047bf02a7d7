// The configuration's redaction for printing.

package main

import (
	"net/url"
	"slices"
	"strings"
)

// Redacted returns a copy of c fit to print, whose lists are its own: the
// client secret, the key material of every encryption key and every
// password inside a URL read REDACTED.
func (c *Config) Redacted() *Config {
	r := *c
	r.TrustedProxies = slices.Clone(c.TrustedProxies)
	r.IdP.Entra.AllowedTenants = slices.Clone(c.IdP.Entra.AllowedTenants)
	r.Admins = slices.Clone(c.Admins)
	r.Redis.Addrs = slices.Clone(c.Redis.Addrs)
	r.IdP.Scopes = slices.Clone(c.IdP.Scopes)
	r.Clients = slices.Clone(c.Clients)
	for i := range r.Clients {
		r.Clients[i].RedirectURIs = slices.Clone(r.Clients[i].RedirectURIs)
	}
	r.Sources = slices.Clone(c.Sources)
	for i := range r.Sources {
		s := &r.Sources[i]
		s.URL = redactURL(s.URL)
		s.Aliases = slices.Clone(s.Aliases)
		for j := range s.Aliases {
			s.Aliases[j] = redactURL(s.Aliases[j])
		}
		s.Scopes = slices.Clone(s.Scopes)
		s.EntitySets = slices.Clone(s.EntitySets)
	}

	r.EncryptionKeys = make([]string, len(c.EncryptionKeys))
	for i, k := range c.EncryptionKeys {
		r.EncryptionKeys[i] = redacted
		if id, _, ok := strings.Cut(k, ":"); ok && encryptionKeyIDPattern.MatchString(id) {
			r.EncryptionKeys[i] = id + ":" + redacted
		}
	}
	if r.IdP.ClientSecret != "" {
		r.IdP.ClientSecret = redacted
	}
	r.PublicURL = redactURL(r.PublicURL)
	r.Redis.URL = redactURL(r.Redis.URL)
	r.IdP.Issuer = redactURL(r.IdP.Issuer)
	r.IdP.AuthURL = redactURL(r.IdP.AuthURL)
	r.IdP.TokenURL = redactURL(r.IdP.TokenURL)
	r.IdP.JWKSURL = redactURL(r.IdP.JWKSURL)
	r.IdP.Entra.Authority = redactURL(r.IdP.Entra.Authority)
	return &r
}

// redactURL replaces the password of a URL with REDACTED; a URL that does not parse but might
// hold one is replaced whole.
func redactURL(s string) string {
	if s == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return redacted
		}
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
		return u.String()
	}
	return s
}
