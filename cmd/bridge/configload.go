// The configuration's loading: defaults, the YAML file, BRIDGE_* variables and flags.

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

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
