package main

import (
	"os"
	"testing"
)

// TestKubernetesConfigIsValid: the ConfigMap's bridge.yaml of the
// Kubernetes base passes the bridge's own loader and validation, with the
// variables the Deployment sets from its Secret.
func TestKubernetesConfigIsValid(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cfgLoadValidate(t, string(raw), map[string]string{
		"BRIDGE_REDIS_URL":         "redis://redis.example.svc:6379/0",
		"BRIDGE_IDP_CLIENT_SECRET": "secret",
		"BRIDGE_ENCRYPTION_KEYS":   testKey,
	})
	if err != nil {
		t.Fatalf("deploy/kubernetes/bridge.yaml is refused:\n%v", err)
	}
	if cfg.MetricsListen != ":9090" {
		t.Errorf("metrics_listen = %q, want :9090 (the container port named metrics)", cfg.MetricsListen)
	}
}
