package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yml these tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Build           any                 `yaml:"build"`
	Image           string              `yaml:"image"`
	Command         any                 `yaml:"command"`
	Environment     any                 `yaml:"environment"`
	Ports           []string            `yaml:"ports"`
	Volumes         []string            `yaml:"volumes"`
	DependsOn       any                 `yaml:"depends_on"`
	Healthcheck     *composeHealthcheck `yaml:"healthcheck"`
	StopGracePeriod string              `yaml:"stop_grace_period"`
}

type composeHealthcheck struct {
	Test any `yaml:"test"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"bridge", "redis"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
	}
	return c
}

// composeWords flattens a compose command or health-check test, list or string form, into words.
func composeWords(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, w := range v {
			out = append(out, fmt.Sprint(w))
		}
		return out
	}
	return nil
}

// composeEnvironment reads a compose environment in map or "NAME=value" list form.
func composeEnvironment(t *testing.T, v any) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			env[k] = fmt.Sprint(val)
			if val == nil {
				env[k] = ""
			}
		}
	case []any:
		for _, item := range v {
			k, val, _ := strings.Cut(fmt.Sprint(item), "=")
			env[k] = val
		}
	default:
		t.Fatalf("environment of unexpected form %T", v)
	}
	return env
}

// composeVar is compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?:(:?[-?])([^}]*))?\}`)

// TestComposeEnvIsConfig checks that every BRIDGE_* variable docker-compose.yml sets is a
// configuration key, by the same walk over Config that reads the environment, and that the
// variables, filled in as an operator would, make a configuration that validates.
func TestComposeEnvIsConfig(t *testing.T) {
	c := readCompose(t)
	env := composeEnvironment(t, c.Services["bridge"].Environment)
	if len(env) == 0 {
		t.Fatal("the bridge service sets no environment")
	}
	for _, want := range []string{"BRIDGE_REDIS_URL", "BRIDGE_PUBLIC_URL", "BRIDGE_ENCRYPTION_KEYS", "BRIDGE_IDP_ISSUER", "BRIDGE_IDP_CLIENT_ID", "BRIDGE_IDP_CLIENT_SECRET"} {
		if _, ok := env[want]; !ok {
			t.Errorf("the bridge service does not set %s", want)
		}
	}
	for name := range env {
		if !strings.HasPrefix(name, envPrefix) {
			t.Errorf("%s is not a BRIDGE_* variable; the bridge would ignore it", name)
			continue
		}
		if name != "BRIDGE_CONFIG" && !isConfigEnv(name) {
			t.Errorf("%s is no configuration key", name)
		}
	}

	// What an operator supplies for the variables the file marks as required.
	operator := map[string]string{
		"BRIDGE_ENCRYPTION_KEYS":   cfgKey,
		"BRIDGE_IDP_ISSUER":        "https://login.microsoftonline.com/tenant/v2.0",
		"BRIDGE_IDP_CLIENT_ID":     "bridge",
		"BRIDGE_IDP_CLIENT_SECRET": "secret",
		"K2_ODATA_URL":             "https://k2.example.com/api/odata/v4/",
	}
	filled := map[string]string{}
	var environ []string
	for name, val := range env {
		filled[name] = composeVar.ReplaceAllStringFunc(val, func(m string) string {
			g := composeVar.FindStringSubmatch(m)
			if v, ok := operator[g[1]]; ok {
				return v
			}
			if strings.HasSuffix(g[2], "?") {
				t.Errorf("%s requires %s, which this test does not supply", name, g[1])
			}
			return g[3] // the default, or empty
		})
		environ = append(environ, name)
	}
	cfg := defaultConfig()
	if probs := applyEnv(cfg, func(name string) string { return filled[name] }, environ); len(probs) > 0 {
		t.Fatalf("compose environment: %v", (&ConfigError{Problems: probs}).Error())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("compose environment does not validate:\n%v", err)
	}
	if cfg.Redis.URL == "" || len(cfg.Sources) == 0 {
		t.Errorf("compose config has redis.url %q and %d sources; want Redis and a source", cfg.Redis.URL, len(cfg.Sources))
	}
}

func TestComposeRedis(t *testing.T) {
	redis := readCompose(t).Services["redis"]
	if !strings.HasPrefix(redis.Image, "redis:7") {
		t.Errorf("redis image %q; want redis:7", redis.Image)
	}
	cmd := composeWords(redis.Command)
	if i := slices.Index(cmd, "--appendonly"); i < 0 || i+1 >= len(cmd) || cmd[i+1] != "yes" {
		t.Errorf("redis command %q does not turn on AOF persistence (--appendonly yes)", cmd)
	}
	if !slices.ContainsFunc(redis.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
		t.Errorf("redis volumes %q keep nothing at /data, where the AOF file lives", redis.Volumes)
	}
	if redis.Healthcheck == nil || !slices.Contains(composeWords(redis.Healthcheck.Test), "ping") {
		t.Error("redis has no health check with redis-cli ping")
	}
}

func TestComposeBridge(t *testing.T) {
	bridge := readCompose(t).Services["bridge"]
	if bridge.Build == nil {
		t.Error("the bridge service is not built from the Dockerfile")
	}
	if bridge.Healthcheck == nil || !slices.ContainsFunc(composeWords(bridge.Healthcheck.Test), func(w string) bool {
		return strings.HasSuffix(w, ":8080/healthz")
	}) {
		t.Error("the bridge has no health check on :8080/healthz")
	}
	if !strings.Contains(fmt.Sprint(bridge.DependsOn), "redis") {
		t.Error("the bridge does not depend on redis")
	}
	grace, err := time.ParseDuration(bridge.StopGracePeriod)
	if err != nil || grace <= time.Duration(defaultConfig().ShutdownTimeout) {
		t.Errorf("stop_grace_period %q must be longer than shutdown_timeout %v, or Docker kills in-flight requests",
			bridge.StopGracePeriod, defaultConfig().ShutdownTimeout)
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var froms, users []string
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "FROM" {
			froms = append(froms, f[1])
		}
		if len(f) >= 2 && f[0] == "USER" {
			users = append(users, f[1])
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("stages %q; want a golang:1.26 builder and a final stage", froms)
	}
	if len(users) == 0 || slices.ContainsFunc(users, func(u string) bool { return u == "root" || u == "0" || strings.HasPrefix(u, "0:") }) {
		t.Errorf("USER %q; want a non-root user", users)
	}
	for _, want := range []string{
		"CGO_ENABLED=0",
		"./cmd/bridge",
		"EXPOSE 8080",
		`ENTRYPOINT ["/bridge"]`,
		`CMD ["serve"]`,
		"/healthz",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
