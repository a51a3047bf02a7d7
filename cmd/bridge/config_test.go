package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/tokencache"
)

// cfgKey is a well-formed encryption key: ID "2026a", 32 bytes of 0x01.
var cfgKey = "2026a:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))

// cfgBase is a valid configuration that the bad-config cases start from.
const cfgBase = `
public_url: "https://bridge.example.com"
idp:
  issuer: "https://login.example.com/tenant/v2.0"
  client_id: "bridge"
`

// cfgOneSource is a valid source list for cfgBase.
const cfgOneSource = `
sources:
  - name: "k2"
    url: "https://k2.example.com/api/odata/v3/"
`

// cfgLoad writes yamlText (if any) to a config file and runs loadConfig on it with env.
// Every variable of env is also put into the process environment, as a real
// deployment would, so the check for unknown BRIDGE_* names sees it.
func cfgLoad(t *testing.T, yamlText string, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	if yamlText != "" {
		dir := t.TempDir()
		path := filepath.Join(dir, "bridge.yaml")
		if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	return loadConfig(args, cfgGetenv(env))
}

func cfgGetenv(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// cfgLoadValidate is what the bridge does at start-up: load, then validate.
func cfgLoadValidate(t *testing.T, yamlText string, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	cfg, err := cfgLoad(t, yamlText, env, args...)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		args []string
		want string
	}{
		{
			name: "missing public_url",
			yaml: "sources: []\n",
			want: "public_url: is required",
		},
		{
			name: "public_url not absolute",
			yaml: strings.Replace(cfgBase, "https://bridge.example.com", "bridge.example.com", 1),
			want: "public_url: must be an absolute http(s) URL",
		},
		{
			name: "public_url with a query",
			yaml: strings.Replace(cfgBase, "https://bridge.example.com", "https://bridge.example.com/?a=b", 1),
			want: "public_url: must not carry user info, a query or a fragment",
		},
		{
			name: "second source url relative",
			yaml: cfgBase + cfgOneSource + `  - name: "crm"
    url: "/api/crm/"
`,
			want: "sources[1].url: must be an absolute http(s) URL",
		},
		{
			name: "source url ftp",
			yaml: cfgBase + `sources: [{name: "k2", url: "ftp://k2.example.com/"}]`,
			want: "sources[0].url: must be an absolute http(s) URL",
		},
		{
			name: "missing source url",
			yaml: cfgBase + `sources: [{name: "k2"}]`,
			want: "sources[0].url: is required",
		},
		{
			name: "bad duration in the file",
			yaml: cfgBase + "session: {access_ttl: \"1 hour\"}\n",
			want: `session.access_ttl: must be a duration such as "30s" or "1h"`,
		},
		{
			name: "zero duration",
			yaml: cfgBase + "shutdown_timeout: \"0s\"\n",
			want: "shutdown_timeout: must be a positive duration",
		},
		{
			name: "negative source header_timeout",
			yaml: cfgBase + `sources: [{name: "k2", url: "https://k2.example.com/", header_timeout: "-5s"}]`,
			want: "sources[0].header_timeout: must be a positive duration",
		},
		{
			name: "duplicate source",
			yaml: cfgBase + cfgOneSource + `  - name: "k2"
    url: "https://other.example.com/"
`,
			want: `sources[1].name: duplicate source name "k2"`,
		},
		{
			name: "source name with capitals",
			yaml: cfgBase + `sources: [{name: "K2", url: "https://k2.example.com/"}]`,
			want: "sources[0].name: must match [a-z0-9-]+",
		},
		{
			name: "unknown kind",
			yaml: cfgBase + `sources: [{name: "k2", kind: "soap", url: "https://k2.example.com/"}]`,
			want: "sources[0].kind: must be one of: odata, rest",
		},
		{
			name: "unknown auth",
			yaml: cfgBase + `sources: [{name: "k2", auth: "kerberos", url: "https://k2.example.com/"}]`,
			want: "sources[0].auth: must be one of: user, client-credentials, basic-passthrough, none",
		},
		{
			name: "rest without a mapping",
			yaml: cfgBase + `sources: [{name: "wf", kind: "rest", url: "https://k2.example.com/api/workflow/v1/"}]`,
			want: "sources[0].preset: kind rest needs a preset or entity_sets",
		},
		{
			name: "unknown preset",
			yaml: cfgBase + `sources: [{name: "wf", kind: "rest", preset: "sap", url: "https://k2.example.com/"}]`,
			want: "sources[0].preset: must be one of: " + strings.Join(rest.Presets(), ", "),
		},
		{
			name: "preset on an odata source",
			yaml: cfgBase + `sources: [{name: "k2", preset: "k2-workflow", url: "https://k2.example.com/"}]`,
			want: "sources[0].preset: for kind odata must be k2-smartobjects-v4 or k2-smartobjects-v3",
		},
		{
			name: "K2 v4 preset on a v3 URL",
			yaml: cfgBase + `sources: [{name: "k2", preset: "k2-smartobjects-v4", url: "https://k2.example.com/api/odata/v3/"}]`,
			want: "sources[0].url: must end in /api/odatav4/v4/ for preset k2-smartobjects-v4",
		},
		{
			name: "K2 v3 preset with batch",
			yaml: cfgBase + `sources: [{name: "k2", preset: "k2-smartobjects-v3", url: "https://k2.example.com/api/odata/v3", batch: true}]`,
			want: "sources[0].batch: must be false for preset k2-smartobjects-v3: K2's OData v3 API has only the List method",
		},
		{
			name: "org_account without a resource",
			yaml: "public_url: \"https://bridge.example.com\"\nsources: [{name: \"k2\", url: \"https://k2.example.com/api/odata/v3/\"}]\nidp: {issuer: \"https://login.microsoftonline.com/common/v2.0\", client_id: \"c\", entra: {org_account: true, allowed_tenants: [\"contoso.onmicrosoft.com\"]}}\n",
			want: "sources[0].resource: is required with idp.entra.org_account (or idp.resource): the resource of the on-behalf-of exchange",
		},
		{
			name: "malformed tenant",
			yaml: "public_url: \"https://bridge.example.com\"\nidp: {issuer: \"https://login.microsoftonline.com/common/v2.0\", client_id: \"c\", entra: {tenant: \"../evil\"}}\n",
			want: "idp.entra.tenant: must be a tenant ID (GUID) or a domain name",
		},
		{
			name: "redis without keys",
			yaml: cfgBase + "redis: {url: \"redis://localhost:6379/0\"}\n",
			want: "encryption_keys: is required when redis is configured",
		},
		{
			name: "cluster without keys",
			yaml: cfgBase + "redis: {addrs: [\"10.0.0.1:6379\", \"10.0.0.2:6379\"]}\n",
			want: "encryption_keys: is required when redis is configured",
		},
		{
			name: "redis url of another scheme",
			yaml: cfgBase + "redis: {url: \"http://localhost:6379\"}\nencryption_keys: [\"" + cfgKey + "\"]\n",
			want: "redis.url: must be a redis://, rediss:// or unix:// URL",
		},
		{
			name: "redis url and addrs",
			yaml: cfgBase + "redis: {url: \"redis://localhost:6379\", addrs: [\"localhost:7000\"]}\nencryption_keys: [\"" + cfgKey + "\"]\n",
			want: "redis.addrs: must be empty when redis.url is set",
		},
		{
			name: "redis addr without a port",
			yaml: cfgBase + "redis: {addrs: [\"[::1]:6379\", \"redis-0\"]}\nencryption_keys: [\"" + cfgKey + "\"]\n",
			want: "redis.addrs[1]: must be host:port",
		},
		{
			name: "sentinel master without addrs",
			yaml: cfgBase + "redis: {master_name: \"mymaster\"}\n",
			want: "redis.master_name: needs redis.addrs, the Sentinel addresses",
		},
		{
			name: "malformed key: too short",
			yaml: cfgBase + "encryption_keys: [\"2026a:c2hvcnQ=\"]\n",
			want: "encryption_keys[0]: must be ID:base64 of exactly 32 bytes",
		},
		{
			name: "malformed key: no ID",
			yaml: cfgBase + "encryption_keys: [\"" + strings.TrimPrefix(cfgKey, "2026a:") + "\"]\n",
			want: "encryption_keys[0]: must be ID:base64 of exactly 32 bytes",
		},
		{
			name: "duplicate key ID",
			yaml: cfgBase + "encryption_keys: [\"" + cfgKey + "\", \"" + cfgKey + "\"]\n",
			want: `encryption_keys[1]: duplicate key ID "2026a"`,
		},
		{
			name: "bad CIDR",
			yaml: cfgBase + "trusted_proxies: [\"10.0.0.0/33\"]\n",
			want: "trusted_proxies[0]: must be a CIDR or an IP address",
		},
		{
			name: "unknown YAML key",
			yaml: cfgBase + `sources: [{name: "k2", urll: "https://k2.example.com/"}]`,
			want: "sources[0].urll: unknown key",
		},
		{
			name: "unknown top-level YAML keys, all reported",
			yaml: cfgBase + "listn: \":80\"\nsesion: {access_ttl: 1h}\n",
			want: "listn: unknown key\nsesion: unknown key",
		},
		{
			name: "wrong type in the file",
			yaml: cfgBase + `sources: [{name: "k2", url: "https://k2.example.com/", batch: "maybe"}]`,
			want: "sources[0].batch: must be true or false",
		},
		{
			name: "list where a mapping belongs",
			yaml: cfgBase + "log: [info]\n",
			want: "log: must be a mapping of keys",
		},
		{
			name: "unknown BRIDGE_ variable",
			yaml: cfgBase,
			env:  map[string]string{"BRIDGE_REDIS_URLL": "redis://localhost"},
			want: "BRIDGE_REDIS_URLL: names no configuration key",
		},
		{
			name: "bad duration in the environment",
			yaml: cfgBase,
			env:  map[string]string{"BRIDGE_SESSION_ACCESS_TTL": "soon"},
			want: `BRIDGE_SESSION_ACCESS_TTL: must be a duration such as "30s" or "1h"`,
		},
		{
			name: "bad number in the environment",
			yaml: cfgBase,
			env:  map[string]string{"BRIDGE_RATE_LIMIT_PER_KEY_PER_MINUTE": "many"},
			want: "BRIDGE_RATE_LIMIT_PER_KEY_PER_MINUTE: must be a whole number",
		},
		{
			name: "source entry out of order in the environment",
			yaml: cfgBase + cfgOneSource,
			env:  map[string]string{"BRIDGE_SOURCES_3_URL": "https://k2.example.com/"},
			want: "BRIDGE_SOURCES_3_URL: " + msgEnvGap,
		},
		{
			name: "missing identity provider",
			yaml: "public_url: \"https://bridge.example.com\"\n" + cfgOneSource,
			want: "idp.issuer: is required, or idp.auth_url and idp.token_url, when a source uses auth user, client-credentials or none: callers of those feeds sign in to the bridge (auth none only sends nothing upstream)\n" +
				"idp.client_id: is required when a source uses auth user, client-credentials or none",
		},
		{
			name: "auth_url without token_url",
			yaml: cfgBase + "  auth_url: \"https://login.example.com/authorize\"\n",
			want: "idp.token_url: is required with idp.auth_url\n" +
				"idp.jwks_url: is required with idp.auth_url and idp.token_url: ID tokens are verified against its keys",
		},
		{
			name: "client redirect URI relative",
			yaml: cfgBase + "clients: [{id: \"powerbi\", redirect_uris: [\"/views/oauthredirect.html\"]}]\n",
			want: "clients[0].redirect_uris[0]: must be an absolute URI without a fragment",
		},
		{
			name: "client without redirect URIs",
			yaml: cfgBase + "clients: [{id: \"excel\"}]\n",
			want: "clients[0].redirect_uris: must have at least 1 entry",
		},
		{
			name: "log level",
			yaml: cfgBase + "log: {level: \"verbose\"}\n",
			want: "log.level: must be one of: debug, info, warn, error",
		},
		{
			name: "negative rate limit",
			yaml: cfgBase + "rate_limit: {per_key_per_minute: -1}\n",
			want: "rate_limit.per_key_per_minute: must be 0 or more",
		},
		{
			name: "refresh shorter than access",
			yaml: cfgBase + "session: {access_ttl: \"2h\", refresh_ttl: \"1h\"}\n",
			want: "session.refresh_ttl: must be longer than session.access_ttl",
		},
		{
			name: "bad listen flag",
			yaml: cfgBase,
			args: []string{"--listen", "8080"},
			want: `listen: must be host:port or :port, such as ":8080"`,
		},
		{
			name: "scope with a space",
			yaml: cfgBase + "  scopes: [\"openid profile\"]\n",
			want: "idp.scopes[0]: must be an OAuth scope token, without spaces or quotes",
		},
		{
			name: "several problems in one message",
			yaml: `
public_url: "bridge.example.com"
redis: {url: "redis://localhost:6379/0"}
sources:
  - {name: "k2", url: "https://k2.example.com/", auth: "basic-passthrough"}
  - {name: "k2", url: "k2.example.com", auth: "basic-passthrough"}
`,
			want: "public_url: must be an absolute http(s) URL\n" +
				"sources[1].url: must be an absolute http(s) URL\n" +
				"encryption_keys: is required when redis is configured\n" +
				`sources[1].name: duplicate source name "k2"`,
		},
		{
			name: "auth none without an identity provider",
			yaml: `
public_url: "https://bridge.example.com"
sources:
  - {name: "open", url: "https://open.example.com/odata/", auth: "none"}
`,
			want: "idp.issuer: is required, or idp.auth_url and idp.token_url, when a source uses auth user, client-credentials or none: callers of those feeds sign in to the bridge (auth none only sends nothing upstream)\n" +
				"idp.client_id: is required when a source uses auth user, client-credentials or none",
		},
	}
	if len(tests) < 12 {
		t.Fatalf("only %d bad configs; the issue asks for at least 12", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cfgLoadValidate(t, tt.yaml, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("config accepted; want error %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = false for %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestYAMLSyntaxErrorNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(path, []byte("public_url: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig([]string{"--config", path}, cfgGetenv(nil))
	if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), path+": yaml: ") {
		t.Errorf("got %v; want an invalid-config error starting with %q", err, path+": yaml: ")
	}
}

func TestMissingConfigFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"--config", missing}, nil, "--config: cannot read the configuration file: "},
		{"env", nil, map[string]string{"BRIDGE_CONFIG": missing}, "BRIDGE_CONFIG: cannot read the configuration file: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(tt.args, cfgGetenv(tt.env))
			if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got %v; want an invalid-config error starting with %q", err, tt.want)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	if _, err := loadConfig([]string{"--help"}, cfgGetenv(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: got %v; want flag.ErrHelp", err)
	}
	if _, err := loadConfig([]string{"--colour"}, cfgGetenv(nil)); err == nil {
		t.Error("unknown flag accepted")
	}
	if _, err := loadConfig([]string{"extra"}, cfgGetenv(nil)); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("stray argument: got %v", err)
	}
}

