package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-playground/validator/v10"
	"go.yaml.in/yaml/v3"

	"github.com/odata-bridge/bridge/connector"
	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/tokencache"
)

// The configuration is DESIGN §5: one YAML file (--config or BRIDGE_CONFIG), then BRIDGE_*
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

// Config is the whole configuration of the bridge, DESIGN §5 key for key.
// The zero value is not usable: start from defaultConfig or loadConfig.
type Config struct {
	// Listen is the address the HTTP server listens on; default ":8080".
	Listen string `yaml:"listen" validate:"required,listen_addr"`
	// Pprof is the loopback address of the net/http/pprof listener, set only
	// by the --pprof flag: a profile is for the person at the machine, never
	// part of a deployed config. Empty means no listener.
	Pprof string `yaml:"-"`
	// PublicURL is the base of every rewritten link and redirect, without a trailing "/"; required.
	PublicURL string `yaml:"public_url" validate:"required,abs_http_url,plain_url"`
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
	// Preset names built-in settings: for kind rest a mapping of package odata/rest such as k2-workflow,
	// for kind odata k2-smartobjects-v4 or k2-smartobjects-v3; empty by default.
	Preset string `yaml:"preset"`

	// EntitySets is the inline REST-to-OData mapping for kind rest; none by default.
	// Its keys belong to package odata/rest (rest.EntitySet), which also validates them;
	// it has no environment variables (env:"-") and one row in the README.
	EntitySets []rest.EntitySet `yaml:"entity_sets,omitempty" env:"-" validate:"-"`
}

// setDefaults resets s to a source with DESIGN §5's defaults, before the file or the environment fill it in.
func (s *SourceConfig) setDefaults() {
	*s = SourceConfig{Kind: "odata", Auth: "user", HeaderTimeout: Duration(60 * time.Second)}
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
}

// RateLimitConfig bounds the request rate.
type RateLimitConfig struct {
	// PerKeyPerMinute is the request budget of one key per minute; 0 turns it off; default 600.
	PerKeyPerMinute int `yaml:"per_key_per_minute" validate:"min=0"`
}

// defaultClients is the client list used when the configuration names none: the Power BI custom connector.
func defaultClients() []ClientConfig {
	return []ClientConfig{{ID: "powerbi", RedirectURIs: []string{"https://oauth.powerbi.com/views/oauthredirect.html"}}}
}

// defaultConfig returns the configuration with DESIGN §5's defaults and nothing else.
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
		Keys:      KeysConfig{APIKeyParam: "api_key"},
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

// loadConfig builds the configuration from DESIGN §5's layers, each overriding the one before:
// defaults, the YAML file (--config, else BRIDGE_CONFIG; none is fine), BRIDGE_* environment
// variables looked up with getenv, and the --listen flag. The --pprof flag sets Pprof.
//
// It reports every problem of the file and the environment in one *ConfigError, but it does
// not validate values: call Validate next. A BRIDGE_* variable that is set in the process
// environment and names no key is an error, except BRIDGE_CONFIG and BRIDGE_TEST_*. An empty
// variable counts as unset. flag.ErrHelp is returned wrapped for --help.
func loadConfig(args []string, getenv func(string) string) (*Config, error) {
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", "", "YAML configuration file")
	listen := fs.String("listen", "", "listen address")
	pprof := fs.String("pprof", "", "loopback address of a net/http/pprof listener")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("parse flags: unexpected argument %q", fs.Arg(0))
	}
	path, origin := *configPath, "--config"
	if path == "" {
		path, origin = getenv("BRIDGE_CONFIG"), "BRIDGE_CONFIG"
	}

	cfg := defaultConfig()
	var probs []Problem
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &ConfigError{Problems: []Problem{{Path: origin, Message: fmt.Sprintf("cannot read the configuration file: %v", err)}}}
		}
		probs = decodeConfig(data, path, cfg)
	}
	probs = append(probs, applyEnv(cfg, getenv, os.Environ())...)
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *pprof != "" {
		if !isLoopbackAddr(*pprof) {
			probs = append(probs, Problem{Path: "--pprof", Message: "must be a loopback host:port such as 127.0.0.1:6060; profiles show memory contents, tokens included"})
		}
		cfg.Pprof = *pprof
	}
	if len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	return cfg, nil
}

