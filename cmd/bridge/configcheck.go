// The configuration's validation: one pass over every key, every problem reported at once.

package main

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-playground/validator/v10"
	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/tokencache"
)

func (c *Config) Validate() error {
	c.normalize()
	var probs []Problem
	if err := configValidator().Struct(c); err != nil {
		var verrs validator.ValidationErrors
		if !errors.As(err, &verrs) {
			return fmt.Errorf("validate configuration: %w", err)
		}
		for _, fe := range verrs {
			_, path, _ := strings.Cut(fe.Namespace(), ".")
			probs = append(probs, Problem{Path: path, Message: validationMessage(fe)})
		}
	}
	probs = append(probs, c.crossFieldProblems()...)
	if len(probs) > 0 {
		return &ConfigError{Problems: probs}
	}
	return nil
}

func (c *Config) normalize() {
	if c.PublicURL != "" {
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	slash := func(s string) string {
		if s != "" && !strings.HasSuffix(s, "/") {
			return s + "/"
		}
		return s
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		s.URL = slash(s.URL)
		for j := range s.Aliases {
			s.Aliases[j] = slash(s.Aliases[j])
		}
		if p, ok := odata.LookupPreset(s.Preset); ok && s.Kind == "odata" {
			s.ODataVersion = cmp.Or(s.ODataVersion, p.Version)
		}
		if s.Kind == "rest" {
			s.ODataVersion = cmp.Or(s.ODataVersion, odata.Version4)
		}
	}
}

// crossFieldProblems checks the rules that tie several keys together.
func (c *Config) crossFieldProblems() []Problem {
	var probs []Problem
	add := func(path, format string, args ...any) {
		probs = append(probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}

	// The metrics listener is a listener of its own, never the public one.
	if c.MetricsListen != "" && c.MetricsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		add("metrics_listen", "must differ from listen: /metrics is never served on the public listener")
	}

	// Redis.
	if c.Redis.URL != "" && len(c.Redis.Addrs) > 0 {
		add("redis.addrs", "must be empty when redis.url is set")
	}
	if c.Redis.MasterName != "" && len(c.Redis.Addrs) == 0 {
		add("redis.master_name", "needs redis.addrs, the Sentinel addresses")
	}
	if (c.Redis.URL != "" || len(c.Redis.Addrs) > 0) && len(c.EncryptionKeys) == 0 {
		add("encryption_keys", "is required when redis is configured")
	}
	seenKey := map[string]bool{}
	for i, k := range c.EncryptionKeys {
		id, err := parseEncryptionKey(k)
		if err != nil {
			continue // reported by the validator
		}
		if seenKey[id] {
			add(fmt.Sprintf("encryption_keys[%d]", i), "duplicate key ID %q", id)
		}
		seenKey[id] = true
	}

	// Identity provider.
	switch {
	case c.IdP.AuthURL != "" && c.IdP.TokenURL == "":
		add("idp.token_url", "is required with idp.auth_url")
	case c.IdP.AuthURL == "" && c.IdP.TokenURL != "":
		add("idp.auth_url", "is required with idp.token_url")
	}
	if c.IdP.AuthURL != "" || c.IdP.TokenURL != "" {
		// ID tokens are always verified: the issuer names the expected iss,
		// the key set signs them.
		if c.IdP.Issuer == "" {
			add("idp.issuer", "is required with idp.auth_url and idp.token_url: it names the expected iss of ID tokens")
		}
		if c.IdP.JWKSURL == "" {
			add("idp.jwks_url", "is required with idp.auth_url and idp.token_url: ID tokens are verified against its keys")
		}
	}
	for _, u := range []struct{ path, value string }{
		{"idp.issuer", c.IdP.Issuer}, {"idp.auth_url", c.IdP.AuthURL}, {"idp.token_url", c.IdP.TokenURL},
		{"idp.jwks_url", c.IdP.JWKSURL}, {"idp.entra.authority", c.IdP.Entra.Authority},
	} {
		if isAbsHTTPURL(u.value) && !isHTTPSOrLoopback(u.value) {
			add(u.path, "must be an https URL (http only on a loopback host: 127.0.0.0/8, ::1 or localhost)")
		}
	}
	// Every auth mode but basic-passthrough needs a bridge credential, and so
	// a sign-in: callers of an auth: none feed sign in too, though nothing
	// goes upstream on their behalf.
	needIdP := slices.ContainsFunc(c.Sources, func(s SourceConfig) bool { return s.Auth != "basic-passthrough" })
	if needIdP {
		if c.IdP.Issuer == "" && c.IdP.AuthURL == "" && c.IdP.TokenURL == "" {
			add("idp.issuer", "is required, or idp.auth_url and idp.token_url, when a source uses auth user, client-credentials or none: callers of those feeds sign in to the bridge (auth none only sends nothing upstream)")
		}
		if c.IdP.ClientID == "" {
			add("idp.client_id", "is required when a source uses auth user, client-credentials or none")
		}
	}
	if t := c.IdP.Entra.Tenant; t != "" && !idp.ValidTenant(t) {
		add("idp.entra.tenant", "must be a tenant ID (GUID) or a domain name")
	}
	for i, t := range c.IdP.Entra.AllowedTenants {
		if !idp.ValidTenant(t) {
			add(fmt.Sprintf("idp.entra.allowed_tenants[%d]", i), "must be a tenant ID (GUID) or a domain name")
		}
	}
	if c.IdP.Entra.OrgAccount {
		if c.IdP.ClientID == "" && !needIdP {
			add("idp.client_id", "is required with idp.entra.org_account")
		}
		if c.IdP.Entra.Tenant == "" && len(c.IdP.Entra.AllowedTenants) == 0 {
			// Entra's multi-tenant endpoints (common, organizations) issue
			// valid tokens to every tenant in the world.
			add("idp.entra.allowed_tenants", "is required with idp.entra.org_account unless idp.entra.tenant is set: a multi-tenant bridge would accept tokens of any Entra tenant; set idp.entra.tenant or list the tenants in idp.entra.allowed_tenants")
		}
		for i, s := range c.Sources {
			if s.Auth == "user" && s.resource(c.IdP.Resource) == "" {
				add(fmt.Sprintf("sources[%d].resource", i), "is required with idp.entra.org_account (or idp.resource): the resource of the on-behalf-of exchange")
			}
		}
	}

	// Clients.
	seenClient := map[string]bool{}
	for i, cl := range c.Clients {
		if cl.ID != "" && seenClient[cl.ID] {
			add(fmt.Sprintf("clients[%d].id", i), "duplicate client ID %q", cl.ID)
		}
		seenClient[cl.ID] = true
	}

	// Sources.
	seenSource := map[string]bool{}
	for i, s := range c.Sources {
		at := fmt.Sprintf("sources[%d]", i)
		if s.Name != "" && seenSource[s.Name] {
			add(at+".name", "duplicate source name %q", s.Name)
		}
		seenSource[s.Name] = true
		if s.Preset != "" && s.Kind == "rest" && !slices.Contains(rest.Presets(), s.Preset) {
			add(at+".preset", "must be one of: %s", strings.Join(rest.Presets(), ", "))
		}
		switch s.Kind {
		case "rest":
			if s.ODataVersion != odata.Version4 {
				add(at+".odata_version", "must be 4.0 (or empty) for kind rest: the bridge serves REST APIs as OData v4")
			}
			switch {
			case s.Preset == "" && len(s.EntitySets) == 0:
				add(at+".preset", "kind rest needs a preset or entity_sets")
			case s.Preset != "" && len(s.EntitySets) > 0:
				add(at+".entity_sets", "must be empty when preset is set")
			case len(s.EntitySets) > 0:
				if err := rest.Validate(s.EntitySets); err != nil {
					// rest joins its problems with "; ", each starting with its path "entity_sets…".
					msg := strings.TrimPrefix(err.Error(), rest.ErrMapping.Error()+": ")
					for i, part := range strings.Split(msg, "; entity_sets") {
						if i > 0 {
							part = "entity_sets" + part
						}
						path, text, ok := strings.Cut(part, ": ")
						if !ok {
							path, text = "entity_sets", part
						}
						add(at+"."+path, "%s", text)
					}
				}
			}
		case "odata":
			if p, ok := odata.LookupPreset(s.Preset); ok {
				if !strings.HasSuffix(s.URL, p.Path) {
					add(at+".url", "must end in %s for preset %s", p.Path, s.Preset)
				}
				if p.ListOnly && s.Batch {
					add(at+".batch", "must be false for preset %s: K2's OData v3 API has only the List method", s.Preset)
				}
				if s.ODataVersion != p.Version {
					add(at+".odata_version", "must be %s (or empty) for preset %s", p.Version, s.Preset)
				}
			} else if s.Preset != "" {
				add(at+".preset", "for kind odata must be %s", strings.Join(odata.Presets(), " or "))
			}
			if len(s.EntitySets) > 0 {
				add(at+".entity_sets", "is only for kind rest")
			}
		}
	}

	// Session.
	if a, r := c.Session.AccessTTL, c.Session.RefreshTTL; a > 0 && r > 0 && r <= a {
		add("session.refresh_ttl", "must be longer than session.access_ttl")
	}
	return probs
}

var (
	encryptionKeyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)
	sourceNamePattern      = regexp.MustCompile(`^[a-z0-9-]+$`)
	paramNamePattern       = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// parseEncryptionKey returns the ID of an "ID:base64" key. It is tokencache.ParseKey, the
// parser the token store uses, so validation and start-up agree; its errors never contain the key.
func parseEncryptionKey(s string) (id string, err error) {
	k, err := tokencache.ParseKey(s)
	if err != nil {
		return "", err
	}
	return k.ID, nil
}

// configValidator is built once: a validator caches struct metadata and is safe for concurrent use.
var configValidator = sync.OnceValue(func() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string { return yamlName(f) })
	str := func(check func(string) bool) validator.Func {
		return func(fl validator.FieldLevel) bool { return check(fl.Field().String()) }
	}
	for tag, fn := range map[string]validator.Func{
		"positive":       func(fl validator.FieldLevel) bool { return fl.Field().Int() > 0 },
		"listen_addr":    str(isListenAddr),
		"host_port":      str(isHostPort),
		"abs_http_url":   str(isAbsHTTPURL),
		"plain_url":      str(isPlainURL),
		"abs_uri":        str(isAbsURI),
		"redirect_uri":   str(isRedirectURI),
		"redis_url":      str(isRedisURL),
		"encryption_key": str(func(s string) bool { _, err := parseEncryptionKey(s); return err == nil }),
		"scope":          str(isScopeToken),
		"source_name":    str(sourceNamePattern.MatchString),
		"param_name":     str(paramNamePattern.MatchString),
		"size":           str(func(s string) bool { _, err := parseSize(s); return err == nil }),
	} {
		if err := v.RegisterValidation(tag, fn); err != nil {
			panic(err) // a programming error in the tag table above
		}
	}
	return v
})