// TestBadConfigExitsTwo runs check-config the way a person would and checks the exit code.
func TestBadConfigExitsTwo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(path, []byte(cfgBase+"redis: {url: \"redis://localhost:6379/0\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"check-config", "--config", path}, cfgGetenv(nil), &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("check-config: got %v; want exit code 2", err)
	}
	if got, want := err.Error(), "encryption_keys: is required when redis is configured"; got != want {
		t.Errorf("message: got %q; want %q", got, want)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := cfgLoad(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// DESIGN §5, written out independently of defaultConfig.
	want := &Config{
		Listen:          ":8080",
		ShutdownTimeout: Duration(30 * time.Second),
		Log:             LogConfig{Level: "info", Format: "json"},
		IdP: IdPConfig{
			Scopes: []string{"openid", "offline_access", "profile", "email"},
			Entra:  EntraConfig{Authority: "https://login.microsoftonline.com"},
		},
		Clients:   []ClientConfig{{ID: "powerbi", RedirectURIs: []string{"https://oauth.powerbi.com/views/oauthredirect.html"}}},
		Session:   SessionConfig{AccessTTL: Duration(time.Hour), RefreshTTL: Duration(2160 * time.Hour), HotCacheTTL: Duration(5 * time.Second)},
		Keys:      KeysConfig{APIKeyParam: "api_key", MaxPerUser: 100},
		Relay:     RelayConfig{MemoryBudget: "256MiB"},
		RateLimit: RateLimitConfig{PerKeyPerMinute: 600},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// A source and an empty client list get their defaults from the file too.
	cfg, err = cfgLoad(t, "clients: []\nsources: [{name: k2, url: \"https://k2.example.com/\"}]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Clients, cfg.Clients); diff != "" {
		t.Errorf("clients: [] (-want +got):\n%s", diff)
	}
	wantSource := SourceConfig{Name: "k2", Kind: "odata", URL: "https://k2.example.com/", Auth: "user", HeaderTimeout: Duration(60 * time.Second),
		RepeatTTL: Duration(30 * time.Second), ReadAhead: 1}
	if diff := cmp.Diff([]SourceConfig{wantSource}, cfg.Sources); diff != "" {
		t.Errorf("source defaults (-want +got):\n%s", diff)
	}
}

func TestValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.yaml: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := loadConfig([]string{"--config", f}, cfgGetenv(nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			// What check-config prints (minus redaction) reads back to the same config.
			out, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			again := defaultConfig()
			if probs := decodeConfig(out, "printed", again); len(probs) > 0 {
				t.Fatalf("printed config does not read back: %v\n%s", probs, out)
			}
			if err := again.Validate(); err != nil {
				t.Fatalf("printed config does not validate: %v", err)
			}
			if diff := cmp.Diff(cfg, again, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-file +printed):\n%s", diff)
			}
		})
	}
}

