package main

import (
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exampleConfig is the commented sample configuration at the repository root.
const exampleConfig = "../../bridge.example.yaml"

// TestExampleConfigIsValid loads the sample configuration with the real loader
// and validates it, as check-config and serve do: a user who copies it starts
// from a file the bridge accepts.
func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := loadConfig([]string{"--config", exampleConfig}, cfgGetenv(nil))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// The sample shows each auth mode and kind it explains.
	var auths, kinds []string
	for _, s := range cfg.Sources {
		auths = append(auths, s.Auth)
		kinds = append(kinds, s.Kind)
	}
	for _, want := range []string{"user", "client-credentials", "basic-passthrough"} {
		if !slices.Contains(auths, want) {
			t.Errorf("no source with auth %s; sources have %v", want, auths)
		}
	}
	for _, want := range []string{"odata", "rest"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("no source of kind %s; sources have %v", want, kinds)
		}
	}
}

// TestExampleConfigHasEveryKey checks that the sample names every key of
// Config (the README's reference table lists the same keys), so a new key
// cannot be added without showing it in the sample. (A key the sample names
// that Config lacks fails TestExampleConfigIsValid: the loader refuses it.)
func TestExampleConfigHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				have[p] = true
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path+"[]")
			}
		}
	}
	walk(&doc, "")
	keys := configKeys()
	if len(keys) < 40 {
		t.Fatalf("configKeys lists only %d keys", len(keys))
	}
	for _, k := range keys {
		if !have[k.Path] {
			t.Errorf("bridge.example.yaml lacks %s", k.Path)
		}
	}
}
