package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/powerbi"
)

// The configuration (docs/design.md, Configuration) is one YAML file (--config or BRIDGE_CONFIG), then BRIDGE_*
// environment overrides for every scalar, then the flags a person types (--listen).
// loadConfig reads it; Validate checks it in one pass; Redacted prepares it for printing.

// ErrInvalidConfig is wrapped by every error that reports a bad configuration; main exits 2 on it.
var ErrInvalidConfig = errors.New("invalid configuration")

// envPrefix starts every environment variable that overrides a configuration key.
const envPrefix = "BRIDGE_"

// redacted replaces every secret when a configuration is printed.
const redacted = "REDACTED"

// Duration is a time.Duration written as a Go duration string such as "30s" or "1h" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msgDuration)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in its shortest Go form, "1h" rather than "1h0m0s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String returns the duration in its shortest Go form, "1h" rather than "1h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Config is the whole configuration of the bridge, key for key.
// The zero value is not usable: start from defaultConfig or loadConfig.
type Config struct {
	// Listen is the address the HTTP server listens on; default ":8080".
	Listen string `yaml:"listen" validate:"required,listen_addr"`
	// Pprof is the loopback address of the net/http/pprof listener, set only
	// by the --pprof flag: a profile is for the person at the machine, never
	// part of a deployed config. Empty means no listener.
	Pprof string `yaml:"-"`
	// MetricsListen is the address of a listener of its own that serves /metrics, such as
	// ":9090"; /metrics is never served on the public listener. Empty, the default: no metrics server.
	MetricsListen string `yaml:"metrics_listen" validate:"omitempty,listen_addr"`
	// PublicURL is the base of every rewritten link and redirect, without a trailing "/"; required.
	PublicURL string `yaml:"public_url" validate:"required,abs_http_url,plain_url"`
	// Admins are the e-mail addresses, user names, subject or object IDs of the users allowed on
	// /admin, matched against the signed-in user's email, preferred_username, oid and sub; none by default.
	Admins []string `yaml:"admins" validate:"dive,required"`
	// TrustedProxies are the CIDRs or IPs whose X-Forwarded-* headers are believed; none by default.
	TrustedProxies []string `yaml:"trusted_proxies" validate:"dive,cidr|ip"`
	// ShutdownTimeout bounds how long in-flight requests may finish on shutdown; default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" validate:"positive"`
	// Log chooses the log level and format.
	Log LogConfig `yaml:"log"`
	// Redis selects the shared token store; empty means the in-memory store of one process.
	Redis RedisConfig `yaml:"redis"`
	// EncryptionKeys are "ID:base64 of 32 bytes"; the first encrypts, all decrypt; required with Redis.
	EncryptionKeys []string `yaml:"encryption_keys" validate:"dive,encryption_key"`
	// IdP is the identity provider the bridge signs users in with.
	IdP IdPConfig `yaml:"idp"`
	// Clients are the OAuth clients of the bridge itself; default: the one "powerbi" client.
	Clients []ClientConfig `yaml:"clients" validate:"dive"`
	// Sources are the upstream feeds the bridge relays; none by default.
	Sources []SourceConfig `yaml:"sources" validate:"dive"`
	// Session sets the lifetimes of bridge sessions and tokens.
	Session SessionConfig `yaml:"session"`
	// Keys configures feed keys.
	Keys KeysConfig `yaml:"keys"`
	// Relay tunes the OData relay of this replica.
	Relay RelayConfig `yaml:"relay"`
	// RateLimit bounds the request rate per key.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
}

// LogConfig chooses what the bridge logs and how.
type LogConfig struct {
	// Level is debug, info, warn or error; default info.
	Level string `yaml:"level" validate:"oneof=debug info warn error"`
	// Format is json or text; default json.
	Format string `yaml:"format" validate:"oneof=json text"`
}

// RedisConfig selects the Redis deployment behind the token store; all empty means in-memory.
type RedisConfig struct {
	// URL names one Redis server (redis://, rediss:// or unix://); empty by default.
	URL string `yaml:"url" validate:"omitempty,redis_url"`
	// Addrs are host:port pairs: several make a Cluster, with MasterName they are Sentinels; none by default.
	Addrs []string `yaml:"addrs" validate:"dive,host_port"`
	// MasterName is the Sentinel master name; empty by default.
	MasterName string `yaml:"master_name"`
}