// decodeConfig reads YAML data named name into cfg, which holds the defaults. An unknown key
// or a value of the wrong type is reported with its path; nothing is half-applied then.
func decodeConfig(data []byte, name string, cfg *Config) []Problem {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return []Problem{{Path: name, Message: err.Error()}}
	}
	if probs := checkNode(&root, configType, name); len(probs) > 0 {
		return probs
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return []Problem{{Path: name, Message: err.Error()}}
	}
	if len(cfg.Clients) == 0 {
		cfg.Clients = defaultClients()
	}
	return nil
}

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[Duration]()
)

// keyKind sorts a configuration field into how the file and the environment treat it.
type keyKind int

const (
	kindScalar     keyKind = iota // string, bool, int or Duration: one environment variable
	kindList                      // []string: one environment variable, comma-separated
	kindStruct                    // a nested mapping: its fields are keys
	kindStructList                // a list of mappings: BRIDGE_{PATH}_{n}_{FIELD}
	kindOpaque                    // owned by another package: checked in the file, no environment variable
)

// kindOf classifies a field; f.Tag env:"-" marks a key whose inside belongs to another package.
func kindOf(f reflect.StructField) keyKind {
	if f.Tag.Get("env") == "-" {
		return kindOpaque
	}
	return kindOfType(f.Type)
}

func kindOfType(t reflect.Type) keyKind {
	switch {
	case t == durationType:
		return kindScalar
	case t.Kind() == reflect.Map || t.Kind() == reflect.Interface || t.Kind() == reflect.Pointer:
		return kindOpaque
	case t.Kind() == reflect.Struct:
		return kindStruct
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return kindStructList
	case t.Kind() == reflect.Slice:
		return kindList
	default:
		return kindScalar
	}
}

// yamlName is the key of a struct field in YAML, or "" when the field is not part of it.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// nodeChecker checks a YAML node against the Go type it will be decoded into, so that every
// unknown key and every value of the wrong type is reported with its path, not only the first.
type nodeChecker struct {
	root string // names the whole document in problems
	// seen holds the anchored nodes already checked, so that aliases cost nothing more
	// and a file of nested aliases cannot make the check exponential.
	seen map[nodeType]bool
}

type nodeType struct {
	n *yaml.Node
	t reflect.Type
}

// checkNode reports every unknown key and wrongly typed value of document root.
func checkNode(root *yaml.Node, t reflect.Type, name string) []Problem {
	c := &nodeChecker{root: name, seen: map[nodeType]bool{}}
	return c.check(root, t, "")
}

