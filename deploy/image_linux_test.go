//go:build linux

package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/snatrace/snatrace/internal/podmantest"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// baseCache is where the image tests keep the Debian base that build.sh
// --offline makes with mmdebstrap (about a minute, once per machine).
func baseCache() string {
	if c := os.Getenv("SNATRACE_BASE_CACHE"); c != "" {
		return c
	}
	return "/var/cache/snatrace-ci/image"
}

// buildImage builds the image into p's storage with the documented command,
// deploy/image/build.sh --offline, and returns the reference it printed.
func buildImage(t testing.TB, p *podmantest.Podman) string {
	t.Helper()
	for _, b := range []string{"mmdebstrap", "go"} {
		if _, err := exec.LookPath(b); err != nil {
			testenv.Skip(t, "needs %s (.ci/run installs it)", b)
		}
	}
	cmd := exec.Command("image/build.sh", "--offline")
	cmd.Env = append(append(os.Environ(), p.Engine()...), "SNATRACE_BASE_CACHE="+baseCache())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deploy/image/build.sh --offline: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// podSpec is what a container runtime needs of the DaemonSet's pod.
type podSpec struct {
	ds appsv1.DaemonSet
	c  corev1.Container
}

func loadPod(t testing.TB) podSpec {
	t.Helper()
	var ds appsv1.DaemonSet
	decodeStrict(t, "kubernetes/daemonset.yaml", &ds)
	if len(ds.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container")
	}
	return podSpec{ds: ds, c: ds.Spec.Template.Spec.Containers[0]}
}

// runArgs are podman run's options for running the container as the
// kubelet runs it: the host network (podman runs in the node namespace), the
// manifest's user, exactly its capabilities, no new privileges, a
// read-only root without podman's tmpfs mounts, its resource limits and
// its environment with the pod IP podIP.
func (ps podSpec) runArgs(t testing.TB, podIP string) []string {
	t.Helper()
	sc := ps.c.SecurityContext
	if !ps.ds.Spec.Template.Spec.HostNetwork || sc == nil || sc.Capabilities == nil || sc.RunAsUser == nil {
		t.Fatalf("the DaemonSet lacks hostNetwork, a user or capabilities")
	}
	uid := strconv.FormatInt(*sc.RunAsUser, 10)
	args := []string{"--network=host", "--user=" + uid + ":" + uid}
	for _, c := range sc.Capabilities.Drop {
		args = append(args, "--cap-drop="+strings.ToLower(string(c)))
	}
	for _, c := range sc.Capabilities.Add {
		args = append(args, "--cap-add="+string(c))
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		args = append(args, "--security-opt=no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	if m := ps.c.Resources.Limits.Memory(); !m.IsZero() {
		args = append(args, "--memory="+strconv.FormatInt(m.Value(), 10))
	}
	if c := ps.c.Resources.Limits.Cpu(); !c.IsZero() {
		args = append(args, fmt.Sprintf("--cpus=%.3f", c.AsApproximateFloat64()))
	}
	for _, e := range ps.c.Env {
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
			t.Fatalf("env %s: only status.podIP is known to the test", e.Name)
		}
		args = append(args, "--env="+e.Name+"="+podIP)
	}
	return args
}

// containerArgs are the container's args with $(VAR) expanded from its
// environment (as the kubelet does) and the audit interval replaced.
func (ps podSpec) containerArgs(podIP, auditInterval string) []string {
	var out []string
	for _, a := range ps.c.Args {
		for _, e := range ps.c.Env {
			a = strings.ReplaceAll(a, "$("+e.Name+")", podIP)
		}
		if strings.HasPrefix(a, "--audit-interval=") {
			a = "--audit-interval=" + auditInterval
		}
		out = append(out, a)
	}
	return out
}

// ownedRules loads, besides the lab's nftables masquerade, a Docker rule in
// iptables-legacy and kube-proxy's fully-random masquerade in iptables-nft;
// neither matches the lab's pods.
func ownedRules(t *testing.T, ns *netns.NS) {
	t.Helper()
	netnstest.Run(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n",
		"iptables-legacy-restore", "--noflush", "-w")
	netnstest.Run(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n:KUBE-POSTROUTING - [0:0]\n"+
		"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"+
		"-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully\nCOMMIT\n",
		"iptables-nft-restore", "--noflush", "-w")
}

// shortDir is a short private directory: podman's socket paths are limited.
func shortDir(t testing.TB, tag string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "snt-"+tag+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// imageFacts checks the built image: its reference is the manifests', its
// labels carry the version its binary prints, it runs as the DaemonSet's
// user with snatrace as the entrypoint.
func imageFacts(t *testing.T, p *podmantest.Podman, ref string, ps podSpec) {
	t.Helper()
	if want := manifestImage(t); ref != want {
		t.Errorf("build.sh built %q, the manifests deploy %q", ref, want)
	}
	var cfg []struct {
		Size   int64
		Config struct {
			User       string
			Entrypoint []string
			Labels     map[string]string
		}
	}
	if err := json.Unmarshal([]byte(p.Run(t, "image", "inspect", ref)), &cfg); err != nil || len(cfg) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	c := cfg[0].Config
	var v struct{ Version, Revision string }
	out := p.Run(t, "run", "--rm", "--network=none", ref, "version", "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("snatrace version in the image: %v: %s", err, out)
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	if v.Version != tag || c.Labels["org.opencontainers.image.version"] != tag || v.Revision == "" ||
		c.Labels["org.opencontainers.image.revision"] != v.Revision {
		t.Errorf("tag %s, binary %+v, labels %v", tag, v, c.Labels)
	}
	if uid := strconv.FormatInt(*ps.c.SecurityContext.RunAsUser, 10); c.User != uid+":"+uid || len(c.Entrypoint) != 1 || filepath.Base(c.Entrypoint[0]) != "snatrace" {
		t.Errorf("image user %q entrypoint %v, want the DaemonSet's user %s and snatrace", c.User, c.Entrypoint, uid)
	}
	t.Logf("image %s: %d bytes (%.1f MiB)", ref, cfg[0].Size, float64(cfg[0].Size)/(1<<20))
}
