//go:build linux

package exporter

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"golang.org/x/sys/unix"
)

// freshNS is a throwaway namespace that conntrack tracks.
func freshNS(t *testing.T) *netns.NS { return netnstest.Tracked(t, "exporter") }

// traffic opens conns TCP connections on lo inside n and closes them (each
// leaves one entry in TIME_WAIT), then sends conns raw TCP segments with
// SYN+FIN set, which conntrack counts as invalid.
func traffic(t *testing.T, n *netns.NS, conns int) {
	t.Helper()
	err := n.Do(func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		d := net.Dialer{Timeout: 2 * time.Second}
		for range conns {
			c, err := d.Dial("tcp4", l.Addr().String())
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("snatrace"))
			c.Close()
			if err != nil {
				return err
			}
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		if err != nil {
			return fmt.Errorf("opening raw socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
		for i := range conns {
			seg := make([]byte, 20)
			binary.BigEndian.PutUint16(seg[0:], uint16(40000+i)) // source port
			binary.BigEndian.PutUint16(seg[2:], 9)               // destination port
			seg[12] = 5 << 4                                     // data offset: 5 words
			seg[13] = 0x03                                       // SYN|FIN: invalid
			binary.BigEndian.PutUint16(seg[14:], 1024)           // window
			binary.BigEndian.PutUint16(seg[16:], tcpChecksum([4]byte{127, 0, 0, 1}, to.Addr, seg))
			if err := unix.Sendto(fd, seg, 0, to); err != nil {
				return fmt.Errorf("sending invalid segment: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("making traffic in %s: %v", n, err)
	}
}

func tcpChecksum(src, dst [4]byte, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src[:])
	add(dst[:])
	sum += unix.IPPROTO_TCP + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	code, body := get(t, http.DefaultClient, url)
	if code != http.StatusOK {
		t.Fatalf("scrape: status %d\n%s", code, body)
	}
	return body
}

// TestExporterFreshNamespace scrapes the exporter of a fresh namespace over
// HTTP before and after traffic in it: every exported counter equals ctstat's
// reading of the kernel right after the scrape, so the exported delta is the
// kernel's delta exactly. The /proc fallback gives the same numbers.
func TestExporterFreshNamespace(t *testing.T) {
	n := freshNS(t)
	e := New(ConntrackOf(n), WithKernelRelease("test"))
	url := serve(t, e, HandlerOpts{}, "")
	fallback := New(ConntrackOf(n), WithKernelRelease("test"))
	fallback.netlink = failing(errEPERM)

	read := func() ctstat.Snapshot {
		t.Helper()
		s, err := ctstat.ReadNetlink(n)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	body1 := scrape(t, url)
	snap1 := read()
	fams1 := parseExposition(t, []byte(body1))
	checkAgainst(t, fams1, snap1)

	traffic(t, n, 5)
	// Connections close asynchronously: wait (bounded) for the entries.
	for i := 0; i < 100 && read().Entries < snap1.Entries+5; i++ {
		time.Sleep(10 * time.Millisecond)
	}

	body2 := scrape(t, url)
	snap2 := read()
	fams2 := parseExposition(t, []byte(body2))
	checkAgainst(t, fams2, snap2)
	if snap2.Entries < snap1.Entries+5 {
		t.Errorf("entries %d -> %d after 5 connections", snap1.Entries, snap2.Entries)
	}
	d := ctstat.Delta(snap1, snap2).Total()
	if d.Invalid < 5 {
		t.Errorf("invalid rose by %d after 5 SYN+FIN segments: delta %+v", d.Invalid, d)
	}
	t.Logf("kernel delta over the traffic: %+v, entries %d -> %d", d, snap1.Entries, snap2.Entries)
	var exported float64
	for _, m := range fams2["snatrace_conntrack_invalid_total"].GetMetric() {
		exported += m.GetCounter().GetValue()
	}
	for _, m := range fams1["snatrace_conntrack_invalid_total"].GetMetric() {
		exported -= m.GetCounter().GetValue()
	}
	if exported != float64(d.Invalid) {
		t.Errorf("exported invalid delta %v, kernel delta %d", exported, d.Invalid)
	}
	if v := gauge(t, fams2, "snatrace_conntrack_stats_source", map[string]string{"source": "netlink"}); v != 1 {
		t.Errorf("stats_source{netlink} = %v", v)
	}
	maxNS, err := ctstat.ReadNetlinkGlobal(n)
	if err != nil {
		t.Fatal(err)
	}
	if v := gauge(t, fams2, "snatrace_conntrack_max", nil); v != float64(maxNS.Max) {
		t.Errorf("max %v, kernel %d", v, maxNS.Max)
	}

	// ctnetlink refused: /proc read inside the namespace gives the same numbers.
	fams3 := scrapeFamilies(t, fallback)
	snap3 := read()
	checkAgainst(t, fams3, snap3)
	if v := gauge(t, fams3, "snatrace_conntrack_stats_source", map[string]string{"source": "proc"}); v != 1 {
		t.Errorf("fallback stats_source{proc} = %v", v)
	}
	if v := gauge(t, fams3, "snatrace_conntrack_max", nil); v != float64(maxNS.Max) {
		t.Errorf("fallback max %v, kernel %d", v, maxNS.Max)
	}
}

// TestLiveAuditFreshNamespace installs two nftables masquerade rules in a
// fresh namespace, plain and fully-random, and audits them live.
func TestLiveAuditFreshNamespace(t *testing.T) {
	n := freshNS(t)
	netnstest.Run(t, n, "table ip sntnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n"+
		"  oifname \"snt0\" masquerade\n  oifname \"snt1\" masquerade fully-random\n }\n}\n", "nft", "-f", "-")
	res, err := LiveAudit(n)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range res.Rules {
		got[r.Backend+" "+r.Randomness]++
	}
	if got["nftables none"] != 1 || got["nftables fully-random"] != 1 || len(res.Rules) != 2 {
		t.Errorf("rules %+v, want one plain and one fully-random nftables masquerade", res.Rules)
	}
	racing := false
	for _, f := range res.Findings {
		racing = racing || f.Kind == "no-fully-random"
	}
	if !racing {
		t.Errorf("findings %+v lack no-fully-random", res.Findings)
	}
}