// validationMessage words one validator failure; tests pin these texts.
func validationMessage(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "positive":
		return "must be a positive duration"
	case "listen_addr":
		return `must be host:port or :port, such as ":8080"`
	case "abs_http_url":
		return "must be an absolute http(s) URL"
	case "plain_url":
		return "must not carry user info, a query or a fragment"
	case "abs_uri":
		return "must be an absolute URI"
	case "redirect_uri":
		return "must be an absolute URI without a fragment"
	case "redis_url":
		return "must be a redis://, rediss:// or unix:// URL"
	case "encryption_key":
		return "must be ID:base64 of exactly 32 bytes"
	case "scope":
		return "must be an OAuth scope token, without spaces or quotes"
	case "source_name":
		return "must match [a-z0-9-]+"
	case "param_name":
		return "must contain only letters, digits, '.', '_' and '-'"
	case "size":
		return msgSize
	case "max":
		return fmt.Sprintf("must be %s or less", fe.Param())
	case "cidr|ip":
		return "must be a CIDR or an IP address"
	case "host_port":
		return "must be host:port"
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(fe.Param(), " ", ", ")
	case "min":
		if fe.Kind() == reflect.Slice {
			return fmt.Sprintf("must have at least %s entry", fe.Param())
		}
		return fmt.Sprintf("must be %s or more", fe.Param())
	}
	return fmt.Sprintf("fails the %q rule", fe.Tag())
}