func TestFullFile(t *testing.T) {
	cfg, err := cfgLoadValidate(t, "", nil, "--config", "testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cfg.Sources), 3; got != want {
		t.Fatalf("sources: got %d; want %d", got, want)
	}
	want := []rest.EntitySet{{
		Name: "Products", Path: "products", Items: "products", Key: "id",
		Properties: []rest.Property{{Name: "id", Type: "Edm.Int64"}, {Name: "name"}},
	}}
	if diff := cmp.Diff(want, cfg.Sources[2].EntitySets); diff != "" {
		t.Errorf("entity_sets (-want +got):\n%s", diff)
	}
	if got, want := cfg.IdP.Entra.AppIDURI, "api://bridge"; got != want {
		t.Errorf("app_id_uri: got %q; want %q", got, want)
	}
}

func TestInlineEntitySetsAreValidated(t *testing.T) {
	yamlText := cfgBase + `
sources:
  - name: "catalog"
    kind: "rest"
    url: "https://catalog.example.com/api/"
    entity_sets:
      - {path: "products", key: "id", properties: [{name: "id"}]}
`
	_, err := cfgLoadValidate(t, yamlText, nil)
	if err == nil {
		t.Fatal("an entity set without a name was accepted")
	}
	if got, want := err.Error(), "sources[0].entity_sets[0].name: is required"; !strings.Contains(got, want) {
		t.Errorf("got %q; want a line %q", got, want)
	}
	// An unknown key inside the mapping is caught while reading the file.
	_, err = cfgLoad(t, cfgBase+`
sources:
  - name: "catalog"
    kind: "rest"
    url: "https://catalog.example.com/api/"
    entity_sets: [{name: "Products", pth: "products"}]
`, nil)
	if got, want := fmt.Sprint(err), "sources[0].entity_sets[0].pth: unknown key"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestNormalize(t *testing.T) {
	cfg, err := cfgLoadValidate(t, "", nil, "--config", "testdata/passthrough.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.PublicURL, "https://bridge.example.com"; got != want {
		t.Errorf("public_url: got %q; want %q", got, want)
	}
	if got, want := cfg.Sources[0].URL, "https://k2.example.com/api/odata/v3/"; got != want {
		t.Errorf("source url: got %q; want %q", got, want)
	}
	if got, want := cfg.Sources[0].HeaderTimeout, Duration(2*time.Minute); got != want {
		t.Errorf("header_timeout: got %v; want %v", got, want)
	}
}

// TestEveryScalarFromEnv sets each key's variable, as the reflection walk names it, and reads
// the value back by its YAML path through a different route: a YAML print of the config.
func TestEveryScalarFromEnv(t *testing.T) {
	env := map[string]string{}
	want := map[string]any{} // YAML path with [0] → expected value as YAML decodes it
	for i, k := range configKeys() {
		if k.Kind == kindOpaque {
			continue
		}
		name := strings.ReplaceAll(k.Env, "{n}", "0")
		path := strings.ReplaceAll(k.Path, "[]", "[0]")
		switch {
		case k.Kind == kindList:
			env[name] = fmt.Sprintf(" a%d , b%d,,", i, i)
			want[path] = []any{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)}
		case k.Default.Type() == durationType:
			env[name] = fmt.Sprintf("%ds", 100+i)
			want[path] = fmt.Sprintf("%dm%ds", (100+i)/60, (100+i)%60)
		case k.Default.Kind() == reflect.Bool:
			env[name] = "true"
			want[path] = true
		case k.Default.Kind() == reflect.Int:
			env[name] = strconv.Itoa(1000 + i)
			want[path] = 1000 + i
		case k.Default.Kind() == reflect.String:
			env[name] = fmt.Sprintf("value-%d", i)
			want[path] = fmt.Sprintf("value-%d", i)
		default:
			t.Fatalf("%s: no test value for %s", k.Path, k.Default.Type())
		}
	}
	if len(env) < 39 {
		t.Fatalf("only %d variables; the walk lost keys", len(env))
	}
	cfg, err := cfgLoad(t, "", env)
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := yaml.Unmarshal(out, &tree); err != nil {
		t.Fatal(err)
	}
	for path, w := range want {
		got := cfgLookup(t, tree, path)
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
}

var cfgPathPart = regexp.MustCompile(`^([a-z_]+)(?:\[(\d+)\])?$`)

func cfgLookup(t *testing.T, tree any, path string) any {
	t.Helper()
	for part := range strings.SplitSeq(path, ".") {
		m := cfgPathPart.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("bad path %q", path)
		}
		tree = tree.(map[string]any)[m[1]]
		if m[2] != "" {
			i, _ := strconv.Atoi(m[2])
			list, _ := tree.([]any)
			if i >= len(list) {
				t.Fatalf("%s: no entry %d", path, i)
			}
			tree = list[i]
		}
	}
	return tree
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := cfgLoadValidate(t, cfgBase+cfgOneSource, map[string]string{
		"BRIDGE_PUBLIC_URL":              "https://other.example.com",
		"BRIDGE_REDIS_URL":               "redis://127.0.0.1:6379/2",
		"BRIDGE_ENCRYPTION_KEYS":         cfgKey + ", 2025b:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)),
		"BRIDGE_TRUSTED_PROXIES":         "10.0.0.0/8,192.0.2.7",
		"BRIDGE_IDP_CLIENT_SECRET":       "from-env",
		"BRIDGE_IDP_ENTRA_ORG_ACCOUNT":   "true",
		"BRIDGE_IDP_ENTRA_TENANT":        "contoso.onmicrosoft.com",
		"BRIDGE_IDP_RESOURCE":            "https://api.k2.com",
		"BRIDGE_SESSION_ACCESS_TTL":      "90s",
		"BRIDGE_SOURCES_0_BATCH":         "1",
		"BRIDGE_SOURCES_1_NAME":          "crm",
		"BRIDGE_SOURCES_1_URL":           "https://crm.example.com/odata",
		"BRIDGE_SOURCES_1_AUTH":          "none",
		"BRIDGE_CLIENTS_0_REDIRECT_URIS": "https://oauth.powerbi.com/views/oauthredirect.html,https://excel.example.com/cb",
		"BRIDGE_CONFIG":                  "", // counts as unset
		"BRIDGE_TEST_SOMETHING":          "tests may use BRIDGE_TEST_*",
		"BRIDGE_LOG_LEVEL":               "", // empty counts as unset
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"public_url", cfg.PublicURL, "https://other.example.com"},
		{"redis.url", cfg.Redis.URL, "redis://127.0.0.1:6379/2"},
		{"encryption_keys", len(cfg.EncryptionKeys), 2},
		{"trusted_proxies", cfg.TrustedProxies, []string{"10.0.0.0/8", "192.0.2.7"}},
		{"idp.client_secret", cfg.IdP.ClientSecret, "from-env"},
		{"idp.issuer (file)", cfg.IdP.Issuer, "https://login.example.com/tenant/v2.0"},
		{"idp.entra.org_account", cfg.IdP.Entra.OrgAccount, true},
		{"session.access_ttl", cfg.Session.AccessTTL, Duration(90 * time.Second)},
		{"log.level", cfg.Log.Level, "info"},
		{"sources[0].batch", cfg.Sources[0].Batch, true},
		{"sources[0].url (file)", cfg.Sources[0].URL, "https://k2.example.com/api/odata/v3/"},
		{"sources", len(cfg.Sources), 2},
		{"sources[1]", cfg.Sources[1], SourceConfig{Name: "crm", Kind: "odata", URL: "https://crm.example.com/odata/", Auth: "none", HeaderTimeout: Duration(time.Minute),
			RepeatTTL: Duration(30 * time.Second), ReadAhead: 1}},
		{"clients[0].id", cfg.Clients[0].ID, "powerbi"},
		{"clients[0].redirect_uris", cfg.Clients[0].RedirectURIs, []string{"https://oauth.powerbi.com/views/oauthredirect.html", "https://excel.example.com/cb"}},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestLayerOrder(t *testing.T) {
	dir := t.TempDir()
	fromEnv := filepath.Join(dir, "env.yaml")
	fromFlag := filepath.Join(dir, "flag.yaml")
	for path, listen := range map[string]string{fromEnv: ":1111", fromFlag: ":2222"} {
		if err := os.WriteFile(path, []byte("listen: \""+listen+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, ":8080"},
		{"BRIDGE_CONFIG", nil, map[string]string{"BRIDGE_CONFIG": fromEnv}, ":1111"},
		{"--config beats BRIDGE_CONFIG", []string{"--config", fromFlag}, map[string]string{"BRIDGE_CONFIG": fromEnv}, ":2222"},
		{"BRIDGE_LISTEN beats the file", []string{"--config", fromFlag}, map[string]string{"BRIDGE_LISTEN": ":3333"}, ":3333"},
		{"--listen beats BRIDGE_LISTEN", []string{"--config", fromFlag, "--listen", ":4444"}, map[string]string{"BRIDGE_LISTEN": ":3333"}, ":4444"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := cfgLoad(t, "", tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != tt.want {
				t.Errorf("listen: got %q; want %q", cfg.Listen, tt.want)
			}
		})
	}
}

func TestEnvNamesAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range configKeys() {
		if k.Env == "" {
			continue
		}
		if other, dup := seen[k.Env]; dup {
			t.Errorf("%s and %s share %s", other, k.Path, k.Env)
		}
		seen[k.Env] = k.Path
		if !isConfigEnv(strings.ReplaceAll(k.Env, "{n}", "12")) {
			t.Errorf("isConfigEnv(%s) = false", k.Env)
		}
	}
	for _, name := range []string{"BRIDGE_SOURCES_URL", "BRIDGE_SOURCES_x_URL", "BRIDGE_REDIS", "BRIDGE_LOG", "BRIDGE_SOURCES_0_ENTITY_SETS"} {
		if isConfigEnv(name) {
			t.Errorf("isConfigEnv(%s) = true", name)
		}
	}
}

func TestRedacted(t *testing.T) {
	secrets := map[string]string{
		"client secret":   "idp-client-secret",
		"redis password":  "redis-password",
		"encryption key":  strings.TrimPrefix(cfgKey, "2026a:"),
		"second key":      "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
		"sentinel secret": "sentinel-pw",
	}
	cfg, err := cfgLoadValidate(t, "", map[string]string{
		"BRIDGE_ENCRYPTION_KEYS": cfgKey + ",2025b:" + secrets["second key"],
	}, "--config", "testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.IdP.TokenURL = "https://svc:" + secrets["sentinel secret"] + "@login.example.com/token"
	cfg.IdP.AuthURL = "https://login.example.com/authorize"
	before, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := printConfig(&out, cfg); err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	for what, s := range secrets {
		if strings.Contains(printed, s) {
			t.Errorf("the %s is in the printed config:\n%s", what, printed)
		}
	}
	for _, want := range []string{
		"client_secret: REDACTED",
		"url: redis://:REDACTED@redis.example.com:6379/0",
		"- 2026a:REDACTED",
		"- 2025b:REDACTED",
		"token_url: https://svc:REDACTED@login.example.com/token",
		"client_id: 11111111-1111-1111-1111-111111111111",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("printed config lacks %q:\n%s", want, printed)
		}
	}
	// Redacted copies: the config itself keeps its secrets.
	after, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("Redacted changed the config it was called on")
	}
	// An empty secret stays empty, so a missing one shows as missing.
	if got := (&Config{}).Redacted().IdP.ClientSecret; got != "" {
		t.Errorf("empty client_secret redacted to %q", got)
	}
}

// TestEncryptionKeyForms checks which key forms validation accepts; it must agree with
// tokencache.ParseKey, which the bridge uses at start-up.
func TestEncryptionKeyForms(t *testing.T) {
	b := bytes.Repeat([]byte{0xfb}, 32) // encodes with '+' and '/' in std, '-' and '_' in URL base64
	for _, tt := range []struct {
		key string
		ok  bool
	}{
		{"2026a:" + base64.StdEncoding.EncodeToString(b), true},
		{"2026a:" + base64.RawStdEncoding.EncodeToString(b), true},
		{"2026a:" + base64.URLEncoding.EncodeToString(b), true},
		{"k.1_x-y:" + base64.RawURLEncoding.EncodeToString(b), true},
		{"2026a:" + base64.StdEncoding.EncodeToString(b[:31]), false},
		{"2026a:" + base64.StdEncoding.EncodeToString(append(b, 1)), false},
		{"2026a:not base64!", false},
		{":" + base64.StdEncoding.EncodeToString(b), false},
		{"bad id:" + base64.StdEncoding.EncodeToString(b), false},
		{strings.Repeat("x", 33) + ":" + base64.StdEncoding.EncodeToString(b), false},
		{base64.StdEncoding.EncodeToString(b), false},
	} {
		cfg := defaultConfig()
		cfg.PublicURL = "https://bridge.example.com"
		cfg.EncryptionKeys = []string{tt.key}
		err := cfg.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("encryption_keys: [%q]: got %v; want ok %v", tt.key, err, tt.ok)
		}
		if err != nil {
			if got, want := err.Error(), "encryption_keys[0]: must be ID:base64 of exactly 32 bytes"; got != want {
				t.Errorf("encryption_keys: [%q]: got %q; want %q", tt.key, got, want)
			}
		}
		if _, perr := tokencache.ParseKey(tt.key); (perr == nil) != tt.ok {
			t.Errorf("tokencache.ParseKey(%q) disagrees: %v", tt.key, perr)
		}
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 2160 * time.Hour: "2160h", 90 * time.Minute: "1h30m", time.Minute: "1m",
		5 * time.Second: "5s", time.Hour + 5*time.Second: "1h0m5s", 1500 * time.Millisecond: "1.5s", 0: "0s",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q; want %q", d, got, want)
		}
		if back, err := time.ParseDuration(want); err != nil || back != d {
			t.Errorf("%q does not parse back to %v", want, d)
		}
	}
}

