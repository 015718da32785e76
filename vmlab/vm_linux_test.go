//go:build linux

package vmlab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/buildtest"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/vmlab/vmlabtest"
)

func snatraceBinary(t *testing.T) string { return buildtest.Snatrace(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	buildtest.Cleanup()
	os.Exit(code)
}

func needQEMU(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath(QEMU); err != nil {
		testenv.Skip(t, "needs %s (qemu-system-x86)", QEMU)
	}
	return vmlabtest.StockKernel(t)
}

// workDirs lists the VM work directories in the temporary directory.
func workDirs() []string {
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), "snatrace-vm-*"))
	return m
}

// TestLabOnStockKernel is the promise: a stock distribution kernel
// package, booted under QEMU, races under plain masquerade (≥ 10 clashes,
// counted by that kernel) and fully-random shows ≥ 10× fewer; every module
// was loaded on demand, as the lab used its feature; nothing is left behind.
func TestLabOnStockKernel(t *testing.T) {
	deb := needQEMU(t)
	before := workDirs()
	out, err := Lab(context.Background(), Options{Kernel: deb, Binary: snatraceBinary(t), Args: []string{"--until", "10"},
		Backends: []natrule.Backend{natrule.Nftables}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Exit != 0 || out.Report == nil {
		t.Fatalf("guest lab exit %d; console:\n%s", out.Exit, lastLines(out.Log, 30))
	}
	rep := out.Report
	release, _ := releaseOfPackage(t, deb)
	if rep.Kernel != release || len(rep.Results) != 2 {
		t.Fatalf("kernel %q (want %q), %d results", rep.Kernel, release, len(rep.Results))
	}
	plain, full := rep.Results[0], rep.Results[1]
	t.Logf("%s: masquerade %d clashes in %d, fully-random %d in %d; VM %+v", rep.Kernel,
		plain.Conntrack.InsertFailed, plain.Connections, full.Conntrack.InsertFailed, full.Connections, *rep.VM)
	if plain.NAT != "masquerade" || plain.Conntrack.InsertFailed < 10 || !plain.Accounted {
		t.Errorf("masquerade: %d clashes, accounted %v (%s)", plain.Conntrack.InsertFailed, plain.Accounted, plain.Note)
	}
	if full.Connections != plain.Connections || 10*full.Conntrack.InsertFailed > plain.Conntrack.InsertFailed || !full.Accounted {
		t.Errorf("fully-random: %d clashes in %d connections, masquerade %d in %d", full.Conntrack.InsertFailed, full.Connections, plain.Conntrack.InsertFailed, plain.Connections)
	}
	vm := rep.VM
	if vm.BootSeconds <= 0 || vm.GuestBootSeconds <= 0 || vm.WallSeconds < vm.BootSeconds || vm.VCPUs != DefaultVCPUs || vm.Package != deb || vm.InitramfsModules < 50 {
		t.Errorf("VM block %+v", *vm)
	}
	// Loaded on demand: the guest's init loads nothing itself.
	for _, m := range []string{"nf_conntrack", "nf_nat", "nf_tables", "nft_chain_nat", "nft_masq", "nf_conntrack_netlink", "veth", "bridge"} {
		if !slices.Contains(vm.ModulesLoaded, m) {
			t.Errorf("module %s not loaded (loaded: %v)", m, vm.ModulesLoaded)
		}
	}
	// The lab opens only the netlink families it uses: no XFRM.
	if slices.Contains(vm.ModulesLoaded, "xfrm_user") {
		t.Errorf("xfrm_user was loaded: something opened NETLINK_XFRM")
	}
	if after := workDirs(); len(after) != len(before) {
		t.Errorf("work directories left: %v (before %v)", after, before)
	}
}

// The iptables backends run in the guest too, with the host's tools.
func TestLabOnStockKernelBackends(t *testing.T) {
	deb := needQEMU(t)
	backends := []natrule.Backend{natrule.Nftables, natrule.IptablesNFT, natrule.IptablesLegacy}
	out, err := Lab(context.Background(), Options{Kernel: deb, Binary: snatraceBinary(t), Backends: backends,
		Args: []string{"--nat=masquerade", "--backend=nft", "--backend=iptables-nft", "--backend=iptables-legacy", "--until=5"}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Exit != 0 || out.Report == nil || len(out.Report.Results) != 3 {
		t.Fatalf("guest lab exit %d; console:\n%s", out.Exit, lastLines(out.Log, 30))
	}
	for i, r := range out.Report.Results {
		if r.Backend != backends[i].Flag() || r.Connections == 0 || !r.Accounted {
			t.Errorf("%s (%s): %d connections, accounted %v: %s", r.NAT, r.Backend, r.Connections, r.Accounted, r.Note)
		}
	}
	for _, m := range []string{"ip_tables", "iptable_nat", "nft_compat", "xt_MASQUERADE"} {
		if !slices.Contains(out.Report.VM.ModulesLoaded, m) {
			t.Errorf("module %s not loaded: %v", m, out.Report.VM.ModulesLoaded)
		}
	}
	if got := strings.Join(out.Report.VM.Tools, " "); !strings.Contains(got, "iptables-legacy-restore") || !strings.Contains(got, "iptables-nft-restore") {
		t.Errorf("tools copied in: %s", got)
	}
}

func releaseOfPackage(t *testing.T, deb string) (string, error) {
	t.Helper()
	k, err := OpenKernel(deb, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k.Release, nil
}
