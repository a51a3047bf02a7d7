package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/tokencache"
)

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
			name: "empty admin",
			yaml: cfgBase + "admins: [\"ada@example.com\", \"\"]\n",
			want: "admins[1]: is required",
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
		t.Fatalf("only %d bad configs; want at least 12", len(tests))
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
