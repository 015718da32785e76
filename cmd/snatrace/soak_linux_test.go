//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// soakDuration is how long TestFixWatchSoak runs: 10 minutes in CI,
// SNATRACE_SOAK (a Go duration) or 20 s elsewhere.
func soakDuration(t *testing.T) time.Duration {
	if testenv.CI() {
		return 10 * time.Minute
	}
	if s := os.Getenv("SNATRACE_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SNATRACE_SOAK: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

// soakOwners are an nftables and an iptables-legacy owner of a NAT chain in
// one namespace, each rewriting its chain with the racing rule plain.
type soakOwners struct {
	t  *testing.T
	ns *netns.NS
}

func (o soakOwners) rewrite(legacy bool, gen int) {
	if legacy {
		inNS(o.t, o.ns, fmt.Sprintf("*nat\n-F AGENT\n-A AGENT -d 10.%d.0.0/16 -j RETURN\n"+
			"-A AGENT -s 10.244.0.0/16 -j MASQUERADE\n-A AGENT -s 10.245.0.0/16 -j MASQUERADE --random-fully\nCOMMIT\n", gen%250),
			"iptables-legacy-restore", "--noflush", "-w")
		return
	}
	inNS(o.t, o.ns, fmt.Sprintf("flush chain ip agent postrouting\n"+
		"add rule ip agent postrouting ip daddr 10.%d.0.0/16 return\n"+
		"add rule ip agent postrouting ip saddr 10.244.0.0/16 masquerade\n"+
		"add rule ip agent postrouting ip saddr 10.245.0.0/16 masquerade fully-random\n", gen%250), "nft", "-f", "-")
}

// fixed reports whether both racing rules are fully-random; it fails the
// test if a chain lost or gained a rule.
func (o soakOwners) fixed() bool {
	o.t.Helper()
	nft := inNS(o.t, o.ns, "", "nft", "list", "chain", "ip", "agent", "postrouting")
	legacy := inNS(o.t, o.ns, "", "iptables-legacy-save", "-t", "nat")
	if n := strings.Count(nft, " masquerade") + strings.Count(nft, " return"); n != 3 {
		o.t.Fatalf("the nftables chain has %d rules, want 3:\n%s", n, nft)
	}
	if n := strings.Count(legacy, "-A AGENT "); n != 3 {
		o.t.Fatalf("the legacy chain has %d rules, want 3:\n%s", n, legacy)
	}
	return strings.Contains(nft, "10.244.0.0/16 masquerade fully-random") &&
		strings.Contains(legacy, "-A AGENT -s 10.244.0.0/16 -j MASQUERADE --random-fully")
}

// procStatus reads the resident memory (KiB), threads and open files of pid.
func procStatus(pid int) (rssKiB, threads, fds int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "VmRSS:" {
			rssKiB, _ = strconv.Atoi(f[1])
		}
		if len(f) >= 2 && f[0] == "Threads:" {
			threads, _ = strconv.Atoi(f[1])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rssKiB, threads, len(ents), err
}

// TestFixWatchSoak runs `snatrace fix --apply --watch --json` while two
// owners (nftables and iptables-legacy) rewrite their racing rule at random
// times, never waiting for the fix, and while unrelated writers take the
// host-wide xtables lock and commit unrelated nftables changes. Every
// rewrite that lives for a second is fixed within it; the watch's memory,
// threads and open files stay flat; its JSON log is bounded and adds up.
func TestFixWatchSoak(t *testing.T) {
	d := soakDuration(t)
	ns, other := fixNS(t, "soak"), fixNS(t, "soak-other")
	o := soakOwners{t, ns}
	inNS(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n:AGENT - [0:0]\n-A POSTROUTING -j AGENT\nCOMMIT\n", "iptables-legacy-restore", "-w")
	inNS(t, ns, "table ip agent {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n }\n}\n"+
		"table inet unrelated {\n set peers { type ipv4_addr; }\n}\n", "nft", "-f", "-")
	o.rewrite(false, 0)
	o.rewrite(true, 0)

	var out, errb bytes.Buffer
	cmd := snatrace("fix", "--apply", "--watch", "--netns", ns.Path(), "--no-backup", "--json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFixed(t, o, 5*time.Second, "the first fix")

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	var unrelatedErr, sampleErr error
	go func() { defer wg.Done(); unrelatedErr = unrelatedWrites(ctx, ns, other) }()
	var samples [][3]int
	go func() {
		defer wg.Done()
		for ctx.Err() == nil && sampleErr == nil {
			var rss, th, fds int
			rss, th, fds, sampleErr = procStatus(cmd.Process.Pid)
			samples = append(samples, [3]int{rss, th, fds})
			sleepCtx(ctx, d/80)
		}
	}()
	rewrites, checked := 0, 0
	for ctx.Err() == nil {
		rewrites++
		o.rewrite(rewrites%2 == 0, rewrites)
		if rand.IntN(10) < 3 { // a rewrite that lives a second must be fixed within it
			sleepCtx(ctx, time.Second)
			if ctx.Err() == nil {
				if !o.fixed() {
					t.Fatalf("rewrite %d not fixed after 1 s; stderr:\n%s", rewrites, tail(errb.String()))
				}
				checked++
			}
			continue
		}
		sleepCtx(ctx, time.Duration(10+rand.IntN(190))*time.Millisecond)
	}
	cancel()
	wg.Wait()
	if unrelatedErr != nil || sampleErr != nil {
		t.Fatalf("unrelated writer: %v; sampling the watch: %v", unrelatedErr, sampleErr)
	}
	waitFixed(t, o, time.Second, "the last rewrite")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch after SIGTERM: %v; stderr:\n%s", err, tail(errb.String()))
	}
	t.Logf("%v: %d rewrites (%d checked after 1 s)", d, rewrites, checked)
	checkFlat(t, samples)
	checkWatchLog(t, out.Bytes(), errb.String(), rewrites)
}

func waitFixed(t *testing.T, o soakOwners, limit time.Duration, what string) {
	t.Helper()
	for deadline := time.Now().Add(limit); !o.fixed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not fixed within %v", what, limit)
		}
	}
}

// unrelatedWrites takes the host-wide xtables lock from another namespace
// (iptables-legacy filter rules) and commits an unrelated nftables set in
// the watched one, until ctx ends: wake-ups with nothing to fix.
func unrelatedWrites(ctx context.Context, watched, other *netns.NS) error {
	for i := 0; ctx.Err() == nil; i++ {
		op := map[bool]string{true: "-A", false: "-D"}[i%2 == 0]
		if out, err := netnstest.RunErr(other, "", "iptables-legacy", "-w", "-t", "filter", op, "INPUT", "-s", "192.0.2.1", "-j", "ACCEPT"); err != nil {
			return fmt.Errorf("iptables-legacy %s: %w: %s", op, err, out)
		}
		if i%4 == 0 {
			elem := "{ 192.0.2." + strconv.Itoa(1+i%200) + " }"
			if out, err := netnstest.RunErr(watched, "", "nft", "add", "element", "inet", "unrelated", "peers", elem); err != nil {
				return fmt.Errorf("nft add element: %w: %s", err, out)
			}
			if out, err := netnstest.RunErr(watched, "", "nft", "flush", "set", "inet", "unrelated", "peers"); err != nil {
				return fmt.Errorf("nft flush set: %w: %s", err, out)
			}
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	return nil
}

// checkFlat compares the watch's memory, threads and open files in the last
// quarter of the soak with the second (after warm-up): peak memory, and the
// threads and files held at rest (the fewest seen: a round opens sockets and
// pipes for a moment).
func checkFlat(t *testing.T, samples [][3]int) {
	t.Helper()
	if len(samples) < 8 {
		t.Fatalf("%d samples of the watch's memory", len(samples))
	}
	q := len(samples) / 4
	over := func(s [][3]int, i int, pick func(a, b int) int) int {
		m := s[0][i]
		for _, v := range s {
			m = pick(m, v[i])
		}
		return m
	}
	pmax, pmin := func(a, b int) int { return max(a, b) }, func(a, b int) int { return min(a, b) }
	early, late := samples[q:2*q], samples[3*q:]
	rssEarly, rssLate := over(early, 0, pmax), over(late, 0, pmax)
	thEarly, thLate := over(early, 1, pmin), over(late, 1, pmin)
	fdEarly, fdLate := over(early, 2, pmin), over(late, 2, pmin)
	t.Logf("watch peak RSS %d → %d KiB, threads at rest %d → %d, open files at rest %d → %d", rssEarly, rssLate, thEarly, thLate, fdEarly, fdLate)
	if grow := rssLate - rssEarly; grow > max(4096, rssEarly/5) {
		t.Errorf("the watch's memory grew by %d KiB (%d → %d)", grow, rssEarly, rssLate)
	}
	if thLate > thEarly+2 || fdLate > fdEarly {
		t.Errorf("threads %d → %d, open files %d → %d: want flat", thEarly, thLate, fdEarly, fdLate)
	}
}

// checkWatchLog checks the --json document: at most MaxLoggedEvents events,
// no failed round, and the kept and dropped events add up to the rounds the
// watch logged on stderr.
func checkWatchLog(t *testing.T, out []byte, stderr string, rewrites int) {
	t.Helper()
	var doc struct {
		Mode    string
		Events  []struct{ Trigger string }
		Dropped int `json:"events_dropped"`
		Changes int
		Errors  int
	}
	if err := jsonUnmarshal(out, &doc); err != nil || doc.Mode != "watch" {
		t.Fatalf("watch JSON: %v\n%.2000s", err, out)
	}
	logged := strings.Count(stderr, "rule fully-random") + strings.Count(stderr, "rules fully-random")
	if len(doc.Events) > 1000 || len(doc.Events)+doc.Dropped != logged || doc.Errors != 0 {
		t.Errorf("JSON: %d events + %d dropped, %d errors; stderr logged %d rounds", len(doc.Events), doc.Dropped, doc.Errors, logged)
	}
	// Each rewrite undoes one fix; a fix can cover several rewrites (the
	// owner rewrote again before the watch woke), never more than one each.
	if doc.Changes < 2 || doc.Changes > rewrites+2 {
		t.Errorf("%d rules fixed for %d rewrites (+2 at start)", doc.Changes, rewrites)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}
