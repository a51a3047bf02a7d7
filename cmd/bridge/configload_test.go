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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/odata-bridge/bridge/odata/rest"
)

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
	// The documented defaults (README.md, "Configuration"), written out independently of defaultConfig.
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