// TestREADMEConfigTable checks the README's configuration reference against Config, both ways:
// every key is documented with its variable and default, and every documented key exists.
func TestREADMEConfigTable(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "<!-- config-table:start -->")
	end := strings.Index(text, "<!-- config-table:end -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no config-table markers")
	}
	type row struct{ env, def string }
	rows := map[string]row{}
	var order []string
	for line := range strings.SplitSeq(text[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		clean := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		path := clean(cells[1])
		if _, dup := rows[path]; dup {
			t.Errorf("README documents %s twice", path)
		}
		rows[path] = row{env: clean(cells[2]), def: clean(cells[3])}
		order = append(order, path)
	}
	var paths []string
	for _, k := range configKeys() {
		paths = append(paths, k.Path)
		r, ok := rows[k.Path]
		if !ok {
			t.Errorf("README lacks %s", k.Path)
			continue
		}
		wantEnv := k.Env
		if wantEnv == "" {
			wantEnv = "—"
		}
		if r.env != wantEnv {
			t.Errorf("README: %s: variable %q; want %q", k.Path, r.env, wantEnv)
		}
		if want := cfgRenderDefault(k.Default); r.def != want {
			t.Errorf("README: %s: default %q; want %q", k.Path, r.def, want)
		}
	}
	for _, p := range order {
		if !slices.Contains(paths, p) {
			t.Errorf("README documents %s, which is no key of Config", p)
		}
	}
	if !slices.Equal(order, paths) {
		t.Errorf("README rows are not in Config order:\n got: %v\nwant: %v", order, paths)
	}
}

