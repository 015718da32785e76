package kmod

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/kmod/kmodtest"
)

func fakeModule(t testing.TB, entries ...string) []byte {
	t.Helper()
	return kmodtest.Module(t, entries...)
}

func TestParseInfo(t *testing.T) {
	mod := fakeModule(t, "description=masquerade", "alias=nft-expr-masq", "depends=nf_tables,nf_nat,nf-conntrack",
		"name=nft_masq", "vermagic=6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions ")
	got, err := ParseInfo(mod, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "nft_masq", Depends: []string{"nf_tables", "nf_nat", "nf_conntrack"}, Aliases: []string{"nft-expr-masq"},
		Vermagic: "6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions "}
	if !reflect.DeepEqual(got, want) || got.Release() != "6.1.0-50-cloud-amd64" {
		t.Errorf("ParseInfo = %+v (release %q), want %+v", got, got.Release(), want)
	}
	// Old kernels write no name: the file's is used.
	if got, err := ParseInfo(fakeModule(t, "depends="), "nf-nat"); err != nil || got.Name != "nf_nat" || got.Depends != nil {
		t.Errorf("nameless module: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, []byte("not an elf file at all"), fakeModule(t)[:70]} {
		if _, err := ParseInfo(bad, ""); !errors.Is(err, ErrNotModule) {
			t.Errorf("ParseInfo(%q...) = %v, want ErrNotModule", bad[:min(len(bad), 8)], err)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	f.Add(fakeModule(f, "name=a", "depends=b,c", "alias=x-*"))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseInfo(b, "fallback")
		if err != nil {
			return
		}
		if info.Name == "" || strings.Contains(info.Name, "-") {
			t.Errorf("name %q", info.Name)
		}
		for _, d := range info.Depends {
			if d == "" || strings.Contains(d, "-") {
				t.Errorf("dependency %q", d)
			}
		}
	})
}

// writeTree makes lib/modules/REL with modules a (needs b, c), b (.ko.zst),
// c (.ko.xz, aliases), d (built for another kernel) and a built-in.
func writeTree(t *testing.T) string {
	t.Helper()
	const rel = "6.1.0-test"
	dir := filepath.Join(t.TempDir(), rel)
	vm := "vermagic=" + rel + " SMP mod_unload"
	write := func(p string, b []byte) {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kernel/net/netfilter/a.ko", fakeModule(t, "name=a", "depends=b,c", vm))
	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zw.Write(fakeModule(t, "name=b", "depends=", vm))
	zw.Close()
	write("kernel/lib/b.ko.zst", zb.Bytes())
	write("kernel/net/netfilter/c.ko.xz", xzCompress(t, fakeModule(t, "name=c", "depends=b", "alias=nft-chain-*-nat", "alias=nfnetlink-subsys-10", vm)))
	write("kernel/net/netfilter/d.ko", fakeModule(t, "name=d", "vermagic=6.1.0-other SMP"))
	write("kernel/net/netfilter/e.ko", fakeModule(t, "name=e", "depends=missing", vm))
	write("modules.builtin", []byte("kernel/net/core/builtin-one.ko\n"))
	return dir
}

func TestTreeClosure(t *testing.T) {
	tree, err := OpenTree(writeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := tree.Under("kernel/net/netfilter"); !reflect.DeepEqual(got, []string{"a", "c", "d", "e"}) {
		t.Errorf("Under = %v", got)
	}
	// A file is named with its .ko, whatever its compression.
	if got := tree.Under("kernel/lib/b.ko", "kernel/net/netfilter/c.ko"); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Errorf("Under(files) = %v", got)
	}
	if !tree.Has("builtin-one") || !tree.Has("builtin_one") || tree.Has("nope") {
		t.Errorf("Has: built-in not found, or a missing module found")
	}
	x, data, err := tree.Closure([]string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Modules) != 3 || len(data) != 3 || x.Modules["c"].Path != "kernel/net/netfilter/c.ko" || x.Modules["b"].Path != "kernel/lib/b.ko" {
		t.Fatalf("closure of a: %+v", x.Modules)
	}
	if _, err := ParseInfo(data["c"], "c"); err != nil {
		t.Errorf("decompressed c: %v", err)
	}
	order, err := x.LoadOrder("a")
	if err != nil || !reflect.DeepEqual(order, []string{"b", "c", "a"}) {
		t.Errorf("LoadOrder(a) = %v %v, want [b c a]", order, err)
	}
	for name, want := range map[string]string{"nft-chain-2-nat": "c", "nfnetlink-subsys-10": "c", "a": "a"} {
		if got, builtin, err := x.Resolve(name); got != want || builtin || err != nil {
			t.Errorf("Resolve(%q) = %q %v %v, want %q", name, got, builtin, err, want)
		}
	}
	if got, builtin, err := x.Resolve("builtin-one"); got != "builtin_one" || !builtin || err != nil {
		t.Errorf("Resolve(builtin-one) = %q %v %v", got, builtin, err)
	}
	if _, _, err := x.Resolve("nfnetlink-subsys-11"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Resolve(unknown) = %v, want ErrUnknown", err)
	}
	if _, _, err := tree.Closure([]string{"d"}); err == nil || !strings.Contains(err.Error(), "built for kernel 6.1.0-other, not 6.1.0-test") {
		t.Errorf("mismatched module: %v", err)
	}
	if _, _, err := tree.Closure([]string{"e"}); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing dependency: %v", err)
	}
}

func TestOpenTreeEmpty(t *testing.T) {
	if _, err := OpenTree(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no kernel modules") {
		t.Errorf("empty tree: %v", err)
	}
}

// xzCompress compresses b with xz(1), as distributions compress modules.
func xzCompress(t *testing.T, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		testenv.Skip(t, "needs xz (xz-utils) to make a compressed module")
	}
	cmd := exec.Command("xz", "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
