// Package vmlab runs snatrace's lab on another kernel: it takes a kernel
// image or a distribution kernel package, builds an initramfs holding a
// snatrace binary, that kernel's netfilter, nftables, iptables, conntrack,
// veth and bridge modules and the host's nft and iptables tools, boots it
// under QEMU (KVM when /dev/kvm is usable, multi-threaded TCG otherwise),
// runs the lab inside and returns its report with a VM block.
//
// Nothing on the host changes: the guest has no network device and no disk,
// the work directory is removed, and the QEMU process is killed on every exit
// path. Inside the guest, snatrace is /init (package guest) and answers the
// kernel's module requests as /sbin/modprobe, so modules load on demand as on
// a distribution system.
package vmlab
