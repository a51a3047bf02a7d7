package main

import (
	"bytes"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

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