// cfgRenderDefault writes a default the way the README's table shows it.
func cfgRenderDefault(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return v.Interface().(Duration).String()
	case v.Kind() == reflect.String:
		if v.String() == "" {
			return "—"
		}
		return v.String()
	case v.Kind() == reflect.Slice:
		if v.Len() == 0 {
			return "[]"
		}
		var items []string
		for i := range v.Len() {
			items = append(items, fmt.Sprint(v.Index(i).Interface()))
		}
		return "[" + strings.Join(items, ", ") + "]"
	default:
		return fmt.Sprint(v.Interface())
	}
}

// Example_loadConfig shows the start-up sequence: load the layers, then validate once.
func Example_loadConfig() {
	env := map[string]string{
		"BRIDGE_PUBLIC_URL":     "https://bridge.example.com/",
		"BRIDGE_IDP_ISSUER":     "https://login.example.com/tenant/v2.0",
		"BRIDGE_IDP_CLIENT_ID":  "bridge",
		"BRIDGE_SOURCES_0_NAME": "k2",
		"BRIDGE_SOURCES_0_URL":  "https://k2.example.com/api/odata/v4",
	}
	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:9090"}, func(name string) string { return env[name] })
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	s := cfg.Sources[0]
	fmt.Println(cfg.Listen, cfg.PublicURL)
	fmt.Println(s.Name, s.Kind, s.Auth, s.URL, s.HeaderTimeout)
	// Output:
	// 127.0.0.1:9090 https://bridge.example.com
	// k2 odata user https://k2.example.com/api/odata/v4/ 1m
}

