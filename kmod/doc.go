// Package kmod reads Linux kernel modules and loads them: what a module file
// says about itself (its .modinfo section: name, dependencies, aliases,
// vermagic), an index of a kernel's modules built from those (the part of
// depmod's work a guest image needs), and, on Linux, modprobe's job —
// resolving a name or an alias the kernel asks for and loading the module
// after its dependencies.
//
// snatrace's VM lab builds an Index on the host from a distribution kernel's
// modules and ships it in the guest's initramfs, where the snatrace binary
// answers the kernel's request_module calls as /sbin/modprobe.
package kmod