func (c *nodeChecker) check(n *yaml.Node, t reflect.Type, path string) []Problem {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
			if c.seen[nodeType{n, t}] {
				return nil
			}
			c.seen[nodeType{n, t}] = true
			continue
		}
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	at := path
	if at == "" {
		at = c.root
	}
	bad := func(msg string) []Problem { return []Problem{{Path: at, Message: msg}} }
	switch kindOfType(t) {
	case kindOpaque:
		return nil
	case kindStruct:
		if n.Kind != yaml.MappingNode {
			return bad(msgMapping)
		}
		var probs []Problem
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if key.Value == "<<" {
				continue // a YAML merge key; the decoder checks what it merges
			}
			f, ok := fieldByYAML(t, key.Value)
			if !ok {
				probs = append(probs, Problem{Path: joinPath(path, key.Value), Message: msgUnknown})
				continue
			}
			probs = append(probs, c.check(val, f.Type, joinPath(path, key.Value))...)
		}
		return probs
	case kindStructList, kindList:
		if n.Kind != yaml.SequenceNode {
			return bad(msgList)
		}
		var probs []Problem
		for i, item := range n.Content {
			probs = append(probs, c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return probs
	}
	// A scalar.
	if n.Kind != yaml.ScalarNode {
		return bad(msgString)
	}
	switch {
	case t == durationType:
		if _, err := time.ParseDuration(n.Value); err != nil {
			return bad(msgDuration)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Decode(&b) != nil {
			return bad(msgBool)
		}
	case t.Kind() == reflect.Int:
		var i int
		if n.Decode(&i) != nil {
			return bad(msgInt)
		}
	}
	return nil
}

func fieldByYAML(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// envApplier sets configuration keys from BRIDGE_* variables while walking the Config type.
type envApplier struct {
	getenv func(string) string
	used   map[string]bool
	probs  []Problem
}

// applyEnv overrides cfg from the environment: BRIDGE_ plus the upper-cased YAML path joined
// with "_" for every scalar (BRIDGE_IDP_CLIENT_SECRET); lists take comma-separated values
// (BRIDGE_TRUSTED_PROXIES); entries of sources and clients are BRIDGE_SOURCES_{n}_{KEY}, where n
// is an existing entry or the next free index, which adds an entry with the defaults.
// environ ("NAME=value" or "NAME") only serves to find BRIDGE_* names that are no key.
func applyEnv(cfg *Config, getenv func(string) string, environ []string) []Problem {
	a := &envApplier{getenv: getenv, used: map[string]bool{}}
	a.walk(reflect.ValueOf(cfg).Elem(), "", strings.TrimSuffix(envPrefix, "_"))
	var unknown []Problem
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || name == "BRIDGE_CONFIG" || strings.HasPrefix(name, "BRIDGE_TEST_") ||
			a.used[name] || getenv(name) == "" {
			continue
		}
		msg := msgEnvKey
		if isConfigEnv(name) {
			msg = msgEnvGap
		}
		unknown = append(unknown, Problem{Path: name, Message: msg})
	}
	sort.Slice(unknown, func(i, j int) bool { return unknown[i].Path < unknown[j].Path })
	return append(a.probs, unknown...)
}

func (a *envApplier) walk(v reflect.Value, path, env string) {
	t := v.Type()
	for i := range t.NumField() {
		name := yamlName(t.Field(i))
		if name == "" {
			continue
		}
		p, e, fv := joinPath(path, name), env+"_"+strings.ToUpper(name), v.Field(i)
		switch kindOf(t.Field(i)) {
		case kindOpaque:
		case kindStruct:
			a.walk(fv, p, e)
		case kindStructList:
			for j := 0; ; j++ {
				pj, ej := fmt.Sprintf("%s[%d]", p, j), fmt.Sprintf("%s_%d", e, j)
				if j < fv.Len() {
					a.walk(fv.Index(j), pj, ej)
					continue
				}
				elem := newElem(fv.Type().Elem())
				before := len(a.used)
				a.walk(elem, pj, ej)
				if len(a.used) == before {
					break
				}
				fv.Set(reflect.Append(fv, elem))
			}
		default:
			a.set(fv, e)
		}
	}
}

// newElem makes a list entry with its defaults, for an entry the environment adds.
func newElem(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if d, ok := p.Interface().(interface{ setDefaults() }); ok {
		d.setDefaults()
	}
	return p.Elem()
}

func (a *envApplier) set(fv reflect.Value, env string) {
	raw := a.getenv(env)
	if raw == "" {
		return
	}
	a.used[env] = true
	bad := func(msg string) { a.probs = append(a.probs, Problem{Path: env, Message: msg}) }
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			bad(msgDuration)
			return
		}
		fv.Set(reflect.ValueOf(Duration(d)))
	case fv.Kind() == reflect.String:
		fv.SetString(raw)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			bad(msgBool)
			return
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Int:
		i, err := strconv.Atoi(raw)
		if err != nil {
			bad(msgInt)
			return
		}
		fv.SetInt(int64(i))
	case fv.Kind() == reflect.Slice:
		fv.Set(reflect.ValueOf(splitList(raw)))
	}
}