// FuzzDecodeConfig feeds arbitrary YAML through the reader and the validator: neither may
// panic, and a configuration they accept prints and reads back unchanged.
func FuzzDecodeConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(cfgBase + cfgOneSource))
	f.Add([]byte("sources: [~, {name: x}]\nlog: &a {level: debug}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaultConfig()
		if probs := decodeConfig(data, "fuzz", cfg); len(probs) > 0 {
			return
		}
		if err := cfg.Validate(); err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate returned %v, not an invalid-config error", err)
			}
			return
		}
		if err := printConfig(io.Discard, cfg); err != nil {
			t.Fatal(err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again := defaultConfig()
		if probs := decodeConfig(out, "printed", again); len(probs) > 0 {
			t.Fatalf("printed config does not read back: %v\n%s", probs, out)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("printed config does not validate: %v\n%s", err, out)
		}
		if diff := cmp.Diff(cfg, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// TestMetricsListenAndKeyLimit: metrics_listen and keys.max_per_user, from
// the file and the environment, with their refusals.
func TestMetricsListenAndKeyLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		env     map[string]string
		metrics string
		limit   int
		want    string // error; empty: valid
	}{
		{name: "defaults", yaml: cfgBase, metrics: "", limit: 100},
		{name: "from the file", yaml: cfgBase + "metrics_listen: \"127.0.0.1:9090\"\nkeys: {max_per_user: 5}\n", metrics: "127.0.0.1:9090", limit: 5},
		{name: "from the environment", yaml: cfgBase, env: map[string]string{"BRIDGE_METRICS_LISTEN": ":9090", "BRIDGE_KEYS_MAX_PER_USER": "7"}, metrics: ":9090", limit: 7},
		{name: "limit off", yaml: cfgBase + "keys: {max_per_user: 0}\n", limit: 0},
		{name: "negative limit", yaml: cfgBase + "keys: {max_per_user: -1}\n", want: "keys.max_per_user: must be 0 or more"},
		{name: "metrics address without a port", yaml: cfgBase + "metrics_listen: \"localhost\"\n", want: `metrics_listen: must be host:port or :port, such as ":8080"`},
		{name: "metrics on the public listener", yaml: cfgBase + "listen: \":8080\"\nmetrics_listen: \":8080\"\n", want: "metrics_listen: must differ from listen: /metrics is never served on the public listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := cfgLoadValidate(t, tc.yaml, tc.env)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MetricsListen != tc.metrics || cfg.Keys.MaxPerUser != tc.limit {
				t.Errorf("metrics_listen = %q, keys.max_per_user = %d; want %q, %d", cfg.MetricsListen, cfg.Keys.MaxPerUser, tc.metrics, tc.limit)
			}
		})
	}
}