// IdPConfig describes the identity provider: OIDC discovery through Issuer, or explicit endpoints.
type IdPConfig struct {
	// Issuer is the OIDC issuer whose discovery document is read; empty by default.
	Issuer string `yaml:"issuer" validate:"omitempty,abs_http_url"`
	// AuthURL is the authorization endpoint when discovery is not used; empty by default.
	AuthURL string `yaml:"auth_url" validate:"omitempty,abs_http_url"`
	// TokenURL is the token endpoint when discovery is not used; empty by default.
	TokenURL string `yaml:"token_url" validate:"omitempty,abs_http_url"`
	// JWKSURL is the key set that signs ID tokens, required with AuthURL and TokenURL; empty by default.
	JWKSURL string `yaml:"jwks_url" validate:"omitempty,abs_http_url"`
	// ClientID is the bridge's client ID at the identity provider; empty by default.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the bridge's client secret; empty by default; prefer BRIDGE_IDP_CLIENT_SECRET.
	ClientSecret string `yaml:"client_secret"`
	// Scopes are requested at sign-in; default openid, offline_access, profile, email.
	Scopes []string `yaml:"scopes" validate:"dive,scope"`
	// Resource is the Azure AD v1 resource parameter; empty by default.
	Resource string `yaml:"resource"`
	// Entra holds the Entra ID specifics.
	Entra EntraConfig `yaml:"entra"`
}

// EntraConfig holds what only Entra ID (Azure AD) needs.
type EntraConfig struct {
	// Authority is the Entra login host; default https://login.microsoftonline.com.
	Authority string `yaml:"authority" validate:"omitempty,abs_http_url"`
	// Tenant pins the tenant; empty (the default) accepts any tenant.
	Tenant string `yaml:"tenant"`
	// OrgAccount accepts Entra tokens on /odata and exchanges them on-behalf-of; default false.
	OrgAccount bool `yaml:"org_account"`
	// AppIDURI is the audience of incoming Entra tokens; empty (the default) means PublicURL.
	AppIDURI string `yaml:"app_id_uri" validate:"omitempty,abs_uri"`
	// AllowedTenants are the tenants (IDs or domain names) whose users are accepted besides Tenant; empty by default.
	AllowedTenants []string `yaml:"allowed_tenants"`
}

// ClientConfig is one OAuth client of the bridge's own authorization server.
type ClientConfig struct {
	// ID is the client_id the client sends; required.
	ID string `yaml:"id" validate:"required"`
	// RedirectURIs are the exact redirect URIs the client may use; at least one.
	RedirectURIs []string `yaml:"redirect_uris" validate:"min=1,dive,redirect_uri"`
}

// SourceConfig is one upstream the bridge relays under /odata/{name}/.
type SourceConfig struct {
	// Name is the URL segment, [a-z0-9-]+; required.
	Name string `yaml:"name" validate:"required,source_name"`
	// Title is shown to people; empty by default.
	Title string `yaml:"title"`
	// Kind is odata or rest; default odata.
	Kind string `yaml:"kind" validate:"oneof=odata rest"`
	// URL is the upstream base URL, normalized to end in "/"; required.
	URL string `yaml:"url" validate:"required,abs_http_url,plain_url"`
	// Aliases are other bases the upstream may print, normalized like URL; none by default.
	Aliases []string `yaml:"aliases" validate:"dive,abs_http_url,plain_url"`
	// Auth is user, client-credentials, basic-passthrough or none; default user.
	Auth string `yaml:"auth" validate:"oneof=user client-credentials basic-passthrough none"`
	// Scopes replace idp.scopes for this source; none by default.
	Scopes []string `yaml:"scopes" validate:"dive,scope"`
	// Resource is the per-source resource (Azure AD v1 and on-behalf-of); empty by default.
	Resource string `yaml:"resource"`
	// Batch relays POST $batch; default false, which answers 501.
	Batch bool `yaml:"batch"`
	// HeaderTimeout bounds the wait for the upstream's response headers; default 60s.
	HeaderTimeout Duration `yaml:"header_timeout" validate:"positive"`
	// ODataVersion is the OData version the upstream speaks, "2.0", "3.0" or "4.0"; empty (the default)
	// means learn it from the upstream's responses and keep it in the token store. Presets and kind rest set it.
	ODataVersion string `yaml:"odata_version" validate:"omitempty,oneof=2.0 3.0 4.0"`
	// RepeatTTL keeps each caller's 200 responses to GET (up to 8 MiB each) to answer the
	// caller's identical requests, and joins identical requests in flight; kind odata only.
	// 0 turns it off; default 30s.
	RepeatTTL Duration `yaml:"repeat_ttl" validate:"min=0"`
	// ReadAhead is how many next pages the bridge fetches ahead of each caller; kind odata
	// only. 0 turns it off; default 1, as the K2 presets set it.
	ReadAhead int `yaml:"read_ahead" validate:"min=0,max=8"`
	// CountRows counts the rows of every page relayed, for the operators' page, by reading
	// each byte of it (about a fifth more CPU per MB); kind odata only (kind rest always
	// counts). Default false: only whether a page names a next one is read.
	CountRows bool `yaml:"count_rows"`
	// Preset names built-in settings: for kind rest a mapping of package odata/rest such as k2-workflow,
	// for kind odata k2-smartobjects-v4 or k2-smartobjects-v3; empty by default.
	Preset string `yaml:"preset"`

	// EntitySets is the inline REST-to-OData mapping for kind rest; none by default.
	// Its keys belong to package odata/rest (rest.EntitySet), which also validates them;
	// it has no environment variables (env:"-") and one row in the README.
	EntitySets []rest.EntitySet `yaml:"entity_sets,omitempty" env:"-" validate:"-"`
}

