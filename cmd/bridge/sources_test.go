package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odata-bridge/bridge/tokencache"
)

func TestSourceAudience(t *testing.T) {
	idp := IdPConfig{Scopes: []string{"openid", "offline_access"}, Resource: "https://api.k2.com"}
	for _, tc := range []struct {
		name string
		idp  IdPConfig
		sc   SourceConfig
		want *tokencache.Audience
	}{
		{"no scopes or resource of its own", idp, SourceConfig{Name: "a"}, nil},
		{"the sign-in's resource", idp, SourceConfig{Name: "a", Resource: "https://api.k2.com"}, nil},
		{"the sign-in's scopes", idp, SourceConfig{Name: "a", Scopes: []string{"openid", "offline_access"}}, nil},
		{"its own resource", idp, SourceConfig{Name: "a", Resource: "https://crm.example"},
			&tokencache.Audience{Name: "a", Resource: "https://crm.example"}},
		{"its own scopes", idp, SourceConfig{Name: "a", Scopes: []string{"https://crm.example/.default"}},
			&tokencache.Audience{Name: "a", Scopes: []string{"https://crm.example/.default"}}},
		{"a preset's default resource serves on-behalf-of only", IdPConfig{},
			SourceConfig{Name: "a", Kind: "odata", Preset: "k2-smartobjects-v4"}, nil},
		{"a resource set in the configuration is the source's own, even the preset's", IdPConfig{},
			SourceConfig{Name: "a", Kind: "odata", Preset: "k2-smartobjects-v4", Resource: "https://api.k2.com"},
			&tokencache.Audience{Name: "a", Resource: "https://api.k2.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{IdP: tc.idp}
			if diff := cmp.Diff(tc.want, sourceAudience(cfg, tc.sc)); diff != "" {
				t.Errorf("sourceAudience (-want +got):\n%s", diff)
			}
		})
	}
}

func TestZeroSourcesWarn(t *testing.T) {
	for _, tc := range []struct {
		sources []SourceConfig
		warn    bool
	}{
		{nil, true},
		{[]SourceConfig{{Name: "ad", Kind: "odata", URL: "https://k2.example.com/odata/", Auth: "basic-passthrough", HeaderTimeout: Duration(time.Minute)}}, false},
	} {
		cfg := defaultConfig()
		cfg.PublicURL = "https://bridge.example.com"
		cfg.Sources = tc.sources
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		a, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		a.close()
		if got := strings.Contains(logs.String(), "no sources are configured"); got != tc.warn {
			t.Errorf("%d sources: warned %v, want %v; logs:\n%s", len(tc.sources), got, tc.warn, logs.String())
		}
	}
}
