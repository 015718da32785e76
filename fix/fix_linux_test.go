//go:build linux

package fix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/tsoffset"
)

// dockerNat is the nat and filter tables dockerd (iptables backend) writes
// for the default bridge, a user network and one published port.
const dockerRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.18.0.0/16 ! -o br-5e1f0c2a9d3b -j MASQUERADE
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i br-5e1f0c2a9d3b -j RETURN
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`

// kubeRules is kube-proxy (iptables mode, an old iptables without
// --random-fully) and flannel on a node, with an SNAT rule of an egress
// agent: rules with comments, marks, xt matches that need the protocol.
const kubeRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-6E7XQMQ4RAYOWTTM - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A POSTROUTING -s 10.244.0.0/16 -p tcp -m tcp --dport 5060 -j SNAT --to-source 192.0.2.1:1024-65535 --persistent
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-6E7XQMQ4RAYOWTTM -s 192.168.1.10/32 -m comment --comment "default/kubernetes:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-6E7XQMQ4RAYOWTTM -p tcp -m comment --comment "default/kubernetes:https" -m tcp -j DNAT --to-destination 192.168.1.10:6443
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SVC-NPX46M4PTMTKRN6Y ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-MARK-MASQ
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/kubernetes:https -> 192.168.1.10:6443" -j KUBE-SEP-6E7XQMQ4RAYOWTTM
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment "kubernetes forwarding rules" -j ACCEPT
COMMIT
`

// cniRules is a native nftables node: a CNI's masquerade table with
// counters, comments, a named set, a port range and snat, next to a filter
// table.
const cniRules = `table ip cni-nat {
	set nomasq {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 192.168.0.0/16 }
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.88.0.0/16 ip daddr @nomasq counter return
		ip saddr 10.88.0.0/16 oifname != "cni0" counter masquerade comment "cni-podman0 masquerade"
		ip saddr 10.89.0.0/16 oifname "eth0" snat to 192.0.2.10
		meta l4proto tcp ip saddr 10.90.0.0/16 masquerade to :1024-65535
		ip saddr 10.91.0.0/16 masquerade random
		ip saddr 10.92.0.0/16 masquerade fully-random
		ip saddr { 10.96.0.0/16, 10.97.0.0/16 } masquerade
	}
}
table inet podman {
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.98.0.0/16 counter masquerade
		ip6 saddr fd00:98::/64 counter masquerade
	}
}
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		iifname "cni0" counter accept
	}
}
`

