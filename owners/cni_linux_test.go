//go:build linux

package owners

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// cniDir is where Debian's containernetworking-plugins installs them.
const cniDir = "/usr/lib/cni"

// cniPlugin invokes one CNI plugin as containerd, nerdctl and Kubernetes do:
// the command and container in the environment, the configuration on stdin,
// run in the node's namespace. It returns the plugin's result.
func (n *node) cniPlugin(t *testing.T, command, plugin, id string, ctr *netns.NS, conf map[string]any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(cniDir, plugin))
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + ctr.Path(), "CNI_IFNAME=eth0",
		"CNI_PATH=" + cniDir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = bytes.NewReader(b)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := n.ns.Do(cmd.Run); err != nil {
		t.Fatalf("CNI %s %s: %v: %s %s", plugin, command, err, out.String(), errb.String())
	}
	return out.Bytes()
}

// cniAdd attaches a container the way a runtime runs a conflist: bridge
// (ipMasq) then portmap (snat) with the bridge's result, and serves HTTP in
// the container. t.Cleanup detaches it (DEL in reverse order).
func (n *node) cniAdd(t *testing.T, id string, hostPort int) {
	t.Helper()
	ctr := netnstest.New(t, "c"+id)
	bridge := map[string]any{"cniVersion": "1.0.0", "name": "cbr0", "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
		"ipam": map[string]any{"type": "host-local", "subnet": "10.88.0.0/16", "dataDir": filepath.Join(n.dir, "ipam")}}
	res := n.cniPlugin(t, "ADD", "bridge", id, ctr, bridge)
	portmap := map[string]any{"cniVersion": "1.0.0", "name": "cbr0", "type": "portmap", "snat": true, "capabilities": map[string]bool{"portMappings": true},
		"runtimeConfig": map[string]any{"portMappings": []map[string]any{{"hostPort": hostPort, "containerPort": 80, "protocol": "tcp"}}},
		"prevResult":    json.RawMessage(res)}
	n.cniPlugin(t, "ADD", "portmap", id, ctr, portmap)
	t.Cleanup(func() {
		n.cniPlugin(t, "DEL", "portmap", id, ctr, portmap)
		delete(bridge, "prevResult")
		n.cniPlugin(t, "DEL", "bridge", id, ctr, bridge)
	})
	var ln net.Listener
	if err := ctr.Do(func() (err error) { ln, err = net.Listen("tcp", ":80"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello from", id) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// cniPublished checks that a host port answers through portmap's DNAT.
func (n *node) cniPublished(t *testing.T, port int, id string) {
	t.Helper()
	var out []byte
	waitFor(t, 10*time.Second, fmt.Sprintf("host port %d answering", port), func() bool {
		var err error
		out, err = exec.Command("nsenter", "--net="+n.ns.Path(), "curl", "-s", "-m", "2", fmt.Sprintf("http://10.88.0.1:%d/", port)).Output()
		return err == nil
	})
	if string(out) != "hello from "+id+"\n" {
		t.Errorf("host port %d answered %q", port, out)
	}
}

// TestCNIPlugins runs the CNI reference plugins (bridge with ipMasq,
// portmap with snat) as container runtimes invoke them, then audits, fixes,
// rolls back and watches the rules they write.
func TestCNIPlugins(t *testing.T) {
	n := newNode(t, "cni", filepath.Join(cniDir, "bridge"), "curl")
	n.run("ip", "link", "set", "lo", "up")
	n.cniAdd(t, "ctr1", 8080)
	n.cniPublished(t, 8080, "ctr1")
	version := pkgVersion("containernetworking-plugins")

	n.auditOwned("cni", 2, "the bridge's and portmap's", nil)
	recordDump(t, "cni.iptables-save", "Debian containernetworking-plugins "+version+", bridge ipMasq + portmap snat", n.run("iptables-nft-save"))

	fixed := n.fixAndRollback("cni", "iptables-nft-save", 2, func() { n.cniPublished(t, 8080, "ctr1") })

	n.watch()
	n.waitFixed(5*time.Second, "the watch's first fix")
	react := map[string]time.Duration{}
	n.cniAdd(t, "ctr2", 8081)
	react["new container (bridge ADD, portmap ADD)"] = n.waitFixed(time.Second, "fix after a new container")
	n.cniPublished(t, 8081, "ctr2")
	t.Logf("CNI plugins %s: 2 rules attributed, %d fixed; re-fixed after %v", version, fixed, react)
	recordOwner(t, ownerRow{Owner: "cni", Software: "CNI reference plugins (containernetworking-plugins) " + version,
		Rules: 2, Attributed: 2, Fixed: fixed, Reactions: react})
}
