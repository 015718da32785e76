// Package ctstattest reads the ctnetlink replies recorded from real kernels
// that ctstat's and the exporter's tests replay.
package ctstattest

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
)

// Recorded reads a recording (testdata/netlink-*.hex): one raw netlink
// message per line, header included, in hex, as the kernel sent it; blank
// lines and lines starting with # are skipped. A file that does not read
// or decode fails t.
func Recorded(t testing.TB, path string) []netlink.Message {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs []netlink.Message
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		msgs = append(msgs, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return msgs
}
