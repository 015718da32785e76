package vmlab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/snatrace/snatrace/initramfs"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/vmlab/guest"
)

// moduleDirs are the parts of a kernel's modules a lab guest carries (with
// their dependencies): netfilter, nftables, iptables and conntrack for both
// families, the bridge and veth.
var moduleDirs = []string{
	"kernel/net/netfilter", "kernel/net/ipv4/netfilter", "kernel/net/ipv6/netfilter",
	"kernel/net/bridge", "kernel/drivers/net/veth.ko",
}

// needed are the features the lab cannot run without, as module names: a
// kernel that has them neither built in nor as modules is refused before it
// boots.
var needed = []string{"nf_conntrack", "nf_nat", "nf_tables", "nft_chain_nat", "nft_masq", "nf_conntrack_netlink", "veth", "bridge"}

// neededBy are the extra features of the iptables backends.
var neededBy = map[natrule.Backend][]string{
	natrule.IptablesLegacy: {"x_tables", "ip_tables", "iptable_nat", "xt_MASQUERADE"},
	natrule.IptablesNFT:    {"x_tables", "nft_compat", "xt_MASQUERADE"},
}

// moduleOptions are the guest's modprobe.d. nf_conntrack sizes its table
// from the machine's memory (8192 entries in 1 GiB on 6.1): a lab's
// connections, held 10 s in CLOSE, would fill it and add "table full"
// drops that a node never sees. 65536 is a small node's.
var moduleOptions = map[string]string{"nf_conntrack": "hashsize=65536"}

// xtablesDirs are where iptables looks for its extensions (XTABLES_LIBDIR).
var xtablesDirs = []string{"/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib64/xtables", "/usr/lib/xtables", "/usr/libexec/xtables"}

// ImageOptions say what goes into a guest image.
type ImageOptions struct {
	// Binary is the snatrace binary run as /init; "" is this executable.
	Binary string
	// Backends are the lab's rule backends: their host tools are copied in.
	Backends []natrule.Backend
	// Guest is the command the guest runs.
	Guest guest.Config
}

// Image is a built initramfs.
type Image struct {
	Path    string
	Bytes   int64 // file contents, uncompressed
	Modules int
	Tools   []string // host tools copied in
	Took    time.Duration
}

// BuildImage writes the guest's initramfs for k into work.
func BuildImage(k *Kernel, work string, o ImageOptions) (*Image, error) {
	start := time.Now()
	if err := checkFeatures(k, o.Backends); err != nil {
		return nil, err
	}
	bin := o.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the snatrace binary: %w", err)
		}
		bin = exe
	}
	tools, err := hostTools(o.Backends)
	if err != nil {
		return nil, err
	}
	img := &Image{Path: filepath.Join(work, "initramfs.cpio"), Tools: tools}
	f, err := os.Create(img.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	a := initramfs.New(w)
	if err := fill(a, k, bin, tools, o.Guest, img); err != nil {
		return nil, fmt.Errorf("building the guest image: %w", err)
	}
	if err := a.Close(); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	img.Bytes, img.Took = a.Bytes(), time.Since(start)
	return img, f.Close()
}

func fill(a *initramfs.Archive, k *Kernel, bin string, tools []string, cfg guest.Config, img *Image) error {
	if err := copyBinary(a, bin); err != nil {
		return err
	}
	if err := a.Symlink("/sbin/modprobe", "/init"); err != nil {
		return err
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/etc"} {
		if err := a.Dir(d); err != nil {
			return err
		}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := a.File(guest.ConfigPath, 0o644, cfgJSON); err != nil {
		return err
	}
	for _, t := range tools {
		if err := a.Executable(t); err != nil {
			return err
		}
	}
	if len(tools) > 0 {
		if err := copyXtables(a); err != nil {
			return err
		}
	}
	for _, etc := range []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"} {
		if _, err := os.Stat(etc); err == nil {
			if err := a.Copy(etc, etc); err != nil {
				return err
			}
		}
	}
	n, err := addModules(a, k)
	img.Modules = n
	return err
}

// copyBinary copies snatrace to /init, with what it needs to run.
func copyBinary(a *initramfs.Archive, bin string) error {
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return err
	}
	interp, libs, err := initramfs.Needs(real)
	if err != nil {
		return err
	}
	if err := a.Copy(real, "/init"); err != nil {
		return err
	}
	for _, p := range append([]string{interp}, libs...) {
		if p != "" {
			if err := a.Copy(p, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// addModules writes the lab's modules, decompressed, and their index.
func addModules(a *initramfs.Archive, k *Kernel) (int, error) {
	if k.Modules == nil {
		return 0, nil
	}
	roots := k.Modules.Under(moduleDirs...)
	x, data, err := k.Modules.Closure(roots)
	if err != nil {
		return 0, err
	}
	x.Options = moduleOptions
	dir := path.Join(guest.ModulesDir, k.Release)
	names := make([]string, 0, len(x.Modules))
	for name := range x.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := a.File(path.Join(dir, x.Modules[name].Path), 0o644, data[name]); err != nil {
			return 0, err
		}
	}
	idx, err := json.Marshal(x)
	if err != nil {
		return 0, err
	}
	return len(names), a.File(path.Join(dir, guest.IndexName), 0o644, idx)
}

// checkFeatures refuses a kernel whose modules and built-ins lack what the
// lab needs. A kernel without a modules directory is left to the guest,
// which says what is missing.
func checkFeatures(k *Kernel, backends []natrule.Backend) error {
	if k.Modules == nil {
		return nil
	}
	want := append([]string(nil), needed...)
	for _, b := range backends {
		want = append(want, neededBy[b]...)
	}
	var missing []string
	for _, m := range want {
		if !k.Modules.Has(m) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return &MissingError{What: fmt.Sprintf("kernel %s has no %v (neither built in nor a module in %s)", k.Release, missing, k.Modules.Dir)}
	}
	return nil
}

// hostTools finds the host's nft and the iptables tools of the backends.
// nft is optional (only modes with a masquerade port range need it); an
// iptables backend's tools are not.
func hostTools(backends []natrule.Backend) ([]string, error) {
	var tools []string
	if p, err := exec.LookPath("nft"); err == nil {
		tools = append(tools, p)
	}
	for _, b := range backends {
		for _, fam := range []natrule.Family{natrule.IPv4, natrule.IPv6} {
			save, restore, ok := natrule.Tools(b, fam)
			if !ok {
				continue
			}
			for _, t := range []string{save, restore} {
				p, err := exec.LookPath(t)
				if err != nil {
					return nil, &MissingError{What: fmt.Sprintf("--backend %s: the guest gets the host's %s, which is not installed here (Debian: apt install iptables)", b.Flag(), t)}
				}
				tools = append(tools, p)
			}
		}
	}
	return tools, nil
}

// copyXtables copies iptables' extensions (dlopen()ed, so no binary names
// them) with their libraries.
func copyXtables(a *initramfs.Archive) error {
	for _, dir := range xtablesDirs {
		exts, _ := filepath.Glob(filepath.Join(dir, "*.so"))
		for _, ext := range exts {
			err := a.Executable(ext)
			if errors.Is(err, initramfs.ErrNotFound) {
				continue // an extension whose library is not installed: unusable on the host too
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// MissingError says what the host or the kernel lacks for a VM lab.
type MissingError struct{ What string }

func (e *MissingError) Error() string { return e.What }
