//go:build linux

package lab

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/ctstat"
)

func TestDNSQuestion(t *testing.T) {
	q := appendQuery(nil, 0xbe08, qtypeAAAA)
	// dig @10.96.0.10 q.lab AAAA +norecurse would differ only in RD.
	want := []byte{0xbe, 0x08, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'q', 3, 'l', 'a', 'b', 0, 0, 28, 0, 1}
	if !bytes.Equal(q, want) {
		t.Fatalf("query % x, want % x", q, want)
	}
	id, resp, qtype, err := ParseDNSQuestion(q)
	if err != nil || id != 0xbe08 || resp || qtype != qtypeAAAA {
		t.Errorf("parse query: %#x %v %d %v", id, resp, qtype, err)
	}
	if !answerQuery(q) {
		t.Fatal("query not answered")
	}
	id, resp, qtype, err = ParseDNSQuestion(q)
	if err != nil || id != 0xbe08 || !resp || qtype != qtypeAAAA {
		t.Errorf("parse answer: %#x %v %d %v", id, resp, qtype, err)
	}
	if answerQuery(q) {
		t.Error("an answer was answered again")
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		err  string
	}{
		{"short", q[:5], "shorter than its header"},
		{"no question", []byte{0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "no question"},
		{"name past end", []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'}, "runs past"},
		{"compressed", []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, "compressed"},
		{"no type", q[:20], "cut short"},
	} {
		if _, _, _, err := ParseDNSQuestion(tc.msg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
}

func FuzzParseDNSQuestion(f *testing.F) {
	f.Add(appendQuery(nil, 1, qtypeA))
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, resp, qtype, err := ParseDNSQuestion(b)
		if err != nil {
			if answerQuery(append([]byte(nil), b...)) {
				t.Fatal("answered a message that does not parse")
			}
			return
		}
		c := append([]byte(nil), b...)
		if answerQuery(c) == resp {
			t.Fatalf("answered %v for a message with QR %v", !resp, resp)
		}
		id2, _, qtype2, err := ParseDNSQuestion(c)
		if err != nil || id2 != id || qtype2 != qtype {
			t.Fatalf("answer changed the question: %v", err)
		}
	})
}

// pairs plans an A and an AAAA query per pod and burst, consecutive and on
// one socket, so that shareBursts puts them on two client threads.
func TestPlanPairs(t *testing.T) {
	p := newPlanner(WorkloadConfig{Name: Pairs}, 2, 1, 1)
	bursts := p.nextUDP(10)
	if len(bursts) != 3 {
		t.Fatalf("%d bursts for 10 queries of 2 pods, want 3", len(bursts))
	}
	for _, b := range bursts {
		if len(b) != 4 {
			t.Fatalf("burst of %d queries, want 4", len(b))
		}
		for j := 0; j < len(b); j += 2 {
			a, aaaa := b[j], b[j+1]
			if a.sock != aaaa.sock || a.pod != aaaa.pod || a.qtype != qtypeA || aaaa.qtype != qtypeAAAA || a.port != 0 {
				t.Errorf("pair %+v %+v", a, aaaa)
			}
			if a.id&(1<<attemptBits-1) != 0 {
				t.Errorf("id %#x has attempt bits set", a.id)
			}
		}
	}
	if bursts[0][0].sock == bursts[1][0].sock {
		t.Error("two bursts share a socket")
	}
	shares := shareBursts([][]target{{bursts[0][0].target, bursts[0][1].target}}, 2)
	if len(shares[0][0]) != 1 || len(shares[1][0]) != 1 {
		t.Errorf("a pair is not split over two threads: %v", shares)
	}
	// same-port: one socket per query, the burst's port for every pod.
	p = newPlanner(WorkloadConfig{Name: SamePort}, 2, 1, 1)
	b := p.nextUDP(2)[0]
	if len(b) != 2 || b[0].sock == b[1].sock || b[0].port == 0 || b[0].port != b[1].port {
		t.Errorf("same-port burst %+v", b)
	}
}

// Every lost transmission has a cause: a cross-pod clash counts
// insert_failed and drop; a too long chain insert_failed only; a full
// table drop only; full sockets and late answers count on the hosts.
func TestAccountUDP(t *testing.T) {
	outs := []udpOutcome{
		{answered: true, latency: time.Millisecond},
		{answered: true, attempt: 1, lost: 1, latency: 5 * time.Second},
		{answered: true, attempt: 1, lost: 1, late: 1, latency: 5 * time.Second},
		{attempt: 1, lost: 2, latency: 10 * time.Second},
		{answered: true, attempt: 1, lost: 1},
		{answered: true, attempt: 1, lost: 1, latency: 5 * time.Second},
	}
	d := udpDelta{
		roundDelta: roundDelta{proc: ctstat.Counters{InsertFailed: 3, Drop: 3, ChainTooLong: 1, ClashResolve: 7}},
		perCPU:     []ctstat.CPU{{CPU: 1, Counters: ctstat.Counters{InsertFailed: 3, Drop: 3}}},
		podRcvbuf:  1,
	}
	d.netlink = d.proc
	r := &Result{}
	r.addUDP(outs, d)
	r.finish()
	if r.Queries != 6 || r.Datagrams != 11 || r.Lost != 6 || r.Retried != 5 || r.FailedQueries != 1 || r.Failed != 1 {
		t.Errorf("queries %d datagrams %d lost %d retried %d failed %d/%d", r.Queries, r.Datagrams, r.Lost, r.Retried, r.FailedQueries, r.Failed)
	}
	want := Causes{SNATClash: 2, TableFull: 1}
	wantUDP := UDPCauses{ChainTooLong: 1, SocketBuffer: 1, Late: 1}
	if r.Causes != want || r.LossCauses != wantUDP {
		t.Errorf("causes %+v %+v, want %+v %+v", r.Causes, r.LossCauses, want, wantUDP)
	}
	if !r.Accounted || r.Note != "" {
		t.Errorf("accounted %v: %s", r.Accounted, r.Note)
	}
	if len(r.ConntrackPerCPU) != 2 || r.ConntrackPerCPU[1].Drop != 3 {
		t.Errorf("per CPU %+v", r.ConntrackPerCPU)
	}
	// A query answered by the late answer to its first attempt: its second
	// attempt's answer finds the socket closed (NoPorts) but was never lost.
	r = &Result{}
	r.addUDP([]udpOutcome{{answered: true, attempt: 1, lost: 1, late: 1, seen: 1}}, udpDelta{podNoPorts: 1})
	r.finish()
	if r.LossCauses.Late != 1 || !r.Accounted {
		t.Errorf("straggler: late %d, accounted %v: %s", r.LossCauses.Late, r.Accounted, r.Note)
	}
	// One more lost transmission than the kernel explains does not add up.
	r = &Result{}
	r.addUDP(append(outs, udpOutcome{answered: true, attempt: 1, lost: 1}), d)
	r.finish()
	if r.Accounted || r.Causes.Unexplained != 1 || !strings.Contains(r.Note, "1 lost queries have no kernel drop") {
		t.Errorf("accounted %v unexplained %d: %s", r.Accounted, r.Causes.Unexplained, r.Note)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"queries":7`, `"lost":7`, `"retried":6`, `"conntrack":{"insert_failed":3,"drop":3,"clash_resolve":7`, `"conntrack_per_cpu":[`, `"udp_causes":{`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("JSON lacks %s: %s", k, js)
		}
	}
}

func TestValidateProto(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		err string
	}{
		{Config{Proto: "sctp"}, "proto"},
		{Config{Proto: TCP, Workload: WorkloadConfig{Name: Pairs}}, "UDP workload"},
		{Config{Proto: UDP, Workload: WorkloadConfig{Name: Steady, Rate: 10}}, "not a UDP workload"},
		{Config{Proto: UDP, UDP: UDPConfig{Timeout: -1}}, "udp-timeout"},
		{Config{Proto: UDP, UDP: UDPConfig{Attempts: 9}}, "udp-attempts"},
		{Config{Proto: UDP, Workload: WorkloadConfig{Name: Pairs}}, ""},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.err)
		}
	}
	c := Config{Proto: UDP, Workload: WorkloadConfig{Name: Pairs}}.WithDefaults()
	if c.UDP.Timeout != 5*time.Second || c.UDP.Attempts != 2 || c.Workload.Dport != 53 || c.RoundSize != DefaultUDPRoundSize {
		t.Errorf("udp defaults %+v", c)
	}
}
