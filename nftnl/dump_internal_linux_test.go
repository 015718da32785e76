//go:build linux

package nftnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns/netnstest"
)

// nlmsg encodes one netlink message as the kernel puts it in a dump part.
func nlmsg(typ netlink.HeaderType, flags netlink.HeaderFlags, seq uint32, data []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(data)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(data)))
	binary.NativeEndian.PutUint16(b[4:], uint16(typ))
	binary.NativeEndian.PutUint16(b[6:], uint16(flags))
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func errnoData(errno unix.Errno) []byte {
	return binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
}

// TestDumpReaderPart decodes dump parts byte by byte: answers to other
// requests are skipped, NLM_F_DUMP_INTR is reported, NLMSG_DONE and
// NLMSG_ERROR carry the kernel's errno, fn's error stops delivery but not
// the reading, and a header longer than its part is an error.
func TestDumpReaderPart(t *testing.T) {
	rule := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)
	cases := []struct {
		name      string
		part      []byte
		fnErr     error
		wantData  []string
		wantDone  bool
		wantIntr  bool
		wantErr   string
		wantErrno unix.Errno
	}{
		{name: "messages then done",
			part:     append(append(nlmsg(rule, netlink.Multi, 7, []byte("a")), nlmsg(rule, netlink.Multi, 7, []byte("bb"))...), nlmsg(netlink.Done, netlink.Multi, 7, errnoData(0))...),
			wantData: []string{"a", "bb"}, wantDone: true},
		{name: "another request's answer is skipped",
			part:     append(nlmsg(rule, netlink.Multi, 6, []byte("old")), nlmsg(rule, netlink.Multi, 7, []byte("new"))...),
			wantData: []string{"new"}},
		{name: "interrupted",
			part:     nlmsg(rule, netlink.Multi|netlink.DumpInterrupted, 7, []byte("x")),
			wantData: []string{"x"}, wantIntr: true},
		{name: "done with an errno",
			part:     nlmsg(netlink.Done, netlink.Multi, 7, errnoData(unix.EPERM)),
			wantDone: true, wantErrno: unix.EPERM},
		{name: "error message",
			part:     nlmsg(netlink.Error, 0, 7, errnoData(unix.ENOENT)),
			wantDone: true, wantErrno: unix.ENOENT},
		{name: "fn fails: the rest is read, not delivered",
			part:  append(nlmsg(rule, netlink.Multi, 7, []byte("a")), nlmsg(rule, netlink.Multi, 7, []byte("b"))...),
			fnErr: errors.New("decoder failed"), wantData: []string{"a"}},
		{name: "truncated header",
			part:    nlmsg(rule, netlink.Multi, 7, []byte("abcdef"))[:20],
			wantErr: "malformed message header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dumpReader{seq: 7}
			var got []string
			done, err := r.part(c.part, func(m netlink.Message) error {
				got = append(got, string(m.Data))
				return c.fnErr
			})
			if fmt.Sprint(got) != fmt.Sprint(c.wantData) || done != c.wantDone || r.intr != c.wantIntr {
				t.Errorf("delivered %q done %v intr %v; want %q done %v intr %v", got, done, r.intr, c.wantData, c.wantDone, c.wantIntr)
			}
			switch {
			case c.wantErrno != 0:
				if !errors.Is(err, c.wantErrno) {
					t.Errorf("err %v, want errno %v", err, c.wantErrno)
				}
			case c.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("err %v, want %q", err, c.wantErr)
				}
			case err != nil:
				t.Errorf("err %v", err)
			}
			if c.fnErr != nil && !errors.Is(r.failed, c.fnErr) {
				t.Errorf("failed %v, want fn's error", r.failed)
			}
		})
	}
}

// TestDumpEachLargeChain dumps a chain of 5,000 rules from the kernel: every
// rule arrives, in order, in parts the kernel filled to about 32 KiB. With a
// page-sized receive buffer (mdlayher/netlink's Receive) the same dump takes
// eight times as many parts, and the kernel walks the chain from its start
// for each one.
func TestDumpEachLargeChain(t *testing.T) {
	ns := netnstest.New(t, "nl")
	var b strings.Builder
	b.WriteString("table ip big {\n\tchain c {\n")
	const n = 5000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "\t\tip saddr 10.%d.%d.0/24 tcp dport %d counter accept\n", i/256, i%256, 1000+i)
	}
	b.WriteString("\t}\n}\n")
	netnstest.Run(t, ns, b.String(), "nft", "-f", "-")

	c, err := Dial(WithNetNS(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var handles []uint64
	size := 0
	_, err = c.DumpEach(unix.NFT_MSG_GETRULE, unix.NFPROTO_IPV4, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte("big\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte("c\x00")},
	}, func(m netlink.Message) error {
		size += unix.NLMSG_HDRLEN + len(m.Data)
		return Walk(m.Data[4:], func(typ uint16, v []byte) error {
			if typ == unix.NFTA_RULE_HANDLE {
				handles = append(handles, binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(handles) != n {
		t.Fatalf("%d rules dumped, want %d", len(handles), n)
	}
	for i := 1; i < n; i++ {
		if handles[i] <= handles[i-1] {
			t.Fatalf("rule %d has handle %d after %d: out of order", i, handles[i], handles[i-1])
		}
	}
	// 32 KiB parts, allowing for the messages that did not fit and the
	// NLMSG_DONE part.
	if most := size/(24<<10) + 2; c.parts > most {
		t.Errorf("%d bytes came in %d parts, want at most %d (parts of ~32 KiB)", size, c.parts, most)
	}
	t.Logf("%d rules, %d bytes, %d parts", n, size, c.parts)

	// A decoder that fails leaves the connection usable: the rest of the
	// dump is drained.
	stop := errors.New("stop")
	_, err = c.DumpEach(unix.NFT_MSG_GETRULE, unix.NFPROTO_IPV4, nil, func(netlink.Message) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("DumpEach = %v, want the decoder's error", err)
	}
	if _, err := c.Generation(); err != nil {
		t.Fatalf("Generation after a failed dump: %v", err)
	}
}
