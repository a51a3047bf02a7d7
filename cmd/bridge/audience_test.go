package main

import (
	"testing"

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
			SourceConfig{Name: "a", Kind: "odata", Preset: "k2-smartobjects-v4", Resource: "https://api.k2.com"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{IdP: tc.idp}
			if diff := cmp.Diff(tc.want, sourceAudience(cfg, tc.sc)); diff != "" {
				t.Errorf("sourceAudience (-want +got):\n%s", diff)
			}
		})
	}
}
