// Package deploy holds the bridge's deployment manifests; its tests decode them into the
// Kubernetes API types, strictly, and check them against the bridge's configuration.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const base = "kubernetes"

// objects are the base's objects, one of each kind it has.
type objects struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	configMap  *corev1.ConfigMap
}

// decodeStrict decodes one manifest into the API type of its apiVersion and kind; a field
// that type lacks (a typo, a wrong indentation) is an error.
func decodeStrict(doc []byte, into *objects) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var obj any
	switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
	case "apps/v1 Deployment":
		into.deployment = &appsv1.Deployment{}
		obj = into.deployment
	case "v1 Service":
		into.service = &corev1.Service{}
		obj = into.service
	case "policy/v1 PodDisruptionBudget":
		into.pdb = &policyv1.PodDisruptionBudget{}
		obj = into.pdb
	case "autoscaling/v2 HorizontalPodAutoscaler":
		into.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
		obj = into.hpa
	case "v1 ConfigMap":
		into.configMap = &corev1.ConfigMap{}
		obj = into.configMap
	default:
		return fmt.Errorf("unexpected %s", gvk)
	}
	return unmarshalStrict(doc, obj)
}

// unmarshalStrict decodes YAML as the API server's strict decoding does: field names are
// case-sensitive (encoding/json alone would take readOnlyRootFileSystem for
// readOnlyRootFilesystem), and an unknown or duplicate field is an error.
func unmarshalStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// splitDocs splits a YAML stream into its documents.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// readKustomization decodes kustomization.yaml strictly into kustomize's own type.
func readKustomization(t *testing.T) kusttypes.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(base, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := unmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// TestManifestFilesDecodeStrictly: every file the kustomization names is decoded strictly,
// and every file in the folder is named.
func TestManifestFilesDecodeStrictly(t *testing.T) {
	k := readKustomization(t)
	used := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		used[r] = true
		data, err := os.ReadFile(filepath.Join(base, r))
		if err != nil {
			t.Errorf("resource %s: %v", r, err)
			continue
		}
		docs := splitDocs(data)
		if len(docs) == 0 {
			t.Errorf("%s holds no manifest", r)
		}
		for _, doc := range docs {
			if err := decodeStrict(doc, &objects{}); err != nil {
				t.Errorf("%s: %v", r, err)
			}
		}
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.FileSources {
			used[f] = true
			if _, err := os.Stat(filepath.Join(base, f)); err != nil {
				t.Errorf("configMapGenerator %s: %v", g.Name, err)
			}
		}
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !used[e.Name()] {
			t.Errorf("%s is in %s/ but not in kustomization.yaml, so kubectl apply -k leaves it out", e.Name(), base)
		}
	}
}

// build runs kustomize on the base, as kubectl apply -k does, and decodes every object
// of the result strictly.
func build(t *testing.T) objects {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), base)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", base, err)
	}
	var o objects
	for _, r := range rm.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(doc, &o); err != nil {
			t.Fatalf("built %s %s: %v", r.GetKind(), r.GetName(), err)
		}
	}
	for name, missing := range map[string]bool{
		"Deployment": o.deployment == nil, "Service": o.service == nil, "PodDisruptionBudget": o.pdb == nil,
		"HorizontalPodAutoscaler": o.hpa == nil, "ConfigMap": o.configMap == nil,
	} {
		if missing {
			t.Fatalf("the base builds no %s", name)
		}
	}
	return o
}

// bridgeConfig is the part of the bridge's configuration file these tests read.
type bridgeConfig struct {
	Listen          string `json:"listen"`
	MetricsListen   string `json:"metrics_listen"`
	ShutdownTimeout string `json:"shutdown_timeout"`
	Redis           struct {
		URL string `json:"url"`
	} `json:"redis"`
}

// portOf is the port of a listen address such as ":9090".
func portOf(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("bridge.yaml %s %q: %v", key, addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("bridge.yaml %s %q: %v", key, addr, err)
	}
	return int32(n)
}

func containerPort(c corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// probePort resolves a probe's port, by name or number, to a container port.
func probePort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.String {
		n, _ := containerPort(c, p.StrVal)
		return n
	}
	return p.IntVal
}

