package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
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
	EnvFile         any                 `yaml:"env_file"`
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

	// What an operator writes into .env, as the README shows it, and compose then does:
	// interpolate the environment section from .env, and pass .env itself (env_file) under it.
	dotenv := readmeDotenv(t)
	cfg, err := composeConfig(t, env, dotenv)
	if err != nil {
		t.Fatalf("compose with the README's .env does not validate:\n%v", err)
	}
	if cfg.Redis.URL == "" || len(cfg.Sources) == 0 {
		t.Fatalf("compose config has redis.url %q and %d sources; want Redis and a source", cfg.Redis.URL, len(cfg.Sources))
	}
	// The README's example is a K2 SmartObject source with its preset, whose URL rule
	// check-config enforces: the same example with K2's OData v3 path must fail.
	if got := cfg.Sources[0]; got.Preset == "" || !strings.HasPrefix(got.URL, "https://") {
		t.Errorf("README example source: preset %q, url %q; want a K2 preset and an https URL", got.Preset, got.URL)
	}
	wrong := maps.Clone(dotenv)
	wrong["BRIDGE_SOURCES_0_URL"] = "https://k2.example.com/api/odata/v4/"
	if _, err := composeConfig(t, env, wrong); err == nil || !strings.Contains(err.Error(), "sources[0].url") {
		t.Errorf("the README example with url %s: got %v; want sources[0].url refused by the preset", wrong["BRIDGE_SOURCES_0_URL"], err)
	}
}

// composeConfig builds the bridge's config the way compose starts the container: the
// environment section interpolated from dotenv (.env), over dotenv itself (env_file).
func composeConfig(t *testing.T, environment, dotenv map[string]string) (*Config, error) {
	t.Helper()
	container := maps.Clone(dotenv)
	for name, val := range environment {
		var missing string
		container[name] = composeVar.ReplaceAllStringFunc(val, func(m string) string {
			g := composeVar.FindStringSubmatch(m)
			if v := dotenv[g[1]]; v != "" {
				return v
			}
			if strings.HasSuffix(g[2], "?") {
				missing = g[1]
			}
			return g[3] // the default, or empty
		})
		if missing != "" {
			return nil, fmt.Errorf("compose: %s requires %s in .env", name, missing)
		}
	}
	var environ []string
	for name := range container {
		environ = append(environ, name)
	}
	cfg := defaultConfig()
	if probs := applyEnv(cfg, func(name string) string { return container[name] }, environ); len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readmeDotenv reads the README's example .env: the ```dotenv block of its Docker section.
// A value in angle brackets is a placeholder the operator replaces; this test fills in
// a valid value of its own.
func readmeDotenv(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(data), "```dotenv\n")
	if !ok {
		t.Fatal("README.md has no ```dotenv block with the .env for docker compose")
	}
	block, _, _ = strings.Cut(block, "```")
	placeholders := map[string]string{"BRIDGE_ENCRYPTION_KEYS": cfgKey, "BRIDGE_IDP_CLIENT_SECRET": "secret"}
	env := map[string]string{}
	for line := range strings.SplitSeq(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("README .env line %q is not NAME=value", line)
		}
		if strings.Contains(val, "<") {
			fill, ok := placeholders[name]
			if !ok {
				t.Fatalf("README .env: %s is a placeholder this test cannot fill", name)
			}
			val = fill
		}
		env[name] = val
	}
	return env
}

