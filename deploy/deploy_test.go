package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/snatrace/snatrace/exporter"
	"github.com/snatrace/snatrace/internal/testenv"
)

// decodeStrict decodes one YAML document into v, failing on unknown fields.
func decodeStrict(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\n---")) {
		t.Fatalf("%s: one object per file", path)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type manifests struct {
	ns      corev1.Namespace
	ds      appsv1.DaemonSet
	svc     corev1.Service
	sm      monitoringv1.ServiceMonitor
	rule    monitoringv1.PrometheusRule
	kustomz kustomization
}

// kustomization is the subset of kustomize's schema the manifests use.
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name      string   `json:"name"`
		Namespace string   `json:"namespace"`
		Files     []string `json:"files"`
		Options   struct {
			Labels                map[string]string `json:"labels"`
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
		} `json:"options"`
	} `json:"configMapGenerator"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func load(t *testing.T) manifests {
	t.Helper()
	var m manifests
	dir := "kubernetes"
	decodeStrict(t, filepath.Join(dir, "namespace.yaml"), &m.ns)
	decodeStrict(t, filepath.Join(dir, "daemonset.yaml"), &m.ds)
	decodeStrict(t, filepath.Join(dir, "service.yaml"), &m.svc)
	decodeStrict(t, filepath.Join(dir, "servicemonitor.yaml"), &m.sm)
	decodeStrict(t, filepath.Join(dir, "prometheusrule.yaml"), &m.rule)
	decodeStrict(t, filepath.Join(dir, "kustomization.yaml"), &m.kustomz)
	for _, o := range []struct{ got, want string }{
		{m.ns.APIVersion + " " + m.ns.Kind, "v1 Namespace"},
		{m.ds.APIVersion + " " + m.ds.Kind, "apps/v1 DaemonSet"},
		{m.svc.APIVersion + " " + m.svc.Kind, "v1 Service"},
		{m.sm.APIVersion + " " + m.sm.Kind, "monitoring.coreos.com/v1 ServiceMonitor"},
		{m.rule.APIVersion + " " + m.rule.Kind, "monitoring.coreos.com/v1 PrometheusRule"},
		{m.kustomz.APIVersion + " " + m.kustomz.Kind, "kustomize.config.k8s.io/v1beta1 Kustomization"},
	} {
		if o.got != o.want {
			t.Errorf("object %q, want %q", o.got, o.want)
		}
	}
	return m
}

// manifestImage is the image reference the kustomization deploys.
func manifestImage(t *testing.T) string {
	t.Helper()
	m := load(t)
	if len(m.kustomz.Images) != 1 {
		t.Fatalf("kustomization images: %+v, want one entry", m.kustomz.Images)
	}
	im := m.kustomz.Images[0]
	if im.Name != m.ds.Spec.Template.Spec.Containers[0].Image {
		t.Fatalf("kustomization images: names %q, the DaemonSet runs %q", im.Name, m.ds.Spec.Template.Spec.Containers[0].Image)
	}
	return im.NewName + ":" + im.NewTag
}

// TestManifestsStrict decodes every manifest strictly into its API type and
// checks that the kustomization lists every file of the directory.
func TestManifestsStrict(t *testing.T) {
	m := load(t)
	files, _ := filepath.Glob("kubernetes/*")
	var listed []string
	for _, f := range files {
		base := filepath.Base(f)
		if fi, err := os.Stat(f); base != "kustomization.yaml" && err == nil && !fi.IsDir() { // trace/ is an overlay
			listed = append(listed, base)
		}
	}
	got := append(slices.Clone(m.kustomz.Resources), m.kustomz.ConfigMapGenerator[0].Files...)
	sort.Strings(got)
	sort.Strings(listed)
	if !slices.Equal(got, listed) {
		t.Errorf("kustomization lists %v, directory has %v", got, listed)
	}
	for _, ns := range []string{m.ds.Namespace, m.svc.Namespace, m.sm.Namespace, m.rule.Namespace} {
		if ns != m.ns.Name {
			t.Errorf("object in namespace %q, want %q", ns, m.ns.Name)
		}
	}
}

// TestDaemonSetContract checks what issue 6 asks of the DaemonSet.
func TestDaemonSetContract(t *testing.T) {
	m := load(t)
	spec := m.ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("hostNetwork %v hostPID %v hostIPC %v, want only hostNetwork", spec.HostNetwork, spec.HostPID, spec.HostIPC)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v, want one that tolerates every taint", spec.Tolerations)
	}
	if got := m.ds.Spec.Selector.MatchLabels; !subset(got, m.ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", got, m.ds.Spec.Template.Labels)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "exporter" {
		t.Errorf("args %v, want snatrace exporter", c.Args)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("root filesystem not read-only")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged == nil || *sc.Privileged {
		t.Errorf("privilege escalation or privileged mode allowed")
	}
	if sc == nil || sc.Capabilities == nil ||
		!reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!reflect.DeepEqual(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("capabilities %+v, want drop ALL, add NET_ADMIN and NET_RAW only", sc.Capabilities)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v limit %v", res, req.String(), lim.String())
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || !slices.Contains(c.Args, fmt.Sprintf("--listen=$(POD_IP):%d", c.Ports[0].ContainerPort)) {
		t.Errorf("ports %+v and args %v disagree", c.Ports, c.Args)
	}

	// Service -> pods, ServiceMonitor -> Service.
	if !subset(m.svc.Spec.Selector, m.ds.Spec.Template.Labels) {
		t.Errorf("service selector %v does not match the pods %v", m.svc.Spec.Selector, m.ds.Spec.Template.Labels)
	}
	if len(m.svc.Spec.Ports) != 1 || m.svc.Spec.Ports[0].TargetPort != intstr.FromString("metrics") {
		t.Errorf("service ports %+v", m.svc.Spec.Ports)
	}
	if !subset(m.sm.Spec.Selector.MatchLabels, m.svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not match the service %v", m.sm.Spec.Selector.MatchLabels, m.svc.Labels)
	}
	if len(m.sm.Spec.Endpoints) != 1 || m.sm.Spec.Endpoints[0].Port != m.svc.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor endpoints %+v", m.sm.Spec.Endpoints)
	}
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestPrometheusRuleMatchesRulesFile: the PrometheusRule carries exactly the
// groups of the rules file promtool checks.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	m := load(t)
	var file monitoringv1.PrometheusRuleSpec
	decodeStrict(t, "prometheus/snatrace.rules.yml", &file)
	if !reflect.DeepEqual(file, m.rule.Spec) {
		a, _ := json.MarshalIndent(file, "", " ")
		b, _ := json.MarshalIndent(m.rule.Spec, "", " ")
		t.Errorf("PrometheusRule differs from the rules file:\nfile %s\nmanifest %s", a, b)
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Skip(t, "needs promtool (Debian package prometheus): %v", err)
	}
	return p
}

// TestPromtool runs promtool check rules and the rule unit tests.
func TestPromtool(t *testing.T) {
	p := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "snatrace.rules.yml"},
		{"test", "rules", "snatrace.rules.test.yml"},
	} {
		cmd := exec.Command(p, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboard is the subset of Grafana's dashboard model the file uses; decoding
// is strict, so a field outside it fails the test.
type dashboard struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Timezone      string   `json:"timezone"`
	Editable      bool     `json:"editable"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Refresh       string   `json:"refresh"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Label      string          `json:"label"`
			Type       string          `json:"type"`
			Query      string          `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
			Refresh    int             `json:"refresh"`
			Multi      bool            `json:"multi"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
			Current    json.RawMessage `json:"current"`
			Hide       int             `json:"hide"`
			Sort       int             `json:"sort"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID          int        `json:"id"`
		Title       string     `json:"title"`
		Description string     `json:"description"`
		Type        string     `json:"type"`
		Datasource  datasource `json:"datasource"`
		GridPos     struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Targets []struct {
			RefID        string     `json:"refId"`
			Expr         string     `json:"expr"`
			LegendFormat string     `json:"legendFormat"`
			Instant      bool       `json:"instant"`
			Datasource   datasource `json:"datasource"`
		} `json:"targets"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
			Overrides []json.RawMessage `json:"overrides"`
		} `json:"fieldConfig"`
		Options map[string]any `json:"options"`
	} `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("kubernetes/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

// TestDashboard decodes the dashboard strictly, checks panel ids and layout,
// and has promtool parse every query (as recording rules, with the Grafana
// variables substituted).
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	ids := map[int]bool{}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	vars := strings.NewReplacer("$node", ".*", "$__rate_interval", "1m", "$__range", "1h", "${datasource}", "x")
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid %+v", p.Title, p.GridPos)
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			b, _ := json.Marshal(vars.Replace(tg.Expr))
			fmt.Fprintf(&rules, "      - record: dashboard:panel%d:%s\n        expr: %s\n", p.ID, strings.ToLower(tg.RefID), b)
		}
	}
	p := promtool(t)
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool rejects a dashboard query: %v\n%s\n%s", err, out, rules.String())
	}
}

// TestMetricNamesExist: every snatrace_* metric the rules, their tests and the
// dashboard use is one the exporter describes (its tracer metrics included).
func TestMetricNamesExist(t *testing.T) {
	ch := make(chan *prometheus.Desc, 100)
	exporter.New(exporter.WithKernelRelease("6.18.0")).Describe(ch)
	exporter.NewClashDrops(1).Describe(ch) // served with --trace
	close(ch)
	served := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		served[m[1]] = true
	}
	name := regexp.MustCompile(`\bsnatrace_[a-z_]+`)
	for _, f := range []string{"prometheus/snatrace.rules.yml", "prometheus/snatrace.rules.test.yml", "kubernetes/grafana-dashboard.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := 0
		for _, n := range name.FindAllString(string(b), -1) {
			used++
			if !served[n] {
				t.Errorf("%s uses %s, which the exporter does not serve", f, n)
			}
		}
		if used == 0 {
			t.Errorf("%s uses no snatrace metric", f)
		}
	}
}