func TestDeployment(t *testing.T) {
	o := build(t)
	d := o.deployment
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the Deployment's selector %v does not match its pods' labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Non-root and locked down, in the pod's or the container's security context.
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if csc == nil {
		t.Fatal("the container has no securityContext")
	}
	nonRoot := (csc.RunAsNonRoot != nil && *csc.RunAsNonRoot) || (psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Error("runAsNonRoot is not true")
	}
	for _, uid := range []*int64{csc.RunAsUser, psc.RunAsUser} {
		if uid != nil && *uid == 0 {
			t.Error("runAsUser is 0 (root)")
		}
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v; want drop [ALL] and nothing added", csc.Capabilities)
	}

	// Probes on the http port.
	httpPort, ok := containerPort(c, "http")
	if !ok {
		t.Fatal("no container port named http")
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		if got := p.probe.HTTPGet.Path; got != p.path {
			t.Errorf("%s probe path %q, want %q", p.name, got, p.path)
		}
		if got := probePort(c, p.probe.HTTPGet.Port); got != httpPort {
			t.Errorf("%s probe port %v (%d), want the http port %d", p.name, p.probe.HTTPGet.Port.String(), got, httpPort)
		}
	}

	// Requests and limits for CPU and memory, requests within limits.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if !hasReq || !hasLim || req.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v, limit %v; want both, request ≤ limit", r, req.String(), lim.String())
		}
	}

	// Secrets come from a Secret; every BRIDGE_* variable is a configuration key.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"BRIDGE_IDP_CLIENT_SECRET", "BRIDGE_ENCRYPTION_KEYS"} {
		if e, ok := env[name]; !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s is not set from a Secret (secretKeyRef)", name)
		}
	}
	known := readmeEnvNames(t)
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "BRIDGE_") {
			continue
		}
		if e.Name != "BRIDGE_CONFIG" && !slices.ContainsFunc(known, func(re *regexp.Regexp) bool { return re.MatchString(e.Name) }) {
			t.Errorf("%s is not in README.md's configuration table: the bridge refuses a BRIDGE_* variable that names no key", e.Name)
		}
	}
	if len(known) < 20 {
		t.Errorf("read %d variables from README.md's configuration table; the table moved?", len(known))
	}
}

// readmeEnvNames are the variables of README.md's configuration table, as patterns in
// which {n}, a list index, is any number.
func readmeEnvNames(t *testing.T) []*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "<!-- config-table:start -->")
	end := strings.Index(text, "<!-- config-table:end -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no config-table markers")
	}
	var out []*regexp.Regexp
	for line := range strings.SplitSeq(text[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[2]), "`")
		if strings.HasPrefix(name, "BRIDGE_") {
			out = append(out, regexp.MustCompile("^"+strings.ReplaceAll(regexp.QuoteMeta(name), `\{n\}`, `[0-9]+`)+"$"))
		}
	}
	return out
}

// TestConfigMap: the mounted configuration is where BRIDGE_CONFIG points, its ports are the
// container's, and the pod outlives the bridge's graceful shutdown.
func TestConfigMap(t *testing.T) {
	o := build(t)
	pod := o.deployment.Spec.Template.Spec
	c := pod.Containers[0]

	data, ok := o.configMap.Data["bridge.yaml"]
	if !ok {
		t.Fatalf("the ConfigMap %s has no bridge.yaml", o.configMap.Name)
	}
	var cfg bridgeConfig
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatalf("bridge.yaml: %v", err)
	}

	// BRIDGE_CONFIG names the file the ConfigMap volume mounts.
	var mounted []string
	for _, v := range pod.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != o.configMap.Name {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name != v.Name {
				continue
			}
			if !m.ReadOnly {
				t.Errorf("the config volume is mounted writable at %s", m.MountPath)
			}
			switch {
			case m.SubPath != "":
				mounted = append(mounted, m.MountPath)
			case len(v.ConfigMap.Items) == 0:
				mounted = append(mounted, m.MountPath+"/bridge.yaml")
			default:
				for _, it := range v.ConfigMap.Items {
					if it.Key == "bridge.yaml" {
						mounted = append(mounted, m.MountPath+"/"+it.Path)
					}
				}
			}
		}
	}
	var configEnv string
	for _, e := range c.Env {
		if e.Name == "BRIDGE_CONFIG" {
			configEnv = e.Value
		}
	}
	if configEnv != "/etc/bridge/bridge.yaml" || !slices.Contains(mounted, configEnv) {
		t.Errorf("BRIDGE_CONFIG = %q, bridge.yaml of ConfigMap %s mounted at %q; want both /etc/bridge/bridge.yaml", configEnv, o.configMap.Name, mounted)
	}

	// Ports: listen is the http port, metrics_listen the metrics port (9090), and
	// Prometheus's annotation names the same.
	if p, _ := containerPort(c, "http"); cfg.Listen == "" || portOf(t, "listen", cfg.Listen) != p {
		t.Errorf("listen %q and the http container port %d differ", cfg.Listen, p)
	}
	if cfg.MetricsListen == "" {
		t.Fatal("bridge.yaml sets no metrics_listen")
	}
	mp, ok := containerPort(c, "metrics")
	if got := portOf(t, "metrics_listen", cfg.MetricsListen); !ok || got != mp || got != 9090 {
		t.Errorf("metrics_listen %q, container port metrics %d; want both 9090", cfg.MetricsListen, mp)
	}
	if got := o.deployment.Spec.Template.Annotations["prometheus.io/port"]; got != strconv.Itoa(int(mp)) {
		t.Errorf("prometheus.io/port annotation %q, want %d", got, mp)
	}

	// Grace: SIGTERM comes after the preStop hook, and the kubelet kills the process
	// terminationGracePeriodSeconds after the hook started.
	timeout, err := time.ParseDuration(cfg.ShutdownTimeout)
	if err != nil {
		t.Fatalf("bridge.yaml shutdown_timeout %q: %v", cfg.ShutdownTimeout, err)
	}
	var preStop time.Duration
	if h := c.Lifecycle; h != nil && h.PreStop != nil {
		switch {
		case h.PreStop.Exec != nil && len(h.PreStop.Exec.Command) == 2 && h.PreStop.Exec.Command[0] == "sleep":
			s, err := strconv.Atoi(h.PreStop.Exec.Command[1])
			if err != nil {
				t.Fatalf("preStop %q: %v", h.PreStop.Exec.Command, err)
			}
			preStop = time.Duration(s) * time.Second
		case h.PreStop.Sleep != nil:
			preStop = time.Duration(h.PreStop.Sleep.Seconds) * time.Second
		default:
			t.Fatalf("preStop %+v: this test knows only a sleep", h.PreStop)
		}
	}
	var grace time.Duration // the default, 30s, is too short for shutdown_timeout's default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= timeout+preStop {
		t.Errorf("terminationGracePeriodSeconds %v; want more than shutdown_timeout %v plus the preStop pause %v", grace, timeout, preStop)
	}

	// Redis is external: its URL comes from a Secret or from bridge.yaml.
	redisFromSecret := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "BRIDGE_REDIS_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	})
	if !redisFromSecret && cfg.Redis.URL == "" {
		t.Error("no Redis: neither BRIDGE_REDIS_URL from a Secret nor redis.url in bridge.yaml")
	}
}

