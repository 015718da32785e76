package netstat

import (
	"os"
	"strings"
	"testing"
)

func TestParseRecorded(t *testing.T) {
	// /proc/net/netstat of Linux 6.18.44: PAWSTimewait (6.16+) beside PAWSEstab.
	f, err := os.Open("testdata/netstat-6.18.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"PAWSTimewait", "PAWSEstab", "TCPSynRetrans", "ListenDrops"} {
		if _, ok := c.Get("TcpExt", n); !ok {
			t.Errorf("TcpExt %s missing", n)
		}
	}
	if _, ok := c.Get("IpExt", "InOctets"); !ok {
		t.Error("IpExt InOctets missing")
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]uint64 // "Group.Name" -> value
		err      string
	}{
		{name: "pair", in: "TcpExt: SyncookiesSent PAWSTimewait\nTcpExt: 3 69\n",
			want: map[string]uint64{"TcpExt.SyncookiesSent": 3, "TcpExt.PAWSTimewait": 69}},
		{name: "negative constant left out", in: "Tcp: RtoAlgorithm MaxConn ActiveOpens\nTcp: 1 -1 7\n",
			want: map[string]uint64{"Tcp.RtoAlgorithm": 1, "Tcp.ActiveOpens": 7}},
		{name: "two groups", in: "TcpExt: A\nTcpExt: 1\nIpExt: B\nIpExt: 2\n",
			want: map[string]uint64{"TcpExt.A": 1, "IpExt.B": 2}},
		{name: "no values", in: "TcpExt: A B\n", err: "without a value line"},
		{name: "wrong group", in: "TcpExt: A\nIpExt: 1\n", err: "want the values of TcpExt"},
		{name: "counts differ", in: "TcpExt: A B\nTcpExt: 1\n", err: "2 names and 1 values"},
		{name: "not a number", in: "TcpExt: A\nTcpExt: x\n", err: "is not a counter"},
		{name: "no colon", in: "garbage\n", err: "is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for g, m := range c {
				for k, v := range m {
					n++
					if w, ok := tc.want[g+"."+k]; !ok || w != v {
						t.Errorf("%s.%s = %d, want %d (listed: %v)", g, k, v, w, ok)
					}
				}
			}
			if n != len(tc.want) {
				t.Errorf("%d counters, want %d", n, len(tc.want))
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/netstat-6.18.txt", "testdata/snmp-6.18.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("TcpExt: A\nTcpExt: -1\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		for g, m := range c {
			if g == "" || m == nil {
				t.Fatalf("empty group or map in %q", s)
			}
		}
	})
}
