package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chart = "helm/snatrace"

// helm runs the pinned Helm (go.mod's tool helm.sh/helm/v4/cmd/helm).
func helm(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("go", append([]string{"tool", "helm"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// rendered is what helm template gave, each object strictly decoded.
type rendered struct {
	ds   *appsv1.DaemonSet
	svc  *corev1.Service
	cm   *corev1.ConfigMap
	sm   *monitoringv1.ServiceMonitor
	rule *monitoringv1.PrometheusRule
}

// render runs helm template for release snatrace in namespace snatrace
// with --set values and decodes every object strictly by its kind.
func render(t *testing.T, set ...string) rendered {
	t.Helper()
	args := []string{"template", "snatrace", chart, "--namespace", "snatrace"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var r rendered
	for _, doc := range strings.Split(helm(t, args...), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var v any
		switch meta.Kind {
		case "":
			continue
		case "DaemonSet":
			r.ds = &appsv1.DaemonSet{}
			v = r.ds
		case "Service":
			r.svc = &corev1.Service{}
			v = r.svc
		case "ConfigMap":
			r.cm = &corev1.ConfigMap{}
			v = r.cm
		case "ServiceMonitor":
			r.sm = &monitoringv1.ServiceMonitor{}
			v = r.sm
		case "PrometheusRule":
			r.rule = &monitoringv1.PrometheusRule{}
			v = r.rule
		default:
			t.Fatalf("helm template renders a %s, which the test does not know", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
			t.Fatalf("%s: %v\n%s", meta.Kind, err, doc)
		}
	}
	if r.ds == nil || r.svc == nil {
		t.Fatalf("helm template rendered no DaemonSet or Service")
	}
	return r
}

// TestHelmLint: helm lint --strict passes with the defaults and with every
// switch flipped.
func TestHelmLint(t *testing.T) {
	helm(t, "lint", "--strict", chart)
	helm(t, "lint", "--strict", chart, "--set", "trace.enabled=true,serviceMonitor.enabled=false,prometheusRule.enabled=false,grafanaDashboard.enabled=false")
}

// TestHelmMatchesKustomize: with the defaults the chart renders the objects
// of deploy/kubernetes: the same DaemonSet, Service, ServiceMonitor and
// PrometheusRule specs, the same image (the kustomization's images: entry),
// the same dashboard; its copies of the rules and dashboard files are the
// originals byte for byte.
func TestHelmMatchesKustomize(t *testing.T) {
	for _, f := range [][2]string{{"prometheus/snatrace.rules.yml", chart + "/files/snatrace.rules.yml"},
		{"kubernetes/grafana-dashboard.json", chart + "/files/grafana-dashboard.json"}} {
		a, _ := os.ReadFile(f[0])
		b, _ := os.ReadFile(f[1])
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: cp %s %s", f[1], f[0], f[0], f[1])
		}
	}
	m := load(t)
	r := render(t)
	want := m.ds.Spec.DeepCopy()
	want.Template.Spec.Containers[0].Image = manifestImage(t)
	if !reflect.DeepEqual(r.ds.Spec, *want) {
		t.Errorf("DaemonSet spec differs:\nhelm %+v\nkustomize %+v", r.ds.Spec, *want)
	}
	if !reflect.DeepEqual(r.svc.Spec, m.svc.Spec) || !reflect.DeepEqual(r.sm.Spec, m.sm.Spec) || !reflect.DeepEqual(r.rule.Spec, m.rule.Spec) {
		t.Errorf("Service, ServiceMonitor or PrometheusRule spec differs from deploy/kubernetes")
	}
	for _, o := range []struct {
		kind       string
		helm, kust map[string]string
	}{{"DaemonSet", r.ds.Labels, m.ds.Labels}, {"Service", r.svc.Labels, m.svc.Labels}, {"ServiceMonitor", r.sm.Labels, m.sm.Labels}} {
		if !subset(o.kust, o.helm) {
			t.Errorf("%s labels %v lack the manifests' %v", o.kind, o.helm, o.kust)
		}
	}
	dash, _ := os.ReadFile("kubernetes/grafana-dashboard.json")
	g := m.kustomz.ConfigMapGenerator[0]
	if r.cm.Data["grafana-dashboard.json"] != strings.TrimSuffix(string(dash), "\n") || !subset(g.Options.Labels, r.cm.Labels) {
		t.Errorf("dashboard ConfigMap: labels %v, data equal: %v", r.cm.Labels, r.cm.Data["grafana-dashboard.json"] == string(dash))
	}
	var ch struct{ AppVersion string }
	b, _ := os.ReadFile(chart + "/Chart.yaml")
	if err := yaml.Unmarshal(b, &ch); err != nil || ch.AppVersion != m.kustomz.Images[0].NewTag {
		t.Errorf("Chart appVersion %q, the kustomization deploys tag %q", ch.AppVersion, m.kustomz.Images[0].NewTag)
	}
}

// TestHelmValues: each value changes what it says and nothing else; trace
// gives the kustomize trace overlay's args and capabilities.
func TestHelmValues(t *testing.T) {
	var patch appsv1.DaemonSet
	decodeStrict(t, "kubernetes/trace/daemonset-trace.yaml", &patch)
	tr := patch.Spec.Template.Spec.Containers[0]
	c := render(t, "trace.enabled=true").ds.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, tr.Args) || !reflect.DeepEqual(c.SecurityContext.Capabilities, tr.SecurityContext.Capabilities) {
		t.Errorf("trace.enabled: args %v capabilities %+v, the trace overlay has %v %+v", c.Args, c.SecurityContext.Capabilities, tr.Args, tr.SecurityContext.Capabilities)
	}
	if c := render(t, "trace.enabled=true", "trace.destinations=50").ds.Spec.Template.Spec.Containers[0]; !slices.Contains(c.Args, "--trace-destinations=50") {
		t.Errorf("trace.destinations=50: args %v", c.Args)
	}
	r := render(t, "auditInterval=15s", "image.tag=v9.9.9", "resources.limits.memory=128Mi", "tolerations=null",
		"serviceMonitor.enabled=false", "prometheusRule.enabled=false", "grafanaDashboard.enabled=false")
	spec := r.ds.Spec.Template.Spec
	c = spec.Containers[0]
	if !slices.Contains(c.Args, "--audit-interval=15s") || !strings.HasSuffix(c.Image, ":v9.9.9") ||
		c.Resources.Limits.Memory().String() != "128Mi" || len(spec.Tolerations) != 0 {
		t.Errorf("values not applied: args %v image %s limits %v tolerations %v", c.Args, c.Image, c.Resources.Limits, spec.Tolerations)
	}
	if r.sm != nil || r.rule != nil || r.cm != nil {
		t.Errorf("serviceMonitor/prometheusRule/grafanaDashboard disabled, still rendered")
	}
}