func TestServiceAndBudgets(t *testing.T) {
	o := build(t)
	d := o.deployment
	c := d.Spec.Template.Spec.Containers[0]
	podLabels := labels.Set(d.Spec.Template.Labels)

	if !labels.SelectorFromSet(o.service.Spec.Selector).Matches(podLabels) || len(o.service.Spec.Selector) == 0 {
		t.Errorf("the Service's selector %v does not pick the bridge's pods %v", o.service.Spec.Selector, podLabels)
	}
	metrics, _ := containerPort(c, "metrics")
	for _, p := range o.service.Spec.Ports {
		target := probePort(c, p.TargetPort)
		if target == 0 {
			t.Errorf("Service port %s targets %v, which is no container port", p.Name, p.TargetPort.String())
		}
		if target == metrics || p.Port == metrics {
			t.Errorf("the Service exposes the metrics port %d; /metrics stays off the public listener", metrics)
		}
	}

	sel, err := metav1.LabelSelectorAsSelector(o.pdb.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget's selector %v does not pick the bridge's pods", o.pdb.Spec.Selector)
	}
	minAvail, maxUnavail := o.pdb.Spec.MinAvailable, o.pdb.Spec.MaxUnavailable
	switch {
	case minAvail != nil && maxUnavail == nil && minAvail.Type == intstr.Int && minAvail.IntVal == 2:
	case maxUnavail != nil && minAvail == nil && maxUnavail.Type == intstr.Int && maxUnavail.IntVal == 1:
	default:
		t.Errorf("PodDisruptionBudget minAvailable %v, maxUnavailable %v; want minAvailable 2 or maxUnavailable 1", minAvail, maxUnavail)
	}

	h := o.hpa.Spec
	if ref := h.ScaleTargetRef; ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != d.Name {
		t.Errorf("the HorizontalPodAutoscaler scales %+v, want the Deployment %s", ref, d.Name)
	}
	if h.MinReplicas == nil || *h.MinReplicas < *d.Spec.Replicas || h.MaxReplicas <= *h.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler min %v, max %d; want min ≥ the Deployment's %d replicas and max above min", h.MinReplicas, h.MaxReplicas, *d.Spec.Replicas)
	}
	cpu := slices.ContainsFunc(h.Metrics, func(m autoscalingv2.MetricSpec) bool {
		return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
	})
	if !cpu {
		t.Error("the HorizontalPodAutoscaler has no CPU utilization target")
	}
	// CPU utilization is relative to the request: without one the autoscaler cannot act.
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Error("no CPU request, so the autoscaler's utilization is undefined")
	}
}

// TestStrictDecodingRefusesTypos: the decoding above is strict, so a misspelt field fails.
func TestStrictDecodingRefusesTypos(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(base, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typo := range [][2]string{
		{"readOnlyRootFilesystem:", "readOnlyRootFileSystem:"},
		{"terminationGracePeriodSeconds:", "terminationGracePeriod:"},
		{"  replicas: 3", "  replica: 3"},
		{"    type: RollingUpdate\n", "    type: RollingUpdate\n    type: Recreate\n"},
	} {
		bad := bytes.Replace(data, []byte(typo[0]), []byte(typo[1]), 1)
		if bytes.Equal(bad, data) {
			t.Fatalf("deployment.yaml has no %q", typo[0])
		}
		if err := decodeStrict(bad, &objects{}); err == nil {
			t.Errorf("%s misspelt as %s decoded without error", typo[0], typo[1])
		}
	}
}