// TestComposeReadsEnvFile: compose hands .env to the bridge whole, so every BRIDGE_*
// variable reaches it, not only those the environment section names.
func TestComposeReadsEnvFile(t *testing.T) {
	var files []string
	switch v := readCompose(t).Services["bridge"].EnvFile.(type) {
	case string:
		files = []string{v}
	case []any:
		for _, f := range v {
			if m, ok := f.(map[string]any); ok {
				f = m["path"]
			}
			files = append(files, fmt.Sprint(f))
		}
	}
	if !slices.Contains(files, ".env") {
		t.Errorf("the bridge service's env_file is %q; want .env", files)
	}
	if _, err := os.Stat("../../.env.example"); err != nil {
		t.Errorf("no .env.example to copy to .env: %v", err)
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
		return strings.HasSuffix(w, ":8080/readyz")
	}) {
		t.Error("the bridge has no health check on :8080/readyz (ready: the token store and the identity provider answer)")
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
		"http://127.0.0.1:8080/readyz",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

var updateEnvExample = flag.Bool("update-env-example", false, "rewrite the generated part of .env.example from README.md")

// envExampleMarker ends the hand-written head of .env.example; the rest is generated.
const envExampleMarker = "# ---- Generated from README.md's configuration table by"

// TestEnvExample: .env.example lists every BRIDGE_* variable, commented, with what the
// README says of it and what docker-compose.yml does with it. Refresh its generated part
// with: go test ./cmd/bridge -run TestEnvExample -update-env-example
func TestEnvExample(t *testing.T) {
	const path = "../../.env.example"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	head, _, ok := strings.Cut(text, envExampleMarker)
	if !ok {
		t.Fatalf(".env.example has no line starting %q", envExampleMarker)
	}
	want := head + generateEnvExample(t, composeEnvironment(t, readCompose(t).Services["bridge"].Environment))
	if *updateEnvExample {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		text = want
	}
	if text != want {
		t.Errorf(".env.example is not what README.md's configuration table makes; run\n  go test ./cmd/bridge -run TestEnvExample -update-env-example\nand review the diff")
	}

	// Both ways: every variable named is a key, and every key's variable is named.
	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# (BRIDGE_[A-Z0-9_]+)=`).FindAllStringSubmatch(text, -1) {
		named[m[1]] = true
		if m[1] != "BRIDGE_CONFIG" && !isConfigEnv(m[1]) {
			t.Errorf(".env.example names %s, which is no configuration key", m[1])
		}
	}
	for _, k := range configKeys() {
		if name := strings.ReplaceAll(k.Env, "{n}", "0"); k.Env != "" && !named[name] {
			t.Errorf(".env.example lacks a line for %s (%s)", name, k.Path)
		}
	}
	if regexp.MustCompile(`(?m)^BRIDGE_`).MatchString(text) {
		t.Error(".env.example sets a variable; every line should be commented, for the operator to choose")
	}
}

// generateEnvExample writes one commented entry per row of the README's configuration
// table that has a variable, noting what docker-compose.yml's environment does with it.
func generateEnvExample(t *testing.T, compose map[string]string) string {
	t.Helper()
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
	var b strings.Builder
	b.WriteString(envExampleMarker + "\n# go test ./cmd/bridge -run TestEnvExample -update-env-example; edit above the line only.\n")
	for line := range strings.SplitSeq(text[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		clean := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		path, env, def := clean(cells[1]), clean(cells[2]), clean(cells[3])
		meaning := strings.TrimSpace(strings.Join(cells[4:len(cells)-1], "|"))
		if !strings.HasPrefix(env, "BRIDGE_") {
			continue // file only
		}
		env = strings.ReplaceAll(env, "{n}", "0")
		title := path
		if def != "—" {
			title += " (default " + def + ")"
		}
		note := ""
		if v, ok := compose[env]; ok {
			switch g := composeVar.FindStringSubmatch(v); {
			case g == nil:
				note = fmt.Sprintf(" docker-compose.yml sets it to %s, over .env.", v)
			case strings.HasSuffix(g[2], "?"):
				note = " Required by docker-compose.yml."
			case g[2] != "":
				note = fmt.Sprintf(" docker-compose.yml's default: %s.", g[3])
			}
		}
		b.WriteString("\n")
		b.WriteString(wrapComment(title+"."+note+" "+meaning, 96))
		fmt.Fprintf(&b, "# %s=\n", env)
	}
	return b.String()
}

// wrapComment writes text as "# " lines of at most width characters where words allow.
func wrapComment(text string, width int) string {
	var b strings.Builder
	line := "#"
	for _, w := range strings.Fields(text) {
		if len(line)+1+len(w) > width && line != "#" {
			b.WriteString(line + "\n")
			line = "#"
		}
		line += " " + w
	}
	return b.String() + line + "\n"
}

// TestDockerignore: the build context leaves out secrets, history and build output, and
// keeps everything `go build ./cmd/bridge` reads, embedded files included.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.Trim(line, "/"))
		}
	}
	// ignored reports whether a pattern covers path or a parent, by Docker's rules: patterns
	// are anchored at the context's root, and a leading "**/" matches any number of
	// directories. ("!" exceptions are not used.)
	ignored := func(path string) bool {
		for _, p := range patterns {
			for dir := path; dir != "."; dir = filepath.Dir(dir) {
				if ok, _ := filepath.Match(p, dir); ok {
					return true
				}
				if rest, deep := strings.CutPrefix(p, "**/"); deep {
					parts := strings.Split(dir, "/")
					for i := range parts {
						if ok, _ := filepath.Match(rest, strings.Join(parts[i:], "/")); ok {
							return true
						}
					}
				}
			}
		}
		return false
	}
	for _, p := range []string{".git", ".env", "bridge", "node_modules", "powerbi/mcheck/node_modules/x.js", "bench/results/run.md",
		"BENCHMARKS-run.md", "cmd/bridge/bridge.test", "odata/cpu.prof"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/bridge/main.go", "connector/assets", "powerbi/connector.pq.tmpl", "odata/relay.go", "demo"} {
		if ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
}
