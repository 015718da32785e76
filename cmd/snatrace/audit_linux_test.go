//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditIncomplete runs a live audit whose iptables-legacy rules cannot
// be read (a multiport rule sends the nat table to the save tool, which
// fails) on a node with nothing racing among the rules it can read: --fail-on high must not say "nothing found" (exit 0)
// about rules it never saw. It exits 2 naming the source; --fail-on medium
// exits 1 on the not-read finding itself; with the tool back, exit 0.
func TestAuditIncomplete(t *testing.T) {
	ns := fixNS(t, "incomplete")
	inNS(t, ns, "table ip cni {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr 10.88.0.0/16 masquerade fully-random\n\t}\n}\n", "nft", "-f", "-")
	inNS(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.89.0.0/16 -p tcp -m multiport --dports 80,443 -j MASQUERADE --random-fully\nCOMMIT\n", "iptables-legacy-restore")
	dir := t.TempDir()
	for _, tool := range []string{"ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(p, filepath.Join(dir, tool))
	}
	audit := func(failOn string) (string, int) {
		var errb bytes.Buffer
		cmd := snatrace("audit", "--netns", ns.Path(), "--interval", "0", "--fail-on", failOn)
		cmd.Env = append(cmd.Env, "PATH="+dir)
		cmd.Stderr = &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return errb.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return errb.String(), 0
	}
	if errs, code := audit("high"); code != exitOK {
		t.Fatalf("every source readable: exit %d, stderr %q", code, errs)
	}
	legacy := filepath.Join(dir, "iptables-legacy-save")
	os.Remove(legacy)
	os.WriteFile(legacy, []byte("#!/bin/sh\necho 'iptables-legacy-save: simulated failure' >&2\nexit 1\n"), 0o755)
	errs, code := audit("high")
	want := "snatrace: audit incomplete: the iptables-legacy rules could not be read (iptables-legacy-save: "
	if code != exitUsage || !strings.HasPrefix(errs, want) || !strings.Contains(errs, "simulated failure") || !strings.HasSuffix(strings.TrimSpace(errs), "no finding at or above high among the rules that were read") {
		t.Errorf("unreadable legacy rules, --fail-on high: exit %d, stderr %q; want exit 2 and %q…", code, errs, want)
	}
	if errs, code := audit("medium"); code != exitFindings {
		t.Errorf("unreadable legacy rules, --fail-on medium: exit %d, stderr %q; want 1 (the not-read finding)", code, errs)
	}
}
