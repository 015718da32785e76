package trace

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	goldenfile "github.com/snatrace/snatrace/internal/golden"
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got)
}

func sampleEvents() []Event {
	at := time.Date(2026, 11, 26, 1, 2, 3, 123456000, time.UTC)
	clash := func(src, dst, nat string, cpu int) Event {
		return Event{
			Time: at, CPU: cpu, NetNS: 4026532177,
			Orig: Tuple{ap(src), ap(dst)}, NAT: Tuple{ap(nat), ap(dst)},
			Kind: KindSNATClash, Reason: "NETFILTER_DROP", Hook: HookKfreeSkb, Evidence: EvidenceReplyTaken,
		}
	}
	unverified := clash("10.77.0.12:33000", "198.18.5.2:443", "198.18.5.1:33000", 0)
	unverified.Evidence = EvidenceUnverified
	return []Event{
		clash("10.77.0.10:20000", "198.18.5.2:80", "198.18.5.1:20000", 1),
		clash("10.77.0.11:20001", "198.18.5.2:80", "198.18.5.1:20001", 0),
		clash("10.77.0.10:20002", "198.18.5.2:80", "198.18.5.1:20002", 1),
		unverified,
		{Time: at, NetNS: 4026532177, Orig: Tuple{ap("10.77.0.10:30000"), ap("198.18.5.2:9")},
			Kind: KindOtherDrop, Reason: "NETFILTER_DROP", Hook: HookKfreeSkb},
	}
}

func TestFormatEvents(t *testing.T) {
	var b bytes.Buffer
	for _, ev := range sampleEvents() {
		b.WriteString(FormatEvent(ev) + "\n")
	}
	golden(t, "events.txt", b.Bytes())
}

func TestSummary(t *testing.T) {
	var s Summarizer
	for _, ev := range sampleEvents() {
		s.Add(ev)
	}
	sum := s.Summary(10*time.Second, ModeTracepoint,
		map[netip.AddrPort]uint64{ap("198.18.5.2:80"): 3, ap("198.18.5.2:443"): 1, ap("[2001:db8::2]:80"): 1},
		Stats{Lost: 2})
	if sum.SNATClashes != 4 || sum.OtherDrops != 1 {
		t.Errorf("clashes %d, others %d, want 4 and 1", sum.SNATClashes, sum.OtherDrops)
	}
	if len(sum.ByDestination) == 0 || sum.ByDestination[0] != (Count{"198.18.5.2:80", 3}) {
		t.Errorf("top destination %v, want 198.18.5.2:80 with 3", sum.ByDestination)
	}
	var b bytes.Buffer
	if err := WriteSummary(&b, sum); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.txt", b.Bytes())
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.json", append(js, '\n'))
}

func TestDestLabels(t *testing.T) {
	d := NewDestLabels(2)
	steps := []struct {
		dst, want string
	}{
		{"198.18.5.2:80", "198.18.5.2:80"},
		{"198.18.5.3:80", "198.18.5.3:80"},
		{"198.18.5.4:80", OtherLabel},
		{"198.18.5.2:80", "198.18.5.2:80"}, // keeps its label
		{"198.18.5.5:443", OtherLabel},
	}
	for _, s := range steps {
		if got := d.Label(ap(s.dst)); got != s.want {
			t.Errorf("Label(%s) = %q, want %q", s.dst, got, s.want)
		}
	}
}
