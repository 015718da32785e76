package trace

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// record builds a struct event record as the eBPF programs write it.
type record struct {
	ts                                   uint64
	status                               uint64
	netns, cpu, reason                   uint32
	kind, source, family, hasCT          uint8
	proto                                uint8 // 0: TCP
	origSrc, origDst, replySrc, replyDst netip.AddrPort
}

func (r record) bytes() []byte {
	b := make([]byte, recordSize)
	ne := binary.NativeEndian
	ne.PutUint64(b[offTs:], r.ts)
	ne.PutUint64(b[offStatus:], r.status)
	ne.PutUint32(b[offNetNS:], r.netns)
	ne.PutUint32(b[offCPU:], r.cpu)
	ne.PutUint32(b[offReason:], r.reason)
	b[offKind], b[offSource], b[offFamily], b[offHasCT] = r.kind, r.source, r.family, r.hasCT
	b[offProto] = cmp.Or(r.proto, ipprotoTCP)
	put := func(aoff, poff int, ap netip.AddrPort) {
		if !ap.IsValid() {
			return
		}
		a := ap.Addr().AsSlice()
		copy(b[aoff:aoff+len(a)], a)
		binary.BigEndian.PutUint16(b[poff:], ap.Port())
	}
	put(offOrigSrc, offOrigSport, r.origSrc)
	put(offOrigDst, offOrigDport, r.origDst)
	put(offReplySrc, offReplySport, r.replySrc)
	put(offReplyDst, offReplyDport, r.replyDst)
	return b
}