// v6Rules is an ip6tables nat table: a masquerade and an SNAT.
const v6Rules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s fd00:10:244::/56 -p tcp -j SNAT --to-source 2001:db8::1 --persistent
COMMIT
`

func install(t *testing.T, ns *netns.NS, backend string) {
	t.Helper()
	switch backend {
	case "docker-legacy":
		sh(t, ns, dockerRules, "iptables-legacy-restore", "-w")
	case "docker-nft":
		sh(t, ns, dockerRules, "iptables-nft-restore", "-w")
	case "kube-nft":
		sh(t, ns, kubeRules, "iptables-nft-restore", "-w")
	case "kube-legacy":
		sh(t, ns, kubeRules, "iptables-legacy-restore", "-w")
	case "v6-legacy":
		sh(t, ns, v6Rules, "ip6tables-legacy-restore", "-w")
	case "v6-nft":
		sh(t, ns, v6Rules, "ip6tables-nft-restore", "-w")
	case "cni-nft":
		sh(t, ns, cniRules, "nft", "-f", "-")
	case "ipvs-legacy": // set matches in the NAT chain: printed through the kernel interface too
		data, err := os.ReadFile("../ruleset/testdata/owners/src/kube-proxy-ipvs.rules")
		if err != nil {
			t.Fatal(err)
		}
		netnstest.LoadRules(t, ns, string(data), "iptables-legacy-restore")
	default:
		t.Fatalf("unknown ruleset %s", backend)
	}
}

// racing returns the findings fix resolves that audit still reports, other
// than on the rules plan p left alone (with a reason).
func racing(t *testing.T, f *Fixer, p *Plan) []audit.Finding {
	t.Helper()
	skipped := map[string]bool{}
	for _, s := range p.Skipped {
		skipped[s.Rule] = true
	}
	rs, err := f.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Finding
	for _, fd := range audit.Run(audit.Input{Rules: rs}).Findings {
		if fixable(fd.Kind) && !skipped[fd.Rule] {
			out = append(out, fd)
		}
	}
	return out
}

func TestApplyRollbackRealisticRulesets(t *testing.T) {
	needRoot(t)
	tests := []struct {
		rulesets   []string
		method     Method
		want       int  // rules changed
		legacyText bool // iptables-legacy through its tools, not the kernel interface
	}{
		{[]string{"docker-legacy"}, "", 3, false},
		{[]string{"docker-legacy"}, "", 3, true},
		{[]string{"kube-legacy"}, "", 3, true},
		{[]string{"docker-nft"}, MethodNetlink, 3, false},
		{[]string{"docker-nft"}, MethodRestore, 3, false},
		{[]string{"kube-nft"}, MethodNetlink, 3, false},
		{[]string{"kube-nft"}, MethodRestore, 3, false},
		{[]string{"kube-legacy"}, "", 3, false},
		{[]string{"ipvs-legacy"}, "", 2, false},
		{[]string{"cni-nft"}, "", 7, false},
		{[]string{"v6-legacy"}, "", 2, false},
		{[]string{"v6-legacy"}, "", 2, true},
		{[]string{"v6-nft"}, MethodNetlink, 2, false},
		{[]string{"v6-nft"}, MethodRestore, 2, false},
		{[]string{"cni-nft", "docker-legacy", "kube-nft", "v6-legacy"}, "", 15, false},
	}
	for _, tt := range tests {
		name := strings.Join(tt.rulesets, "+") + "/" + string(tt.method)
		if tt.legacyText {
			name += "/legacy-text"
		}
		t.Run(name, func(t *testing.T) {
			ns := newNS(t, "rs")
			for _, r := range tt.rulesets {
				install(t, ns, r)
			}
			before := dumps(t, ns)
			run := &tool.Recorder{Runner: tool.Exec{NS: ns}}
			f := New(Config{NS: ns, Options: Options{IptablesNft: tt.method}, LegacyText: tt.legacyText, Runner: run})
			ctx := context.Background()
			p, err := f.Plan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, sk := range p.Skipped {
				t.Errorf("skipped %s: %s", sk.Rule, sk.Reason)
			}
			for _, fam := range []struct {
				v6     bool
				source string
			}{{false, ruleset.DirectSource}, {true, ruleset.DirectSource6}} {
				legacy := slices.ContainsFunc(tt.rulesets, func(r string) bool { return strings.HasSuffix(r, "-legacy") && strings.HasPrefix(r, "v6") == fam.v6 })
				direct := slices.ContainsFunc(p.read.Sources, func(s ruleset.Source) bool { return s.Where == fam.source })
				if direct != (legacy && !tt.legacyText) {
					t.Errorf("iptables-legacy read through %s: %v (sources %+v)", fam.source, direct, p.read.Sources)
				}
			}
			if len(p.Changes) != tt.want {
				t.Fatalf("plan has %d changes, want %d: %+v (skipped %+v)", len(p.Changes), tt.want, p.Changes, p.Skipped)
			}
			if got := dumps(t, ns); got != before {
				t.Fatalf("planning changed the rules:\n%s", strings.Join(diffLines(before, got), "\n"))
			}
			backup := filepath.Join(t.TempDir(), "backup.json")
			res, err := f.Apply(ctx, p, backup)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Verified || len(res.Applied) != tt.want {
				t.Fatalf("applied %d, verified %v", len(res.Applied), res.Verified)
			}
			if fs := racing(t, f, p); len(fs) != 0 {
				t.Fatalf("audit still finds racing rules after apply: %+v", fs)
			}
			after := dumps(t, ns)
			bad, changed := beyondFlags(before, after)
			if len(bad) != 0 {
				t.Fatalf("apply changed more than the NAT flags:\n%s", strings.Join(bad, "\n"))
			}
			if changed < tt.want {
				t.Errorf("%d lines changed, want at least %d", changed, tt.want)
			}
			for _, c := range p.Changes {
				if c.Method == MethodRestore || c.Backend == natrule.IptablesNFT {
					if !strings.Contains(after, c.After+"\n") {
						t.Errorf("dump lacks the planned line %q", c.After)
					}
				}
			}
			b, err := LoadBackup(backup)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Entries) != tt.want {
				t.Fatalf("backup has %d entries, want %d", len(b.Entries), tt.want)
			}
			rb, err := f.Rollback(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(rb.Restored) != tt.want || len(rb.Missing) != 0 {
				t.Fatalf("rollback restored %d, missing %d", len(rb.Restored), len(rb.Missing))
			}
			if got := dumps(t, ns); got != before {
				t.Fatalf("rollback did not restore the original dump:\n%s", strings.Join(diffLines(before, got), "\n"))
			}
			// Through the kernel interface a legacy table is read and
			// changed without the save and restore tools (asked only
			// for their version); through the tools, they run.
			var ran []string
			for _, c := range run.Ran() {
				if strings.Contains(c, "tables-legacy-") && !strings.HasSuffix(c, " --version") {
					ran = append(ran, c)
				}
			}
			legacy := slices.ContainsFunc(tt.rulesets, func(r string) bool { return strings.HasSuffix(r, "-legacy") })
			if (len(ran) > 0) != (legacy && tt.legacyText) {
				t.Errorf("ran %q: want the legacy tools run only through the tools", ran)
			}
		})
	}
}

// TestFixWithoutIP6Tools fixes a dual-stack legacy node on a host that has
// iptables-legacy's tools but not ip6tables-legacy's: the IPv6 rules are
// read and changed through the kernel interface, the IPv4 ones too, and
// the rollback puts everything back — no ip6tables tool is needed (before
// the IPv6 tables were read directly they were not read at all here).
func TestFixWithoutIP6Tools(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "no6")
	install(t, ns, "docker-legacy")
	install(t, ns, "v6-legacy")
	before := dumps(t, ns)
	run := tool.Without{Runner: tool.Exec{NS: ns}, Hidden: func(name string) bool { return strings.HasPrefix(name, "ip6tables") }}
	f := New(Config{NS: ns, Runner: run})
	ctx := context.Background()
	p, err := f.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fams := map[ruleset.Family]int{}
	for _, c := range p.Changes {
		fams[c.Family]++
	}
	if fams[natrule.IPv4] != 3 || fams[natrule.IPv6] != 2 {
		t.Fatalf("planned %v, want 3 IPv4 and 2 IPv6 changes", fams)
	}
	res, err := f.Apply(ctx, p, filepath.Join(t.TempDir(), "backup.json"))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !res.Verified || len(res.Applied) != 5 {
		t.Fatalf("apply: %d applied, verified %v", len(res.Applied), res.Verified)
	}
	after := sh(t, ns, "", "ip6tables-legacy-save", "-t", "nat")
	if n := strings.Count(after, "--random-fully"); n != 2 {
		t.Errorf("%d IPv6 rules fully-random after the fix, want 2:\n%s", n, after)
	}
	rb, err := f.Rollback(ctx, mustLoadBackup(t, res.Backup))
	if err != nil || len(rb.Restored) != 5 {
		t.Fatalf("rollback: %v, %d restored", err, len(rb.Restored))
	}
	if got := dumps(t, ns); got != before {
		t.Errorf("rollback did not restore the rules:\n%s", strings.Join(diffLines(before, got), "\n"))
	}
}

// mustLoadBackup loads the backup at path.
func mustLoadBackup(t *testing.T, path string) *Backup {
	t.Helper()
	b, err := LoadBackup(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStalePlanRefused(t *testing.T) {
	needRoot(t)
	for _, rs := range []string{"cni-nft", "docker-legacy"} {
		t.Run(rs, func(t *testing.T) {
			ns := newNS(t, "stale")
			install(t, ns, rs)
			f := New(Config{NS: ns})
			ctx := context.Background()
			p, err := f.Plan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Another writer changes the ruleset between plan and apply.
			if rs == "cni-nft" {
				sh(t, ns, "", "nft", "add", "rule", "ip", "cni-nat", "postrouting", "ip", "saddr", "10.93.0.0/16", "counter")
			} else {
				sh(t, ns, "", "iptables-legacy", "-w", "-t", "nat", "-I", "POSTROUTING", "1", "-s", "10.93.0.0/16", "-j", "RETURN")
			}
			before := dumps(t, ns)
			backup := filepath.Join(t.TempDir(), "backup.json")
			_, err = f.Apply(ctx, p, backup)
			if !errors.Is(err, ErrStale) {
				t.Fatalf("apply of a stale plan: err %v, want ErrStale", err)
			}
			if got := dumps(t, ns); got != before {
				t.Fatalf("a refused apply changed rules:\n%s", strings.Join(diffLines(before, got), "\n"))
			}
			if _, err := os.Stat(backup); err == nil {
				t.Errorf("a refused apply wrote a backup")
			}
			// A fresh plan applies.
			p2, res, err := f.ApplyFresh(ctx, backup, 3)
			if err != nil || !res.Verified {
				t.Fatalf("fresh apply: %v %+v", err, res)
			}
			if fs := racing(t, f, p2); len(fs) != 0 {
				t.Fatalf("racing rules after a fresh apply: %+v", fs)
			}
		})
	}
}

// TestCountersKept checks that the changed rules keep their packet and
// byte counters, through every path.
func TestCountersKept(t *testing.T) {
	needRoot(t)
	doc := "*nat\n:POSTROUTING ACCEPT [0:0]\n[5:300] -A POSTROUTING -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -j MASQUERADE\n[7:420] -A POSTROUTING -j RETURN\nCOMMIT\n"
	want := "[5:300] -A POSTROUTING -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -j MASQUERADE --random-fully\n[7:420] -A POSTROUTING -j RETURN\n"
	for _, tt := range []struct {
		restore, save string
		method        Method
		legacyText    bool
	}{
		{"iptables-legacy-restore", "iptables-legacy-save", "", false},
		{"iptables-legacy-restore", "iptables-legacy-save", "", true},
		{"iptables-nft-restore", "iptables-nft-save", MethodNetlink, false},
		{"iptables-nft-restore", "iptables-nft-save", MethodRestore, false},
	} {
		t.Run(fmt.Sprintf("%s/%s/legacy-text=%v", tt.restore, tt.method, tt.legacyText), func(t *testing.T) {
			ns := newNS(t, "ctr")
			sh(t, ns, doc, tt.restore, "-c", "-w")
			f := New(Config{NS: ns, Options: Options{IptablesNft: tt.method}, LegacyText: tt.legacyText})
			if _, res, err := f.ApplyFresh(context.Background(), "", 3); err != nil || len(res.Applied) != 1 {
				t.Fatalf("apply: %v %+v", err, res)
			}
			var got strings.Builder
			for _, l := range strings.Split(sh(t, ns, "", tt.save, "-c", "-t", "nat"), "\n") {
				if strings.Contains(l, " -A ") {
					got.WriteString(l + "\n")
				}
			}
			if got.String() != want {
				t.Errorf("after the fix:\n%s\nwant\n%s", got.String(), want)
			}
		})
	}
}

// TestApplyWaitsForXtablesLock holds the xtables lock like an
// iptables-legacy writer in the middle of a change: the apply must still be
// waiting half a second later (without the lock it would be done by then),
// and once the writer has changed the chain and released the lock, it must
// refuse its stale plan and change nothing.
func TestApplyWaitsForXtablesLock(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "lock")
	install(t, ns, "docker-legacy")
	lock := filepath.Join(t.TempDir(), "xtables.lock")
	f := New(Config{NS: ns, LockPath: lock})
	ctx := context.Background()
	p, err := f.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := lockXtables(ctx, lock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.Apply(ctx, p, "")
		done <- err
	}()
	select {
	case err := <-done:
		unlock()
		t.Fatalf("apply finished while the xtables lock was held: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// The lock holder writes (its own tools use another lock file).
	var out strings.Builder
	err = ns.Do(func() error {
		cmd := exec.Command("iptables-legacy", "-t", "nat", "-I", "POSTROUTING", "1", "-s", "10.93.0.0/16", "-j", "RETURN")
		cmd.Env = append(os.Environ(), "XTABLES_LOCKFILE="+filepath.Join(t.TempDir(), "writer.lock"))
		cmd.Stderr = &out
		return cmd.Run()
	})
	if err != nil {
		unlock()
		t.Fatalf("%v: %s", err, out.String())
	}
	before := dumps(t, ns)
	unlock()
	if err := <-done; !errors.Is(err, ErrStale) {
		t.Fatalf("apply after the locked change: %v, want ErrStale", err)
	}
	if got := dumps(t, ns); got != before {
		t.Fatalf("a stale apply changed rules:\n%s", strings.Join(diffLines(before, got), "\n"))
	}
}

// lockProbe runs the tools in ns and, each time a save tool runs, records
// whether the xtables lock at path is held.
type lockProbe struct {
	tool.Exec
	path string
	held []bool
}

func (l *lockProbe) Run(ctx context.Context, c tool.Cmd) ([]byte, error) {
	if strings.HasSuffix(c.Name, "-save") {
		l.held = append(l.held, !lockFree(l.path))
	}
	return l.Exec.Run(ctx, c)
}

// lockFree reports whether no one holds the lock file at path (flock);
// false when it cannot be opened.
func lockFree(path string) bool {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil
}

// TestApplyFreshHoldsLock applies with HoldLock: the xtables lock must be
// held while the plan reads (ip6tables-legacy-save runs inside the read),
// the plan must say so (the apply then reuses the read's tables), and the
// fix must land and verify. Without HoldLock the read runs unlocked.
func TestApplyFreshHoldsLock(t *testing.T) {
	needRoot(t)
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			ns := newNS(t, "hold")
			install(t, ns, "docker-legacy")
			lock := filepath.Join(t.TempDir(), "xtables.lock")
			probe := &lockProbe{Exec: tool.Exec{NS: ns}, path: lock}
			// The PAWS note may wait for the timestamp probe: never
			// while the host-wide lock is held.
			var asked []bool // lock free when the offsets were asked
			ts := func() *tsoffset.Detection {
				asked = append(asked, lockFree(lock))
				return &tsoffset.Detection{Kind: tsoffset.PerPort, Reason: "test"}
			}
			f := New(Config{NS: ns, LockPath: lock, HoldLock: hold, Runner: probe, Options: Options{TSOffsets: ts}})
			p, res, err := f.ApplyFresh(context.Background(), "", 1)
			if err != nil || !res.Verified || len(res.Applied) != 3 {
				t.Fatalf("apply: %v %+v", err, res)
			}
			if len(asked) != 1 || !asked[0] || p.PAWS == nil {
				t.Errorf("offsets asked %d times, lock free then: %v; PAWS note: %v", len(asked), asked, p.PAWS != nil)
			}
			if p.lockHeld != hold {
				t.Errorf("plan made under the lock: %v, want %v", p.lockHeld, hold)
			}
			if len(probe.held) == 0 || probe.held[0] != hold {
				t.Errorf("lock held while the read ran its save tools: %v, want %v first", probe.held, hold)
			}
			if fs := racing(t, f, p); len(fs) != 0 {
				t.Fatalf("racing rules after the apply: %+v", fs)
			}
		})
	}
}

// directPlan installs the kube-legacy rules in a new namespace and plans
// their fix with the xtables lock held since the read, as planAndApply
// does (HoldLock): apply runs p under the lock, taken again.
func directPlan(t *testing.T, name string) (ns *netns.NS, p *Plan, apply func() (*Result, error)) {
	t.Helper()
	needRoot(t)
	ns = newNS(t, name)
	install(t, ns, "kube-legacy")
	lock := filepath.Join(t.TempDir(), "xtables.lock")
	f := New(Config{NS: ns, LockPath: lock, HoldLock: true})
	ctx := context.Background()
	locked := func(fn func() error) error {
		unlock, err := lockXtables(ctx, lock)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		return fn()
	}
	if err := locked(func() (err error) { p, err = f.Plan(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	p.lockHeld = true
	apply = func() (res *Result, err error) {
		err = locked(func() error { res, err = f.apply(ctx, p, "", true); return err })
		return res, err
	}
	return ns, p, apply
}

// TestDirectCommitRefusesChangedTable: after the plan's read, a writer
// that ignores the xtables lock changes a rule in place (same entry count,
// which the kernel's own check lets through). The commit through the
// kernel interface must look again, refuse with ErrStale and leave the
// writer's rule as the writer left it. The refused look read the table
// into the plan's memory: after a second in-place change, one that moves
// every later entry, the same plan applied again must read afresh, fix
// the rules and keep the writer's rule.
func TestDirectCommitRefusesChangedTable(t *testing.T) {
	ns, p, apply := directPlan(t, "toctou")
	const moved = "-A KUBE-SEP-6E7XQMQ4RAYOWTTM -p tcp -m comment --comment \"default/kubernetes:https\" -m tcp -j DNAT --to-destination 192.168.1.11:6443"
	replace := func(rule string) {
		sh(t, ns, "*nat\n-R KUBE-SEP-6E7XQMQ4RAYOWTTM 2"+strings.TrimPrefix(rule, "-A KUBE-SEP-6E7XQMQ4RAYOWTTM")+"\nCOMMIT\n", "iptables-legacy-restore", "--noflush")
	}
	replace(moved)
	before := dumps(t, ns)
	if _, err := apply(); !errors.Is(err, ErrStale) {
		t.Fatalf("commit over a table changed in place: %v, want ErrStale", err)
	}
	if got := dumps(t, ns); got != before || !strings.Contains(got, moved) {
		t.Fatalf("the refused commit changed the table:\n%s", strings.Join(diffLines(before, got), "\n"))
	}
	const grown = "-A KUBE-SEP-6E7XQMQ4RAYOWTTM -p tcp -m comment --comment \"default/kubernetes:https\" -m tcp -m mark --mark 0x1 -j DNAT --to-destination 192.168.1.12:6443"
	replace(grown)
	if res, err := apply(); err != nil || !res.Verified || len(res.Applied) != 3 {
		t.Fatalf("the same plan applied again: %v %+v", err, res)
	}
	if got := dumps(t, ns); !strings.Contains(got, grown) {
		t.Errorf("the apply lost the writer's change:\n%s", got)
	}
	if fs := racing(t, New(Config{NS: ns}), p); len(fs) != 0 {
		t.Errorf("racing rules after the apply: %+v", fs)
	}
}

// TestDirectPlanAppliedTwice: a direct commit spends the plan's save (its
// lines are the table before the commit), so the same plan applied again
// reads the table afresh and is stale, not committed and recorded twice.
func TestDirectPlanAppliedTwice(t *testing.T) {
	ns, _, apply := directPlan(t, "twice")
	if res, err := apply(); err != nil || !res.Verified || len(res.Applied) != 3 {
		t.Fatalf("first apply: %v %+v", err, res)
	}
	after := dumps(t, ns)
	if res, err := apply(); !errors.Is(err, ErrStale) {
		t.Errorf("the plan applied again: %v %+v, want ErrStale", err, res)
	}
	if got := dumps(t, ns); got != after {
		t.Errorf("the second apply changed the tables:\n%s", strings.Join(diffLines(after, got), "\n"))
	}
}

// oldIptables reports iptables 1.8.4 for the legacy restore tools (before
// XTABLES_LOCKFILE) and runs everything else.
type oldIptables struct{ tool.Exec }

func (o oldIptables) Run(ctx context.Context, c tool.Cmd) ([]byte, error) {
	if strings.HasSuffix(c.Name, "tables-legacy-restore") && len(c.Args) == 1 && c.Args[0] == "--version" {
		return []byte("iptables-restore v1.8.4 (legacy)\n"), nil
	}
	return o.Exec.Run(ctx, c)
}

// TestOldIptablesNoDirect: where fix cannot hold the xtables lock (tools
// before 1.8.6), nothing goes through the kernel interface, whose commit
// runs no tool that would take the lock: the read uses the save tool, and
// the fix and its rollback still work through the tools.
func TestOldIptablesNoDirect(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "oldipt")
	install(t, ns, "docker-legacy")
	before := dumps(t, ns)
	f := New(Config{NS: ns, Runner: oldIptables{tool.Exec{NS: ns}}, HoldLock: true})
	ctx := context.Background()
	backup := filepath.Join(t.TempDir(), "b.json")
	p, res, err := f.ApplyFresh(ctx, backup, 3)
	if err != nil || !res.Verified || len(res.Applied) != 3 {
		t.Fatalf("apply: %v %+v", err, res)
	}
	if p.lockHeld || slices.ContainsFunc(p.read.Sources, func(s ruleset.Source) bool { return s.Where == ruleset.DirectSource }) {
		t.Errorf("with iptables 1.8.4: lock held %v, sources %+v; want neither the lock nor the kernel interface", p.lockHeld, p.read.Sources)
	}
	b, err := LoadBackup(backup)
	if err != nil {
		t.Fatal(err)
	}
	if rb, err := f.Rollback(ctx, b); err != nil || len(rb.Restored) != 3 {
		t.Fatalf("rollback: %v %+v", err, rb)
	}
	if got := dumps(t, ns); got != before {
		t.Fatalf("rollback did not restore the rules:\n%s", strings.Join(diffLines(before, got), "\n"))
	}
}

// An owner that rewrites a planned rule in place (nft replace rule keeps
// its handle and position) between a plan and its commit makes the plan
// stale: the rebased batch is refused, not built from the rewritten rule
// (which, already fully-random, gave a backup entry that changed nothing,
// and that every later round then refused to add to).
func TestRewrittenInPlaceIsStale(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "inplace")
	sh(t, ns, "table ip t { chain post { type nat hook postrouting priority srcnat; ip saddr 10.1.0.0/16 masquerade; }; }\n", "nft", "-f", "-")
	f := New(Config{NS: ns})
	p, err := f.Plan(context.Background())
	if err != nil || len(p.Changes) != 1 || p.Changes[0].Method != MethodNetlink {
		t.Fatalf("plan: %v %+v", err, p)
	}
	h := strconv.FormatUint(p.Changes[0].Location.Handle, 10)
	sh(t, ns, "", "nft", "replace", "rule", "ip", "t", "post", "handle", h, "ip", "saddr", "10.1.0.0/16", "masquerade", "fully-random")
	if out := sh(t, ns, "", "nft", "-a", "list", "chain", "ip", "t", "post"); !strings.Contains(out, "fully-random # handle "+h) {
		t.Fatalf("the replaced rule did not keep handle %s:\n%s", h, out)
	}
	prep, err := f.prepareNft(p.Generation, p.Changes, true)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("a rule rewritten in place: err %v, entries %+v; want ErrStale", err, prep)
	}
}

// The verification finds a replaced rule by its handle, which the kernel
// keeps: a rule inserted above it after the commit is not taken for it
// (its handle went into the backup, and a rollback then left the fixed
// rule alone, or could have changed the inserted one).
func TestVerifyFollowsTheHandle(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "verifyh")
	sh(t, ns, "table ip t { chain post { type nat hook postrouting priority srcnat; ip saddr 10.1.0.0/16 masquerade; }; }\n", "nft", "-f", "-")
	f := New(Config{NS: ns})
	ctx := context.Background()
	p, err := f.Plan(ctx)
	if err != nil || len(p.Changes) != 1 {
		t.Fatalf("plan: %v %+v", err, p)
	}
	if res, err := f.Apply(ctx, p, ""); err != nil || !res.Verified {
		t.Fatalf("apply: %v %+v", err, res)
	}
	sh(t, ns, "", "nft", "insert", "rule", "ip", "t", "post", "ip", "saddr", "9.9.9.9", "masquerade", "fully-random")
	fixed := map[string]fixedRule{}
	ok, err := f.verifyNft(p.Changes, fixed)
	c := p.Changes[0]
	if got := fixed[ruleKey(c.Location, c.Before)].handle; err != nil || !ok || got != c.Location.Handle {
		t.Errorf("verified %v (%v), recorded handle %d; want the fixed rule's, %d", ok, err, got, c.Location.Handle)
	}
	// The fixed rule deleted, another fully-random one at its position: not it.
	sh(t, ns, "", "nft", "delete", "rule", "ip", "t", "post", "handle", strconv.FormatUint(c.Location.Handle, 10))
	sh(t, ns, "", "nft", "add", "rule", "ip", "t", "post", "ip", "saddr", "8.8.8.8", "masquerade", "fully-random")
	if ok, err := f.verifyNft(p.Changes, map[string]fixedRule{}); err != nil || ok {
		t.Errorf("verified %v (%v) with the fixed rule deleted; want not verified", ok, err)
	}
}

// A fix killed between its commit and marking its backup entries applied
// leaves entries not marked applied whose rules are fixed: a rollback
// restores them (it had said "nothing to restore"), and entries whose
// commit never came are neither restored nor reported missing.
func TestRollbackUnmarkedEntries(t *testing.T) {
	needRoot(t)
	for _, rs := range []string{"cni-nft", "docker-legacy"} {
		t.Run(rs, func(t *testing.T) {
			ns := newNS(t, "unmarked")
			install(t, ns, rs)
			before := dumps(t, ns)
			f := New(Config{NS: ns})
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "backup.json")
			if _, res, err := f.ApplyFresh(ctx, path, 3); err != nil || !res.Verified {
				t.Fatalf("apply: %v %+v", err, res)
			}
			b, err := LoadBackup(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := range b.Entries {
				b.Entries[i].Applied = false // the kill came before the marks
			}
			res, err := f.Rollback(ctx, b)
			if err != nil || len(res.Restored) != len(b.Entries) || len(res.Missing) != 0 {
				t.Fatalf("rollback of unmarked fixed entries: %v, restored %d of %d, missing %d", err, len(res.Restored), len(b.Entries), len(res.Missing))
			}
			if got := dumps(t, ns); got != before {
				t.Fatalf("rules not restored:\n%s", strings.Join(diffLines(before, got), "\n"))
			}
			// Now as if the commit never came: nothing to do, nothing missing.
			res, err = f.Rollback(ctx, b)
			if err != nil || len(res.Restored)+len(res.Missing) != 0 {
				t.Errorf("rollback of entries never applied: %v, restored %d, missing %d; want none", err, len(res.Restored), len(res.Missing))
			}
		})
	}
}

// slowSave is a Runner whose save tools run out of time, as
// iptables-nft-save does under a writer that commits faster than it reads.
type slowSave struct{}

func (slowSave) LookPath(name string) (string, error) { return "/usr/sbin/" + name, nil }
func (slowSave) Run(_ context.Context, c tool.Cmd) ([]byte, error) {
	return nil, &tool.ExitError{Cmd: c.String(), Code: -1, Err: errors.Join(errors.New("signal: killed"), context.DeadlineExceeded)}
}

// An iptables-nft-save that does not finish in time says why: the ruleset
// kept changing.
func TestSaveKeptChanging(t *testing.T) {
	f := New(Config{Runner: slowSave{}})
	_, err := f.save(context.Background(), &restoreGroup{backend: natrule.IptablesNFT, family: natrule.IPv4, table: "nat"})
	if err == nil || !strings.HasPrefix(err.Error(), "iptables-nft-save did not finish in time; it starts over whenever the nftables ruleset changes, so the ruleset probably kept changing") {
		t.Errorf("err = %v, want one saying the ruleset kept changing", err)
	}
}

// A rollback leaves alone a rule that has the fixed rule's handle, position
// and flags but is another rule: its owner recreated the table, whose rules
// are numbered from 1 again.
func TestRollbackRecreatedTable(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "recreated")
	table := func(saddr, oif, flags string) string {
		return "table ip cni-nat { chain postrouting { type nat hook postrouting priority srcnat; ip saddr " + saddr + " oifname != \"" + oif + "\" masquerade" + flags + "; }; }\n"
	}
	sh(t, ns, table("10.88.0.0/16", "cni0", ""), "nft", "-f", "-")
	f := New(Config{NS: ns})
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "backup.json")
	if _, res, err := f.ApplyFresh(ctx, path, 3); err != nil || !res.Verified {
		t.Fatalf("apply: %v %+v", err, res)
	}
	sh(t, ns, "delete table ip cni-nat\n"+table("10.99.0.0/16", "eth9", " fully-random"), "nft", "-f", "-")
	before := dumps(t, ns)
	b, err := LoadBackup(path)
	if err != nil {
		t.Fatal(err)
	}
	if h := b.Entries[0].Handle; !strings.Contains(sh(t, ns, "", "nft", "-a", "list", "table", "ip", "cni-nat"), fmt.Sprintf("# handle %d", h)) {
		t.Fatalf("the new table has no rule of handle %d: the test does not reuse the handle", h)
	}
	res, err := f.Rollback(ctx, b)
	if err != nil || len(res.Restored) != 0 || len(res.Missing) != 1 {
		t.Errorf("rollback: %v, restored %d, left alone %d; want the owner's new rule left alone", err, len(res.Restored), len(res.Missing))
	}
	if got := dumps(t, ns); got != before {
		t.Errorf("the rollback changed the owner's rule:\n%s", strings.Join(diffLines(before, got), "\n"))
	}
}

func TestKeptChanging(t *testing.T) {
	last := fmt.Errorf("chain nat/POSTROUTING: %w", ErrStale)
	err := keptChanging(5, last)
	want := "the rules kept changing: 5 plans went stale before each could be applied, and nothing was changed (more with --tries): chain nat/POSTROUTING: " + ErrStale.Error()
	if !errors.Is(err, ErrStale) || err.Error() != want {
		t.Errorf("err = %q, want %q (and ErrStale)", err, want)
	}
}

// A saved plan that lists a change twice is not one snatrace wrote.
func TestRestrictRefusesDuplicates(t *testing.T) {
	c := Change{Location: ruleset.Location{Backend: "nftables", Family: "ip", Table: "t", Chain: "post", Position: 1, Handle: 4},
		Method: MethodNetlink, Before: "masquerade", After: "masquerade fully-random", From: "masquerade", To: "masquerade fully-random"}
	fresh := &Plan{Changes: []Change{c}}
	if _, err := restrict(fresh, &Plan{Changes: []Change{c}}); err != nil {
		t.Fatalf("the plan itself: %v", err)
	}
	if _, err := restrict(fresh, &Plan{Changes: []Change{c, c}}); !errors.Is(err, ErrTampered) {
		t.Errorf("a change listed twice: err %v, want ErrTampered", err)
	}
}