// setDefaults resets s to a source with its documented defaults, before the file or the environment fill it in.
func (s *SourceConfig) setDefaults() {
	*s = SourceConfig{Kind: "odata", Auth: "user", HeaderTimeout: Duration(60 * time.Second),
		RepeatTTL: Duration(30 * time.Second), ReadAhead: 1}
}

// UnmarshalYAML fills a source from YAML on top of the source defaults.
// It uses the older callback form on purpose: that form keeps the decoder's KnownFields setting.
func (s *SourceConfig) UnmarshalYAML(unmarshal func(any) error) error {
	s.setDefaults()
	type plain SourceConfig
	return unmarshal((*plain)(s))
}

// SessionConfig sets the lifetimes of bridge sessions.
type SessionConfig struct {
	// AccessTTL is the lifetime of a bridge access token; default 1h.
	AccessTTL Duration `yaml:"access_ttl" validate:"positive"`
	// RefreshTTL is the sliding lifetime of a session and its refresh token; default 2160h.
	RefreshTTL Duration `yaml:"refresh_ttl" validate:"positive"`
	// HotCacheTTL bounds the in-process cache of decrypted tokens, and so the revocation delay; default 5s.
	HotCacheTTL Duration `yaml:"hot_cache_ttl" validate:"positive"`
}

// KeysConfig configures feed keys.
type KeysConfig struct {
	// APIKeyParam is the query parameter of Power BI's "Web API" credential; default api_key.
	APIKeyParam string `yaml:"api_key_param" validate:"required,param_name"`
	// MaxPerUser is how many feed keys one user may hold; POST /api/keys beyond it answers 409.
	// 0 turns the limit off; default 100.
	MaxPerUser int `yaml:"max_per_user" validate:"min=0"`
}

// RelayConfig tunes the OData relay of one replica.
type RelayConfig struct {
	// MemoryBudget bounds the responses kept for repeats and the pages read ahead, all
	// together, per replica: a size such as "256MiB" (B, KiB, MiB or GiB); "0" keeps
	// nothing; default 256MiB.
	MemoryBudget string `yaml:"memory_budget" validate:"size"`
}

// RateLimitConfig bounds the request rate.
type RateLimitConfig struct {
	// PerKeyPerMinute is the request budget of one key per minute; 0 turns it off; default 600.
	PerKeyPerMinute int `yaml:"per_key_per_minute" validate:"min=0"`
}

// defaultClients is the client list used when the configuration names none: the Power BI custom connector.
func defaultClients() []ClientConfig {
	return []ClientConfig{{ID: powerbi.DefaultClientID, RedirectURIs: []string{powerbi.RedirectURI}}}
}

// defaultConfig returns the configuration with its documented defaults and nothing else.
func defaultConfig() *Config {
	return &Config{
		Listen:          ":8080",
		ShutdownTimeout: Duration(30 * time.Second),
		Log:             LogConfig{Level: "info", Format: "json"},
		IdP: IdPConfig{
			Scopes: []string{"openid", "offline_access", "profile", "email"},
			Entra:  EntraConfig{Authority: "https://login.microsoftonline.com"},
		},
		Clients: defaultClients(),
		Session: SessionConfig{
			AccessTTL:   Duration(time.Hour),
			RefreshTTL:  Duration(2160 * time.Hour),
			HotCacheTTL: Duration(5 * time.Second),
		},
		Keys:      KeysConfig{APIKeyParam: "api_key", MaxPerUser: 100},
		Relay:     RelayConfig{MemoryBudget: "256MiB"},
		RateLimit: RateLimitConfig{PerKeyPerMinute: 600},
	}
}

// Problem is one thing wrong with a configuration, at one key.
type Problem struct {
	// Path is the YAML path ("sources[1].url"), or the environment variable or file it came from.
	Path string
	// Message says what is wrong; it never repeats the value, which may be a secret.
	Message string
}

// ConfigError reports every problem of a configuration at once, one line each.
type ConfigError struct {
	// Problems are in the order they were found.
	Problems []Problem
}

// Error lists the problems, one "path: message" line each.
func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Path)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// Messages shared by the YAML reader, the environment reader and the validator, pinned by tests.
const (
	msgDuration = `must be a duration such as "30s" or "1h"`
	msgBool     = "must be true or false"
	msgInt      = "must be a whole number"
	msgString   = "must be a single value"
	msgList     = "must be a list"
	msgMapping  = "must be a mapping of keys"
	msgUnknown  = "unknown key"
	msgEnvKey   = "names no configuration key"
	msgEnvGap   = "names a list entry that does not exist: entries are added in order from the next free index"
)

// loadConfig builds the configuration from its layers, each overriding the one before:
// defaults, the YAML file (--config, else BRIDGE_CONFIG; none is fine), BRIDGE_* environment
// variables looked up with getenv, and the --listen flag. The --pprof flag sets Pprof.
//
// It reports every problem of the file and the environment in one *ConfigError, but it does
// not validate values: call Validate next. A BRIDGE_* variable that is set in the process
