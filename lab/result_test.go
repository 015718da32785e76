package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/natrule"
)

func TestAccount(t *testing.T) {
	r := &Result{NAT: "masquerade", Backend: "nft"}
	r.add([]attempt{
		{latency: 20 * time.Microsecond},
		{latency: 1003 * time.Millisecond, retrans: 1},
		{latency: 3010 * time.Millisecond, retrans: 2},
		{latency: 8 * time.Second, retrans: 3, err: errTimeout()},
	}, roundDelta{synRetrans: 6, listenDrops: 1})
	r.Conntrack.InsertFailed, r.Conntrack.Drop = 3, 4
	r.ConntrackNetlink = r.Conntrack
	r.finish()
	want := Causes{SNATClash: 3, ListenOverflow: 1, TableFull: 1, Unexplained: 1}
	if r.Causes != want || r.Accounted {
		t.Errorf("causes %+v accounted %v, want %+v and not accounted", r.Causes, r.Accounted, want)
	}
	if r.Note != "1 retransmitted SYNs have no kernel drop to explain them" {
		t.Errorf("note %q", r.Note)
	}
	if r.Retransmitted != 3 || r.Failed != 1 || r.Delayed["1s"] != 1 || r.Delayed["3s"] != 1 || r.Delayed["7s+"] != 1 {
		t.Errorf("retransmitted %d failed %d delayed %v", r.Retransmitted, r.Failed, r.Delayed)
	}
	if r.RetransHistogram["0"] != 1 || r.RetransHistogram["2"] != 1 {
		t.Errorf("histogram %v", r.RetransHistogram)
	}
	if r.LatencyMS.Max != 8000 || r.LatencyMS.P50 != 1003 {
		t.Errorf("latency %+v", r.LatencyMS)
	}
}

// An exhausted NAT range (a kernel without the 6.5 eviction) drops every SYN
// of a failed connection: its last drop has no retransmission after it, and
// still adds up. One drop more than that does not.
func TestAccountFailedConnections(t *testing.T) {
	for _, tt := range []struct {
		drops uint64
		ok    bool
	}{{drops: 8, ok: true}, {drops: 9, ok: false}} {
		r := &Result{NAT: "masquerade to :1024-1087", Backend: "nft"}
		r.add([]attempt{
			{latency: 20 * time.Microsecond},
			{latency: 8 * time.Second, retrans: 3, err: errTimeout()},
			{latency: 8 * time.Second, retrans: 3, err: errTimeout()},
		}, roundDelta{synRetrans: 6})
		r.Conntrack.InsertFailed, r.Conntrack.Drop = tt.drops, tt.drops
		r.ConntrackNetlink = r.Conntrack
		r.finish()
		if r.Accounted != tt.ok || r.Failed != 2 {
			t.Errorf("%d drops, 6 retransmissions, %d failed: accounted %v (%s), want %v", tt.drops, r.Failed, r.Accounted, r.Note, tt.ok)
		}
	}
}

func TestVerdict(t *testing.T) {
	mk := func(nat string, clashes uint64, conns int) *Result {
		r := &Result{NAT: nat, Backend: "nft", Connections: conns, SynRetrans: clashes}
		r.Conntrack.InsertFailed, r.Conntrack.Drop = clashes, clashes
		r.ConntrackNetlink = r.Conntrack
		r.finish()
		return r
	}
	got := verdict([]*Result{mk("masquerade", 708, 20000), mk("masquerade fully-random", 0, 20000)}, false)
	want := "this kernel drops 3.4% of SYNs through the SNAT race under masquerade (708 of 20708); masquerade fully-random: 0 in 20000 — ≥ 165× fewer"
	if got != want {
		t.Errorf("verdict\n%s\nwant\n%s", got, want)
	}
	got = verdict([]*Result{mk("masquerade", 2, 20000), mk("masquerade fully-random", 0, 20000)}, false)
	if want := "this kernel drops 0.01% of SYNs through the SNAT race under masquerade (2 of 20002); masquerade fully-random: 0 in 20000 — too few clashes to tell the modes apart; run more connections"; got != want {
		t.Errorf("verdict\n%s\nwant\n%s", got, want)
	}
}

func errTimeout() error { return &timeoutErr{} }

type timeoutErr struct{}

func (*timeoutErr) Error() string { return "timed out" }

// The VM line says how far a guest got: booted, started but interrupted
// before its lab ran, or interrupted before QEMU started; and a report
// from NewReport, finished, accounts for its nothing.
func TestWriteTextVM(t *testing.T) {
	cfg := Config{Pods: 2, Servers: 1, Modes: []natrule.Mode{{Action: natrule.Masquerade}}, Backends: []natrule.Backend{natrule.Nftables}}
	cfg.Workload.Name = SamePort
	for _, tc := range []struct {
		vm   VM
		want string
	}{
		{VM{QEMU: "7.2.22", VCPUs: 2, MemoryMiB: 1024},
			"in a VM: QEMU 7.2.22, 2 vCPUs, 1024 MiB; interrupted before QEMU started\n"},
		{VM{QEMU: "7.2.22", Accelerator: "tcg", VCPUs: 2, MemoryMiB: 1024, WallSeconds: 1.26},
			"in a VM: QEMU 7.2.22, tcg, 2 vCPUs, 1024 MiB; interrupted before the guest's lab started, 1.3 s in all\n"},
		{VM{QEMU: "7.2.22", Accelerator: "kvm", VCPUs: 2, MemoryMiB: 1024, BootSeconds: 3.5, GuestBootSeconds: 2.6, WallSeconds: 9.2},
			"in a VM: QEMU 7.2.22, kvm, 2 vCPUs, 1024 MiB; booted in 3.5 s (guest kernel 2.6 s), 9.2 s in all\n"},
	} {
		rep := NewReport(cfg, "6.1.0-57-cloud-amd64", 2)
		rep.VM, rep.Stopped = &tc.vm, "interrupted"
		rep.Finish()
		var b strings.Builder
		if err := WriteText(&b, rep); err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(b.String(), "\n")
		if len(lines) < 2 || lines[1] != tc.want {
			t.Errorf("VM line %q, want %q", lines[1], tc.want)
		}
		if !strings.Contains(b.String(), "masquerade (nft): 0 SYNs retransmitted") || !strings.Contains(b.String(), "all accounted for") {
			t.Errorf("an empty finished report does not account for itself:\n%s", b.String())
		}
	}
}