// splitList reads a comma-separated environment list; blanks around items and empty items are dropped.
func splitList(raw string) []string {
	var out []string
	for item := range strings.SplitSeq(raw, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// configKey is one key of the configuration, as the README documents it.
type configKey struct {
	// Path is the YAML path; entries of a list are written "sources[].url".
	Path string
	// Env is the overriding variable; "{n}" stands for a list index; empty for kindOpaque.
	Env string
	// Kind says how the key is read.
	Kind keyKind
	// Default is the value before any file or variable, from defaultConfig or the entry defaults.
	Default reflect.Value
}

// configKeys walks Config and lists every leaf key, in struct order.
func configKeys() []configKey {
	var keys []configKey
	var walk func(v reflect.Value, path, env string)
	walk = func(v reflect.Value, path, env string) {
		t := v.Type()
		for i := range t.NumField() {
			name := yamlName(t.Field(i))
			if name == "" {
				continue
			}
			p, e, fv := joinPath(path, name), env+"_"+strings.ToUpper(name), v.Field(i)
			switch k := kindOf(t.Field(i)); {
			case k == kindStruct:
				walk(fv, p, e)
			case k == kindStructList:
				elem := newElem(fv.Type().Elem())
				if fv.Len() > 0 {
					elem = fv.Index(0)
				}
				walk(elem, p+"[]", e+"_{n}")
			case k == kindOpaque:
				keys = append(keys, configKey{Path: p, Kind: k, Default: fv})
			default:
				keys = append(keys, configKey{Path: p, Env: e, Kind: k, Default: fv})
			}
		}
	}
	walk(reflect.ValueOf(defaultConfig()).Elem(), "", strings.TrimSuffix(envPrefix, "_"))
	return keys
}

var configEnvPatterns = sync.OnceValue(func() []*regexp.Regexp {
	var res []*regexp.Regexp
	for _, k := range configKeys() {
		if k.Env != "" {
			res = append(res, regexp.MustCompile("^"+strings.ReplaceAll(regexp.QuoteMeta(k.Env), `\{n\}`, `[0-9]+`)+"$"))
		}
	}
	return res
})

// isConfigEnv reports whether name is the environment variable of a configuration key,
// for any list index.
func isConfigEnv(name string) bool {
	for _, re := range configEnvPatterns() {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// Validate normalizes c and then checks it whole: every problem is reported at once in one
// *ConfigError, one "path: message" line each, with YAML paths such as "sources[1].url".
// Normalizing means: public_url loses a trailing "/", source urls and aliases gain one.
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
		if p, ok := odataPresets[s.Preset]; ok && s.Kind == "odata" && s.Resource == "" {
			s.Resource = p.resource
		}
	}
}

// odataPreset is what a K2 SmartObject OData preset sets and checks.
type odataPreset struct {
	path     string // the URL's path ends in it
	resource string // the default resource of on-behalf-of and Azure AD v1
	listOnly bool   // only the List method: no $batch
}

// odataPresets are the presets of kind odata: K2's SmartObject OData APIs.
// Both cap a response at K2's record limit (1,000 by default) and page
// with next links; v3 publishes only each SmartObject's List method.
var odataPresets = map[string]odataPreset{
	"k2-smartobjects-v4": {path: "/api/odatav4/v4/", resource: "https://api.k2.com"},
	"k2-smartobjects-v3": {path: "/api/odata/v3/", resource: "https://api.k2.com", listOnly: true},
}

// k2RefreshURL is K2's OData service refresh on the host of a preset
// source, or "" for other sources.
func k2RefreshURL(s SourceConfig) string {
	p, ok := odataPresets[s.Preset]
	if !ok || s.Kind != "odata" || !strings.HasSuffix(s.URL, p.path) {
		return ""
	}
	return strings.TrimSuffix(s.URL, p.path) + "/api/odata/op/refresh"
}

// crossFieldProblems checks the rules that tie several keys together.
func (c *Config) crossFieldProblems() []Problem {
	var probs []Problem
	add := func(path, format string, args ...any) {
		probs = append(probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
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
	needIdP := slices.ContainsFunc(c.Sources, func(s SourceConfig) bool {
		return s.Auth == "user" || s.Auth == "client-credentials"
	})
	if needIdP {
		if c.IdP.Issuer == "" && c.IdP.AuthURL == "" && c.IdP.TokenURL == "" {
			add("idp.issuer", "is required, or idp.auth_url and idp.token_url, when a source uses auth user or client-credentials")
		}
		if c.IdP.ClientID == "" {
			add("idp.client_id", "is required when a source uses auth user or client-credentials")
		}
	}
	if t := c.IdP.Entra.Tenant; t != "" && !connector.ValidTenant(t) {
		add("idp.entra.tenant", "must be a tenant ID (GUID) or a domain name")
	}
	if c.IdP.Entra.OrgAccount {
		if c.IdP.ClientID == "" && !needIdP {
			add("idp.client_id", "is required with idp.entra.org_account")
		}
		for i, s := range c.Sources {
			if s.Auth == "user" && s.Resource == "" && c.IdP.Resource == "" {
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
			if p, ok := odataPresets[s.Preset]; ok {
				if !strings.HasSuffix(s.URL, p.path) {
					add(at+".url", "must end in %s for preset %s", p.path, s.Preset)
				}
				if p.listOnly && s.Batch {
					add(at+".batch", "must be false for preset %s: K2's OData v3 API has only the List method", s.Preset)
				}
			} else if s.Preset != "" {
				add(at+".preset", "for kind odata must be k2-smartobjects-v4 or k2-smartobjects-v3")
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

// Redacted returns a deep copy of c fit to print: the client secret, the key material of every
// encryption key and every password inside a URL read REDACTED.
func (c *Config) Redacted() *Config {
	r := *c
	r.TrustedProxies = slices.Clone(c.TrustedProxies)
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
