package lab

import (
	"strings"
	"testing"
)

// TestAccountPAWS: the servers' TIME_WAIT rejections explain retransmitted
// SYNs; rejections beyond them are late segments of closed connections,
// and before 6.16 (PAWSEstab) only as many count as the clients reset.
func TestAccountPAWS(t *testing.T) {
	for _, tc := range []struct {
		name                string
		paws                PAWSCounters
		synRetrans, failed  int
		insertFailed        uint64
		wantPAWS, wantOther uint64
		accounted           bool
	}{
		{"every retransmission a rejection", PAWSCounters{Counter: "PAWSTimewait", TimewaitRejected: 77, ClientResets: 77}, 77, 0, 0, 77, 0, true},
		{"two late segments besides", PAWSCounters{Counter: "PAWSTimewait", TimewaitRejected: 10, ClientResets: 10}, 8, 0, 0, 8, 2, true},
		{"a failed connection's last SYN", PAWSCounters{Counter: "PAWSTimewait", TimewaitRejected: 106}, 105, 1, 0, 106, 0, true},
		{"with an SNAT clash", PAWSCounters{Counter: "PAWSTimewait", TimewaitRejected: 118}, 119, 0, 1, 118, 0, true},
		{"PAWSEstab bounded by the resets", PAWSCounters{Counter: "PAWSEstab", TimewaitRejected: 53, ClientResets: 48}, 48, 0, 0, 48, 0, true},
		{"too few rejections", PAWSCounters{Counter: "PAWSEstab", TimewaitRejected: 10, ClientResets: 6}, 8, 0, 0, 6, 0, false},
		{"no PAWS at all", PAWSCounters{Counter: "PAWSTimewait"}, 3, 0, 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Result{ServerPAWS: tc.paws, SynRetrans: uint64(tc.synRetrans), SynRetransKernel: uint64(tc.synRetrans), Failed: tc.failed,
				Conntrack: Conntrack{InsertFailed: tc.insertFailed, Drop: tc.insertFailed}, ConntrackNetlink: Conntrack{InsertFailed: tc.insertFailed, Drop: tc.insertFailed}}
			r.finish()
			if r.Causes.PAWSTimewait != tc.wantPAWS || r.ServerPAWS.OtherSegments != tc.wantOther || r.Accounted != tc.accounted {
				t.Errorf("causes %+v, other segments %d, accounted %v (%s); want PAWS %d, other %d, accounted %v",
					r.Causes, r.ServerPAWS.OtherSegments, r.Accounted, r.Note, tc.wantPAWS, tc.wantOther, tc.accounted)
			}
		})
	}
}

// TestWriteTextPAWSTrace: the text report gives the traced rejections and,
// only when there are some, those the servers counted and the tracer could
// not see.
func TestWriteTextPAWSTrace(t *testing.T) {
	for _, unseen := range []int{0, 1} {
		rep := &Report{Workload: WorkloadReport{Name: Short}, Results: []*Result{{
			NAT: "masquerade", Backend: "nft",
			Trace: &TraceResult{PAWS: &PAWSTrace{Seen: 12, Attributed: 12, Connections: 9, Unseen: unseen}},
		}}}
		var b strings.Builder
		if err := WriteText(&b, rep); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.Contains(out, "trace: 12 SYNs rejected at the servers' TIME_WAIT, 12 attributed to 9 delayed connections, 0 unmatched\n") {
			t.Errorf("unseen %d: no traced-rejections line in\n%s", unseen, out)
		}
		line := "trace: 1 more counted by the servers without the drop reason the tracer sees\n"
		if got := strings.Contains(out, line); got != (unseen == 1) {
			t.Errorf("unseen %d: line %q present = %v in\n%s", unseen, line, got, out)
		}
	}
}