// TestIdPTrustConfig pins the rules that keep ID tokens verified and
// organizational accounts to known tenants: explicit endpoints need the
// issuer and the key set, identity-provider URLs are https off loopback,
// and a multi-tenant bridge with org_account names its tenants.
func TestIdPTrustConfig(t *testing.T) {
	const src = "sources: [{name: \"k2\", url: \"https://k2.example.com/api/odata/v3/\", auth: \"none\"}]\n"
	const orgSrc = "sources: [{name: \"k2\", url: \"https://k2.example.com/api/odata/v3/\", resource: \"https://api.k2.com\"}]\n"
	const pub = "public_url: \"https://bridge.example.com\"\n"
	const common = "https://login.microsoftonline.com/common/v2.0"
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want string // the whole error; empty: valid
	}{
		{
			name: "explicit endpoints with issuer and key set",
			yaml: pub + src + "idp: {issuer: \"https://sso.example.com\", auth_url: \"https://sso.example.com/authorize\", token_url: \"https://sso.example.com/token\", jwks_url: \"https://sso.example.com/keys\", client_id: \"c\"}\n",
		},
		{
			name: "explicit endpoints without key set",
			yaml: pub + src + "idp: {issuer: \"https://sso.example.com\", auth_url: \"https://sso.example.com/authorize\", token_url: \"https://sso.example.com/token\", client_id: \"c\"}\n",
			want: "idp.jwks_url: is required with idp.auth_url and idp.token_url: ID tokens are verified against its keys",
		},
		{
			name: "explicit endpoints without issuer",
			yaml: pub + src + "idp: {auth_url: \"https://sso.example.com/authorize\", token_url: \"https://sso.example.com/token\", jwks_url: \"https://sso.example.com/keys\", client_id: \"c\"}\n",
			want: "idp.issuer: is required with idp.auth_url and idp.token_url: it names the expected iss of ID tokens",
		},
		{
			name: "key set from the environment",
			yaml: pub + src + "idp: {issuer: \"https://sso.example.com\", auth_url: \"https://sso.example.com/authorize\", token_url: \"https://sso.example.com/token\", client_id: \"c\"}\n",
			env:  map[string]string{"BRIDGE_IDP_JWKS_URL": "https://sso.example.com/keys"},
		},
		{
			name: "plain http off loopback",
			yaml: pub + src + "idp: {issuer: \"http://sso.example.com\", auth_url: \"http://sso.example.com/authorize\", token_url: \"http://10.0.0.7/token\", jwks_url: \"http://sso.example.com/keys\", client_id: \"c\", entra: {authority: \"http://login.example.com\"}}\n",
			want: "idp.issuer: must be an https URL (http only on a loopback host: 127.0.0.0/8, ::1 or localhost)\n" +
				"idp.auth_url: must be an https URL (http only on a loopback host: 127.0.0.0/8, ::1 or localhost)\n" +
				"idp.token_url: must be an https URL (http only on a loopback host: 127.0.0.0/8, ::1 or localhost)\n" +
				"idp.jwks_url: must be an https URL (http only on a loopback host: 127.0.0.0/8, ::1 or localhost)\n" +
				"idp.entra.authority: must be an https URL (http only on a loopback host: 127.0.0.0/8, ::1 or localhost)",
		},
		{
			name: "plain http on loopback",
			yaml: pub + src + "idp: {issuer: \"http://127.0.0.2:9000\", auth_url: \"http://localhost:9000/authorize\", token_url: \"http://[::1]:9000/token\", jwks_url: \"http://LOCALHOST:9000/keys\", client_id: \"c\", entra: {authority: \"http://127.0.0.1:9001\"}}\n",
		},
		{
			name: "org account on a multi-tenant issuer without tenants",
			yaml: pub + orgSrc + "idp: {issuer: \"" + common + "\", client_id: \"c\", entra: {org_account: true}}\n",
			want: "idp.entra.allowed_tenants: is required with idp.entra.org_account unless idp.entra.tenant is set: a multi-tenant bridge would accept tokens of any Entra tenant; set idp.entra.tenant or list the tenants in idp.entra.allowed_tenants",
		},
		{
			name: "org account with allowed tenants",
			yaml: pub + orgSrc + "idp: {issuer: \"" + common + "\", client_id: \"c\", entra: {org_account: true, allowed_tenants: [\"contoso.onmicrosoft.com\", \"6f1c2a3b-1111-4a5b-8c9d-0123456789ab\"]}}\n",
		},
		{
			name: "org account with allowed tenants from the environment",
			yaml: pub + orgSrc + "idp: {issuer: \"" + common + "\", client_id: \"c\", entra: {org_account: true}}\n",
			env:  map[string]string{"BRIDGE_IDP_ENTRA_ALLOWED_TENANTS": "contoso.onmicrosoft.com,fabrikam.com"},
		},
		{
			name: "org account with a pinned tenant",
			yaml: pub + orgSrc + "idp: {issuer: \"" + common + "\", client_id: \"c\", entra: {org_account: true, tenant: \"contoso.onmicrosoft.com\"}}\n",
		},
		{
			name: "malformed allowed tenants",
			yaml: pub + src + "idp: {issuer: \"" + common + "\", client_id: \"c\", entra: {allowed_tenants: [\"contoso.onmicrosoft.com\", \"common\", \"1.2.3.4\"]}}\n",
			want: "idp.entra.allowed_tenants[1]: must be a tenant ID (GUID) or a domain name\n" +
				"idp.entra.allowed_tenants[2]: must be a tenant ID (GUID) or a domain name",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cfgLoadValidate(t, tc.yaml, tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("config refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("config accepted; want %q", tc.want)
			case tc.want != "" && err.Error() != tc.want:
				t.Errorf("error:\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestMultiTenantOrgAccountExitsTwo: check-config refuses organizational
// accounts that would take any tenant's tokens, naming both keys.
func TestMultiTenantOrgAccountExitsTwo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	yaml := "public_url: \"https://bridge.example.com\"\n" +
		"idp: {issuer: \"https://login.microsoftonline.com/organizations/v2.0\", client_id: \"c\", resource: \"https://api.k2.com\", entra: {org_account: true}}\n" +
		"sources: [{name: \"k2\", url: \"https://k2.example.com/api/odata/v3/\"}]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"check-config", "--config", path}, cfgGetenv(nil), &bytes.Buffer{})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("check-config: got %v; want exit code 2", err)
	}
	for _, key := range []string{"idp.entra.tenant", "idp.entra.allowed_tenants"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("message %q does not name %s", err, key)
		}
	}
}

// TestRedactedJWKSURL: a password in idp.jwks_url is redacted like the
// other identity-provider URLs.
func TestRedactedJWKSURL(t *testing.T) {
	cfg := &Config{IdP: IdPConfig{JWKSURL: "https://svc:jwks-secret@login.example.com/keys"}}
	if got, want := cfg.Redacted().IdP.JWKSURL, "https://svc:REDACTED@login.example.com/keys"; got != want {
		t.Errorf("redacted jwks_url = %q, want %q", got, want)
	}
}

func TestAcceleratorConfig(t *testing.T) {
	bad := []struct {
		name string
		yaml string
		env  map[string]string
		want string
	}{
		{
			name: "memory budget without a unit",
			yaml: cfgBase + cfgOneSource + "relay: {memory_budget: \"256\"}\n",
			want: "relay.memory_budget: " + msgSize,
		},
		{
			name: "memory budget in decimal units",
			env:  map[string]string{"BRIDGE_RELAY_MEMORY_BUDGET": "256MB"},
			yaml: cfgBase + cfgOneSource,
			want: "relay.memory_budget: " + msgSize,
		},
		{
			name: "negative repeat_ttl and read_ahead",
			yaml: cfgBase + `
sources:
  - {name: "k2", url: "https://k2.example.com/", repeat_ttl: "-1s", read_ahead: -1}
`,
			want: "sources[0].repeat_ttl: must be 0 or more\nsources[0].read_ahead: must be 0 or more",
		},
		{
			name: "read_ahead too far",
			yaml: cfgBase + `
sources:
  - {name: "k2", url: "https://k2.example.com/", read_ahead: 9}
`,
			want: "sources[0].read_ahead: must be 8 or less",
		},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cfgLoadValidate(t, tt.yaml, tt.env)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}

	// 0 turns each off; the K2 presets keep the default read-ahead of one page.
	cfg, err := cfgLoadValidate(t, cfgBase+`
relay: {memory_budget: "1GiB"}
sources:
  - {name: "off", url: "https://k2.example.com/", repeat_ttl: "0", read_ahead: 0}
  - {name: "k2", url: "https://k2.example.com/api/odatav4/v4/", preset: "k2-smartobjects-v4"}
`, map[string]string{"BRIDGE_SOURCES_0_REPEAT_TTL": "0s"})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Sources[0]; s.RepeatTTL != 0 || s.ReadAhead != 0 {
		t.Errorf("off: repeat_ttl %v, read_ahead %d; want 0 and 0", s.RepeatTTL, s.ReadAhead)
	}
	if s := cfg.Sources[1]; s.RepeatTTL != Duration(30*time.Second) || s.ReadAhead != 1 {
		t.Errorf("k2: repeat_ttl %v, read_ahead %d; want 30s and 1", s.RepeatTTL, s.ReadAhead)
	}
	if p, _ := odata.LookupPreset(cfg.Sources[1].Preset); p.ReadAhead != cfg.Sources[1].ReadAhead {
		t.Errorf("preset read-ahead %d, config %d", p.ReadAhead, cfg.Sources[1].ReadAhead)
	}
	if n, err := parseSize(cfg.Relay.MemoryBudget); n != 1<<30 || err != nil {
		t.Errorf("memory_budget = %d, %v; want 1 GiB", n, err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"512B", 512, true},
		{"64KiB", 64 << 10, true},
		{"256MiB", 256 << 20, true},
		{"2 GiB", 2 << 30, true},
		{"", 0, false},
		{"256", 0, false},
		{"256MB", 0, false},
		{"-1MiB", 0, false},
		{"1.5GiB", 0, false},
		{"99999999999999GiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
