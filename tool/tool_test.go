package tool

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestMissingError(t *testing.T) {
	err := error(Missing("iptables-legacy-restore"))
	if got, want := err.Error(), "iptables-legacy-restore not found in PATH (install the iptables package)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !IsMissing(errors.Join(errors.New("x"), err)) || IsMissing(errors.New("x")) {
		t.Error("IsMissing is wrong")
	}
	for bin, pkg := range map[string]string{"nft": "nftables", "ip6tables-nft-save": "iptables", "nsenter": "util-linux", "podman": "podman"} {
		if got := PackageOf(bin); got != pkg {
			t.Errorf("PackageOf(%s) = %s, want %s", bin, got, pkg)
		}
	}
}

func TestFake(t *testing.T) {
	f := &Fake{Expected: []Call{
		{Cmd: Command("iptables-legacy-save", "-t", "nat"), Stdout: "*nat\nCOMMIT\n"},
		{Cmd: Command("iptables-legacy-restore", "--noflush").WithStdin("*nat\nCOMMIT\n"), Err: errors.New("exit status 1")},
	}}
	ctx := context.Background()
	if _, err := f.LookPath("nft"); !IsMissing(err) {
		t.Errorf("LookPath(nft) = %v, want missing", err)
	}
	if out, err := f.Run(ctx, Command("iptables-legacy-save", "-t", "nat")); err != nil || string(out) != "*nat\nCOMMIT\n" {
		t.Errorf("first call = %q, %v", out, err)
	}
	if err := f.Unmet(); err == nil || !strings.Contains(err.Error(), "iptables-legacy-restore --noflush") {
		t.Errorf("Unmet = %v", err)
	}
	if _, err := f.Run(ctx, Command("iptables-legacy-restore", "--noflush").WithStdin("other")); err == nil || !strings.Contains(err.Error(), `stdin "other"`) {
		t.Errorf("a wrong stdin was accepted: %v", err)
	}
	if _, err := f.Run(ctx, Command("iptables-legacy-save")); err == nil || !strings.Contains(err.Error(), "unexpected command 3") {
		t.Errorf("an unexpected command was accepted: %v", err)
	}
	if n := len(f.Calls()); n != 3 {
		t.Errorf("%d calls recorded, want 3", n)
	}
}

// blocks gives back exactly what was written, in order, across writes of
// every size: empty, smaller than a block, spanning several blocks.
func TestBlocks(t *testing.T) {
	var b blocks
	var want []byte
	for i, n := range []int{0, 1, 100, 64 << 10, 3, 200 << 10, 0, 1 << 20, 17} {
		p := make([]byte, n)
		for k := range p {
			p[k] = byte(i*31 + k)
		}
		if k, err := b.Write(p); k != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
		}
		want = append(want, p...)
	}
	if got := b.bytes(); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want %d (equal prefix: %v)", len(got), len(want), bytes.HasPrefix(want, got[:min(len(got), len(want))]))
	}
	var empty blocks
	if got := empty.bytes(); len(got) != 0 {
		t.Errorf("nothing written, %d bytes back", len(got))
	}
}