var (
	testWall = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	testDec  = decoder{
		clock:   clock{wall: testWall, mono: 10 * time.Second},
		reasons: map[uint32]string{9: "NETFILTER_DROP", 115: "TCP_RFC7323_TW_PAWS"},
	}
	ap = netip.MustParseAddrPort
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		rec  record
		want Event
	}{
		{
			// pod 10.77.0.10:20000 -> 198.18.5.2:80 lost the race; NATed to 198.18.5.1:20000
			name: "snat clash seen by fexit",
			rec: record{
				ts: uint64(11 * time.Second), status: 0x190, netns: 4026532177, cpu: 1,
				kind: rawKindSNATClash, source: rawSourceConfirm, family: afInet, hasCT: 1,
				origSrc: ap("10.77.0.10:20000"), origDst: ap("198.18.5.2:80"),
				replySrc: ap("198.18.5.2:80"), replyDst: ap("198.18.5.1:20000"),
			},
			want: Event{
				Time: testWall.Add(time.Second), CPU: 1, NetNS: 4026532177,
				Orig: Tuple{ap("10.77.0.10:20000"), ap("198.18.5.2:80")},
				NAT:  Tuple{ap("198.18.5.1:20000"), ap("198.18.5.2:80")},
				Kind: KindSNATClash, Reason: "NETFILTER_DROP", Hook: HookConfirm,
				Evidence: EvidenceConfirmDrop, CTStatus: 0x190, Proto: "tcp",
			},
		},
		{
			// a server's TIME_WAIT rejected a SYN remapped onto 198.51.100.1:20003
			name: "PAWS at a server's TIME_WAIT",
			rec: record{
				ts: uint64(10 * time.Second), netns: 4026532180, reason: 115,
				kind: rawKindPAWSTimewait, source: rawSourceKfree, family: afInet,
				origSrc: ap("198.51.100.1:20003"), origDst: ap("198.51.100.2:81"),
			},
			want: Event{
				Time: testWall, NetNS: 4026532180,
				Orig: Tuple{ap("198.51.100.1:20003"), ap("198.51.100.2:81")},
				Kind: KindPAWSTimewait, Reason: "TCP_RFC7323_TW_PAWS", Hook: HookKfreeSkb, Proto: "tcp",
			},
		},
		{
			name: "firewall drop without conntrack, IPv6",
			rec: record{
				ts: uint64(10 * time.Second), netns: 1, reason: 9,
				kind: rawKindOtherDrop, source: rawSourceKfree, family: afInet6,
				origSrc: ap("[2001:db8::1]:4000"), origDst: ap("[2001:db8::2]:9"),
			},
			want: Event{
				Time: testWall, NetNS: 1,
				Orig: Tuple{ap("[2001:db8::1]:4000"), ap("[2001:db8::2]:9")},
				Kind: KindOtherDrop, Reason: "NETFILTER_DROP", Hook: HookKfreeSkb, Proto: "tcp",
			},
		},
		{
			// two pods' queries met on 198.18.5.1:5353 -> 10.96.0.10's backend
			name: "udp snat clash seen by fexit",
			rec: record{
				ts: uint64(12 * time.Second), status: 0x1b0, netns: 7, cpu: 0, proto: ipprotoUDP,
				kind: rawKindSNATClash, source: rawSourceConfirm, family: afInet, hasCT: 1,
				origSrc: ap("10.98.0.3:5353"), origDst: ap("198.51.100.2:53"),
				replySrc: ap("198.51.100.2:53"), replyDst: ap("198.51.100.1:5353"),
			},
			want: Event{
				Time: testWall.Add(2 * time.Second), NetNS: 7, Proto: "udp",
				Orig: Tuple{ap("10.98.0.3:5353"), ap("198.51.100.2:53")},
				NAT:  Tuple{ap("198.51.100.1:5353"), ap("198.51.100.2:53")},
				Kind: KindSNATClash, Reason: "NETFILTER_DROP", Hook: HookConfirm,
				Evidence: EvidenceConfirmDrop, CTStatus: 0x1b0,
			},
		},
		{
			// an AAAA query merged into its A query's conntrack: no reason, no evidence
			name: "udp clash merged",
			rec: record{
				ts: uint64(10 * time.Second), status: 0x198, netns: 7, cpu: 1, proto: ipprotoUDP,
				kind: rawKindClashMerged, source: rawSourceConfirm, family: afInet, hasCT: 1,
				origSrc: ap("10.98.0.2:40000"), origDst: ap("198.51.100.2:53"),
				replySrc: ap("198.51.100.2:53"), replyDst: ap("198.51.100.1:40000"),
			},
			want: Event{
				Time: testWall, CPU: 1, NetNS: 7, Proto: "udp",
				Orig: Tuple{ap("10.98.0.2:40000"), ap("198.51.100.2:53")},
				NAT:  Tuple{ap("198.51.100.1:40000"), ap("198.51.100.2:53")},
				Kind: KindClashMerged, Hook: HookConfirm, CTStatus: 0x198,
			},
		},
		{
			name: "unknown reason value keeps its number",
			rec: record{
				ts: uint64(10 * time.Second), reason: 77,
				kind: rawKindOtherDrop, source: rawSourceKfree, family: afInet,
				origSrc: ap("10.0.0.1:1"), origDst: ap("10.0.0.2:2"),
			},
			want: Event{
				Time: testWall,
				Orig: Tuple{ap("10.0.0.1:1"), ap("10.0.0.2:2")},
				Kind: KindOtherDrop, Reason: "reason_77", Hook: HookKfreeSkb, Proto: "tcp",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testDec.decode(tt.rec.bytes())
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got != tt.want {
				t.Errorf("decode:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good := record{kind: rawKindOtherDrop, source: rawSourceKfree, family: afInet}
	tests := []struct {
		name string
		b    []byte
		is   error
	}{
		{"short", good.bytes()[:recordSize-1], errShortRecord},
		{"kind", func() []byte { r := good; r.kind = 9; return r.bytes() }(), nil},
		{"source", func() []byte { r := good; r.source = 9; return r.bytes() }(), nil},
		{"family", func() []byte { r := good; r.family = 7; return r.bytes() }(), nil},
		{"proto", func() []byte { r := good; r.proto = 1; return r.bytes() }(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testDec.decode(tt.b)
			if err == nil {
				t.Fatal("decode: no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("decode: %v, want %v", err, tt.is)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(record{kind: 1, source: 1, family: afInet, hasCT: 1}.bytes())
	f.Add(record{kind: 2, source: 2, family: afInet6}.bytes())
	f.Add(record{kind: 3, source: 1, family: afInet, hasCT: 1, proto: ipprotoUDP}.bytes())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := testDec.decode(b)
		if err != nil {
			return
		}
		if ev.Kind != KindSNATClash && ev.Kind != KindOtherDrop && ev.Kind != KindPAWSTimewait && !ev.Kind.Resolved() {
			t.Errorf("decoded kind %q", ev.Kind)
		}
		if ev.Proto != "tcp" && ev.Proto != "udp" {
			t.Errorf("decoded proto %q", ev.Proto)
		}
		if !ev.Orig.Src.IsValid() || !ev.Orig.Dst.IsValid() {
			t.Errorf("decoded invalid tuple %v", ev.Orig)
		}
	})
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "fexit", "tracepoint"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("kprobe"); err == nil {
		t.Error(`ParseMode("kprobe"): no error`)
	}
}

func TestMissingError(t *testing.T) {
	under := errors.New("operation not permitted")
	err := error(&MissingError{Need: NeedCapPerfmon, Detail: "(run as root)", Err: under})
	if got, want := err.Error(), "trace needs CAP_PERFMON (run as root): operation not permitted"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrMissing) || !errors.Is(err, under) {
		t.Error("MissingError does not match ErrMissing and its cause")
	}
	if errors.Is(errors.New("other"), ErrMissing) {
		t.Error("a plain error matches ErrMissing")
	}
}
