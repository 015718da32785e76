package lab

import (
	"testing"
	"time"
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
