package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/odata"
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
