package e2e

// This file has no build tag: it runs with the unit tests wherever helm is
// available, and keeps the Helm chart and the plain manifests in step.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/hoptrace/hoptrace/internal/testenv"
)

// helmOnlyLabels are the labels Helm charts add by convention; the plain
// manifests do not carry them, and nothing selects on them.
var helmOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}

func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	cache := os.Getenv("HOPTRACE_CACHE")
	if cache == "" {
		cache = filepath.Join(os.Getenv("HOME"), ".cache", "hoptrace")
	}
	if p := filepath.Join(cache, "bin", "helm"); fileExists(p) {
		return p
	}
	testenv.Unavailable(t, "helm not found (make helm builds it into $HOPTRACE_CACHE/bin)")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// objects decodes a multi-document YAML stream into objects keyed by kind/name.
func objects(t *testing.T, data []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read YAML: %v", err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("decode YAML: %v\n%s", err, doc)
		}
		if len(obj) == 0 {
			continue // a document of comments only
		}
		meta, _ := obj["metadata"].(map[string]any)
		out[obj["kind"].(string)+"/"+meta["name"].(string)] = obj
	}
}

func dropHelmLabels(obj map[string]any) {
	for _, path := range [][]string{{"metadata", "labels"}, {"spec", "template", "metadata", "labels"}} {
		m := obj
		for _, k := range path {
			next, ok := m[k].(map[string]any)
			if !ok {
				m = nil
				break
			}
			m = next
		}
		for _, l := range helmOnlyLabels {
			delete(m, l)
		}
	}
}

// TestChartRendersThePlainManifests renders the chart with its default values
// and checks that every object of deploy/kustomization.yaml but the Namespace
// (which `helm install --create-namespace` makes) comes out the same.
func TestChartRendersThePlainManifests(t *testing.T) {
	helm := helmBinary(t)
	root := filepath.Join("..", "..")
	rendered, err := exec.Command(helm, "template", "hoptrace", filepath.Join(root, "deploy", "helm", "hoptrace"), "--namespace", "hoptrace").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("helm template: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("helm template: %v", err)
	}
	chart := objects(t, rendered)

	var kust struct {
		Resources []string `json:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &kust); err != nil {
		t.Fatal(err)
	}
	plain := map[string]map[string]any{}
	for _, f := range kust.Resources {
		data, err := os.ReadFile(filepath.Join(root, "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range objects(t, data) {
			plain[k] = v
		}
	}
	for key, want := range plain {
		if strings.HasPrefix(key, "Namespace/") {
			continue
		}
		got, ok := chart[key]
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		dropHelmLabels(got)
		if !reflect.DeepEqual(got, want) {
			gy, _ := yaml.Marshal(got)
			wy, _ := yaml.Marshal(want)
			t.Errorf("%s differs.\nchart:\n%s\nplain manifest:\n%s", key, gy, wy)
		}
		delete(chart, key)
	}
	for key := range chart {
		t.Errorf("the chart renders %s, which the plain manifests lack", key)
	}
}

// TestChartRejectsBadValues checks the chart's own validation.
func TestChartRejectsBadValues(t *testing.T) {
	helm := helmBinary(t)
	chart := filepath.Join("..", "..", "deploy", "helm", "hoptrace")
	for _, set := range []string{"sampling.rate=1.5", "host.pinDir=/tmp/pins"} {
		out, err := exec.Command(helm, "template", "hoptrace", chart, "--set", set).CombinedOutput()
		if err == nil {
			t.Errorf("helm template --set %s succeeded; want an error", set)
		} else if !strings.Contains(string(out), "must be") {
			t.Errorf("helm template --set %s: %s", set, out)
		}
	}
}

// The chart's span options become the agent's flags.
func TestChartSpanOptions(t *testing.T) {
	helm := helmBinary(t)
	out, err := exec.Command(helm, "template", "hoptrace", filepath.Join("..", "..", "deploy", "helm", "hoptrace"),
		"--show-only", "templates/daemonset.yaml", "--set", "captureHeaders={x-request-id,x-tenant}",
		"--set", "recordQuery=true", "--set-json", `routes=["/users/{id}"]`).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, arg := range []string{"--capture-header=x-request-id", "--capture-header=x-tenant", "--record-query", "--route=/users/{id}"} {
		if !strings.Contains(string(out), "- "+arg+"\n") {
			t.Errorf("rendered DaemonSet has no %s:\n%s", arg, out)
		}
	}
}

// The chart passes helm lint, strict, as users' CI would run it.
func TestChartLint(t *testing.T) {
	helm := helmBinary(t)
	out, err := exec.Command(helm, "lint", "--strict", filepath.Join("..", "..", "deploy", "helm", "hoptrace")).CombinedOutput()
	if err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
}

// The DaemonSet runs without privileged mode, with the capabilities of
// wantCaps only, a read-only root and seccomp RuntimeDefault: checked on the
// plain manifest (which TestChartRendersThePlainManifests keeps equal to the
// chart's rendering) and on a chart rendered with other host paths.
func TestDaemonSetLeastPrivilege(t *testing.T) {
	root := filepath.Join("..", "..")
	data, err := os.ReadFile(filepath.Join(root, "deploy", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, data []byte) {
		var ds appsv1.DaemonSet
		if err := yaml.UnmarshalStrict(data, &ds); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ds.Kind != "DaemonSet" {
			t.Fatalf("%s: kind %q", what, ds.Kind)
		}
		for _, p := range podSecurityProblems(ds.Spec.Template.Spec) {
			t.Errorf("%s: %s", what, p)
		}
	}
	check("deploy/daemonset.yaml", data)

	helm := helmBinary(t)
	out, err := exec.Command(helm, "template", "hoptrace", filepath.Join(root, "deploy", "helm", "hoptrace"),
		"--show-only", "templates/daemonset.yaml", "--set", "host.bpffsPath=/run/bpf", "--set", "host.pinDir=/run/bpf/ht").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	check("the chart with other host paths", out)
	// The init container works on the node's bpffs, wherever it is.
	if !strings.Contains(string(out), "--path=/run/bpf") {
		t.Errorf("mount-bpffs is not given host.bpffsPath:\n%s", out)
	}
}