func isListenAddr(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// isHTTPSOrLoopback reports whether an absolute URL is https, or http on
// a loopback host (127.0.0.0/8, ::1, localhost), where no network can read it.
func isHTTPSOrLoopback(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Scheme, "https") {
		return true
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isLoopbackAddr accepts "127.0.0.1:port", "[::1]:port" and "localhost:port".
func isLoopbackAddr(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil || !isListenAddr(s) {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isHostPort accepts "host:port" and "[v6]:port" with a port from 1 to 65535.
func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

func isAbsHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Hostname() != ""
}

func isPlainURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.User == nil && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && !strings.Contains(s, "#")
}

func isAbsURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && (u.Host != "" || u.Opaque != "" || u.Path != "")
}

// isRedirectURI follows RFC 6749 §3.1.2: absolute, and no fragment.
func isRedirectURI(s string) bool {
	return isAbsURI(s) && !strings.Contains(s, "#")
}

func isRedisURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "redis", "rediss":
		return u.Host != ""
	case "unix":
		return u.Path != ""
	}
	return false
}

// isScopeToken follows RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if b := s[i]; b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// k2RefreshURL is K2's OData service refresh on the host of a preset
// source, or "" for other sources.
func k2RefreshURL(s SourceConfig) string {
	p, ok := odata.LookupPreset(s.Preset)
	if !ok || s.Kind != "odata" {
		return ""
	}
	return p.RefreshURL(s.URL)
}

// resource is the source's effective resource for on-behalf-of and client
// credentials: its own, else its K2 preset's (https://api.k2.com), else
// idp's. Only its own, set in the configuration, asks for a token of its
// own audience (see sourceAudience).
func (s SourceConfig) resource(idpResource string) string {
	preset := ""
	if p, ok := odata.LookupPreset(s.Preset); ok && s.Kind == "odata" {
		preset = p.Resource
	}
	return cmp.Or(s.Resource, preset, idpResource)
}

// msgSize words a value that is not a size; tests pin it.
const msgSize = `must be a size such as "256MiB": a whole number and B, KiB, MiB or GiB ("0" alone keeps nothing)`

// parseSize reads a size such as "256MiB": a whole number and one of the units B, KiB,
// MiB and GiB (powers of 1024), or "0" alone.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	var unit int64
	switch strings.TrimSpace(s[i:]) {
	case "B":
		unit = 1
	case "KiB":
		unit = 1 << 10
	case "MiB":
		unit = 1 << 20
	case "GiB":
		unit = 1 << 30
	default:
		return 0, errors.New(msgSize)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > (1<<62)/unit {
		return 0, errors.New(msgSize)
	}
	return n * unit, nil
}
