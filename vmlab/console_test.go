package vmlab

import (
	"bytes"
	"strings"
	"testing"
)

// The console forwards only what the guest's command prints, with the
// serial line's CRLF back to LF and progress updates (CR) kept, and notes the
// markers, however the bytes are split.
func TestConsole(t *testing.T) {
	stream := "[    1.2] Run /init as init process\r\n" +
		"snatrace-guest: running on 6.1.0-50-cloud-amd64 (up 3.10 s)\r\n" +
		"\r\x1b[K[####....] 40%\r\x1b[K[########] 100%\r\x1b[K" +
		"kernel 6.1.0-50-cloud-amd64, 2 CPUs\r\n" +
		"[    9.9] br0: port 2(v0) entered disabled state\r\n" +
		"snatrace-guest: exit 1\r\n" +
		"snatrace-guest: modules loaded: bridge nf_conntrack veth\r\n" +
		"[   10.0] reboot: Power down\r\n"
	for _, chunk := range []int{1, 3, 7, len(stream)} {
		var out bytes.Buffer
		c := &console{out: &out}
		for i := 0; i < len(stream); i += chunk {
			c.Write([]byte(stream[i:min(i+chunk, len(stream))]))
		}
		want := "\r\x1b[K[####....] 40%\r\x1b[K[########] 100%\r\x1b[Kkernel 6.1.0-50-cloud-amd64, 2 CPUs\n" +
			"[    9.9] br0: port 2(v0) entered disabled state\n"
		if out.String() != want {
			t.Errorf("chunks of %d: forwarded %q, want %q", chunk, out.String(), want)
		}
		if c.started.IsZero() || c.release != "6.1.0-50-cloud-amd64" || c.guestUp != "3.10" || !c.exited || c.exit != 1 ||
			strings.Join(c.modules, ",") != "bridge,nf_conntrack,veth" {
			t.Errorf("chunks of %d: markers %+v", chunk, c)
		}
		if !strings.Contains(c.snapshot(), "Run /init as init process\n") || !strings.Contains(c.snapshot(), "reboot: Power down") {
			t.Errorf("log %q", c.snapshot())
		}
	}
}

func TestLastLines(t *testing.T) {
	if got := lastLines("a\r\n\r\nb\nc\n\n", 2); got != "b\nc" {
		t.Errorf("lastLines = %q", got)
	}
}
