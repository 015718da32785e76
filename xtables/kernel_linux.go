//go:build linux

package xtables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/internal/hugepage"
	"github.com/snatrace/snatrace/netns"
)

// The legacy iptables socket options (linux/netfilter_ipv4/ip_tables.h;
// ip6tables' have the same numbers and structures, on an IPv6 socket at
// level SOL_IPV6).
const (
	soSetReplace     = 64 // IPT_SO_SET_REPLACE
	soSetAddCounters = 65 // IPT_SO_SET_ADD_COUNTERS
	soGetInfo        = 64 // IPT_SO_GET_INFO
	soGetEntries     = 65 // IPT_SO_GET_ENTRIES

	tableNameLen     = 32 // XT_TABLE_MAXNAMELEN
	getInfoSize      = 84 // struct ipt_getinfo, ip6t_getinfo
	getEntriesHeader = 40 // struct ipt_get_entries, up to entrytable
	replaceHeader    = 96 // struct ipt_replace, up to entries
	countersHeader   = 40 // struct xt_counters_info, up to counters
	counterSize      = 16 // struct xt_counters
)

// ErrNoTable is returned by Get when the namespace has no such table.
var ErrNoTable = errors.New("no such iptables-legacy table")

// ErrChanged is returned by Replace when the table's entry count is no
// longer the snapshot's: another writer changed it since it was read.
var ErrChanged = errors.New("the table changed since it was read")

// ErrCountersLost is returned by Replace when the new table is in place
// but the old counters could not be added to it: the change is made, the
// rules' packet and byte counters restart from zero.
var ErrCountersLost = errors.New("the table was replaced, but its counters could not be carried over")

// HasTable reports whether ns (nil: the caller's namespace) has the named
// table of family f, from the names the kernel lists (what
// iptables-legacy-save reads): asking the socket for a table that does not
// exist creates it.
func HasTable(ns *netns.NS, f Family, name string) (bool, error) {
	names, err := Tables(ns, f)
	return slices.Contains(names, name), err
}

// Tables lists the tables of family f that ns (nil: the caller's
// namespace) has, as the kernel lists them; none when ip_tables
// (ip6_tables) is not loaded.
func Tables(ns *netns.NS, f Family) ([]string, error) {
	file := "/proc/thread-self/net/ip_tables_names"
	if f == IPv6 {
		file = "/proc/thread-self/net/ip6_tables_names"
	}
	var names []byte
	err := ns.Do(func() error {
		var err error
		names, err = os.ReadFile(file)
		if os.IsNotExist(err) {
			return nil // the module is not loaded: no table at all
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(names)), nil
}

// ReadTable returns a snapshot of ns's named table of family f, read
// through a socket of its own; ErrNoTable when the namespace has no such
// table (it is not asked for: asking would create it).
func ReadTable(ns *netns.NS, f Family, name string) (*Table, error) {
	return ReadTableInto(ns, f, name, nil)
}

// ReadTableInto is ReadTable reading into old's memory, as Socket.GetInto.
func ReadTableInto(ns *netns.NS, f Family, name string, old *Table) (*Table, error) {
	if ok, err := HasTable(ns, f, name); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w %s (%s)", ErrNoTable, name, f)
		}
		return nil, err
	}
	s, err := Open(ns, f)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.GetInto(name, old)
}

// Socket reaches one network namespace's iptables-legacy tables of one
// family through a raw socket of that family, as libiptc does. It needs
// CAP_NET_ADMIN (and CAP_NET_RAW for the socket) in that namespace.
type Socket struct {
	fd int
	f  Family
	ns *netns.NS // for the IPv4 socket an IPv6 table's set names are asked on
}

// ErrCompat is returned by Open in a 32-bit process: the kernel hands such
// a process the compat layout of the tables (4-byte aligned), which this
// package does not read.
var ErrCompat = errors.New("the iptables-legacy kernel interface needs a 64-bit process")

// Open opens a Socket for the tables of family f in ns (nil: the caller's
// namespace).
func Open(ns *netns.NS, f Family) (*Socket, error) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return nil, ErrCompat
	}
	fd, err := rawSocket(ns, f)
	if err != nil {
		return nil, fmt.Errorf("opening the %s socket: %w", f.Tool(), err)
	}
	return &Socket{fd: fd, f: f, ns: ns}, nil
}

// rawSocket opens a raw socket of family f in ns.
func rawSocket(ns *netns.NS, f Family) (int, error) {
	domain := unix.AF_INET
	if f == IPv6 {
		domain = unix.AF_INET6
	}
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	return fd, err
}

// Close closes the socket.
func (s *Socket) Close() error { return unix.Close(s.fd) }

// Get returns a snapshot of the named table. A table that changes between
// the kernel's two answers (size, then entries) is asked for again.
func (s *Socket) Get(name string) (*Table, error) {
	return s.GetInto(name, nil)
}

// GetInto is Get reading into the memory of old, a snapshot Get returned,
// when the table fits in it; nil old is Get. old is used up: neither it nor
// anything parsed from it may be used after, except by a caller that finds
// the new table laid out as old was (the same Info and Fingerprint), for
// which what it parsed from old describes the new one. A 60 MB table read
// into fresh memory spends much of its time in the kernel faulting in and
// zeroing pages (in a virtual machine, more than copying the table), which
// a read after a commit, such as a verification, need not pay again.
func (s *Socket) GetInto(name string, old *Table) (*Table, error) {
	for try := 0; ; try++ {
		t, err := s.get(name, old)
		if errors.Is(err, unix.EAGAIN) && try < 10 {
			continue
		}
		return t, err
	}
}

func (s *Socket) get(name string, old *Table) (*Table, error) {
	if len(name) >= tableNameLen {
		return nil, fmt.Errorf("table name %q too long", name)
	}
	info := make([]byte, getInfoSize)
	copy(info, name)
	if err := s.getsockopt(soGetInfo, info); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w %s", ErrNoTable, name)
		}
		return nil, fmt.Errorf("reading %s table %s (%s_SO_GET_INFO): %w", s.f.Tool(), name, s.f.layout().opt, err)
	}
	t := &Table{Info: Info{Name: name}, Family: s.f}
	ne := binary.NativeEndian
	t.ValidHooks = ne.Uint32(info[32:])
	for h := 0; h < 5; h++ {
		t.HookEntry[h] = ne.Uint32(info[36+4*h:])
		t.Underflow[h] = ne.Uint32(info[56+4*h:])
	}
	t.NumEntries, t.Size = ne.Uint32(info[76:]), ne.Uint32(info[80:])
	// Room for Replace's longer header in front, so that the snapshot can
	// be committed in its own memory (Commit).
	t.buf = reuse(old, replaceHeader+int(t.Size))
	buf := t.buf[replaceHeader-getEntriesHeader:]
	copy(buf, name)
	ne.PutUint32(buf[32:], t.Size)
	// Fresh memory is faulted in from its end while the kernel sums the
	// counters and copies into it from the front (reused memory is in).
	prefaulted := hugepage.Prefault(buf[getEntriesHeader:])
	err := s.getsockopt(soGetEntries, buf)
	prefaulted()
	if err != nil {
		return nil, fmt.Errorf("reading %s table %s (%s): %w", s.f.Tool(), name, s.f.GetEntries(), err)
	}
	t.Entries = buf[getEntriesHeader:]
	t.SetNames = s.setNames(s.f.layout().setIndexes(t.Entries))
	return t, nil
}

// The ipset socket options (linux/netfilter/ipset/ip_set.h), asked on the
// same raw socket.
const (
	soIPSet         = 83     // SO_IP_SET
	ipsetOpVersion  = 0x100  // IP_SET_OP_VERSION: struct ip_set_req_version {op, version}
	ipsetOpGetIndex = 0x0007 // IP_SET_OP_GET_BYINDEX: struct ip_set_req_get_set {op, version, name[32] | index}
	ipsetNameLen    = 32     // IPSET_MAXNAMELEN
)

// setNames asks the ipset module for the names of the sets with the given
// indexes, as libxt_set's get_set_byid does: on an IPv4 socket, the only
// family ipset answers on. Whatever it cannot learn (no ipset module, no
// permission, an index naming no set) is left out, and the rules naming it
// go to iptables-legacy-save instead.
func (s *Socket) setNames(indexes []uint16) map[uint16]string {
	if len(indexes) == 0 {
		return nil
	}
	v4 := s
	if s.f != IPv4 {
		fd, err := rawSocket(s.ns, IPv4)
		if err != nil {
			return nil
		}
		defer unix.Close(fd)
		v4 = &Socket{fd: fd, f: IPv4}
	}
	ne := binary.NativeEndian
	ver := make([]byte, 8)
	ne.PutUint32(ver, ipsetOpVersion)
	if v4.getsockopt(soIPSet, ver) != nil {
		return nil
	}
	names := make(map[uint16]string, len(indexes))
	req := make([]byte, 8+ipsetNameLen)
	for _, i := range indexes {
		clear(req)
		ne.PutUint32(req, ipsetOpGetIndex)
		copy(req[4:8], ver[4:8])
		ne.PutUint16(req[8:], i)
		if v4.getsockopt(soIPSet, req) == nil && req[8] != 0 {
			names[i] = cString(req[8:])
		}
	}
	return names
}

// Replace commits a copy of t's entry table, changed by edit, in place of
// the table (IPT_SO_SET_REPLACE), keeping t's hooks, then adds the counters
// the old table had to the new one, entry by entry, as libiptc does: edit
// must keep every entry's size and place. The kernel refuses the commit
// with ErrChanged if the table's entry count is no longer t's: someone
// changed it since t was read. An error from edit commits nothing; after
// ErrCountersLost the table is committed.
func (s *Socket) Replace(t *Table, edit func(entries []byte) error) error {
	repl := bigBuffer(replaceHeader + len(t.Entries))
	copy(repl[replaceHeader:], t.Entries)
	return s.commit(t, repl, edit)
}

// Commit is Replace for a snapshot s.Get or s.GetInto just returned,
// edited and committed in its own memory (no 60 MB copy); t is used up.
func (s *Socket) Commit(t *Table, edit func(entries []byte) error) error {
	if len(t.buf) != replaceHeader+len(t.Entries) {
		return errors.New("xtables: Commit of a table that Socket.Get did not return")
	}
	clear(t.buf[:replaceHeader])
	return s.commit(t, t.buf, edit)
}

// commit sends repl, whose entries are a copy of t's, after edit.
func (s *Socket) commit(t *Table, repl []byte, edit func(entries []byte) error) error {
	if t.Family != s.f {
		return fmt.Errorf("xtables: an %s table committed through an %s socket", t.Family, s.f)
	}
	entries := repl[replaceHeader:]
	if err := edit(entries); err != nil {
		return err
	}
	n := int(t.NumEntries)
	counters := make([]byte, n*counterSize)
	ne := binary.NativeEndian
	copy(repl, t.Name)
	ne.PutUint32(repl[32:], t.ValidHooks)
	ne.PutUint32(repl[36:], t.NumEntries)
	ne.PutUint32(repl[40:], uint32(len(entries)))
	for h := 0; h < 5; h++ {
		ne.PutUint32(repl[44+4*h:], t.HookEntry[h])
		ne.PutUint32(repl[64+4*h:], t.Underflow[h])
	}
	ne.PutUint32(repl[84:], uint32(n))
	ne.PutUint64(repl[88:], uint64(uintptr(unsafe.Pointer(unsafe.SliceData(counters)))))
	err := s.setsockopt(soSetReplace, repl)
	runtime.KeepAlive(counters) // the kernel wrote to it through an address stored as an integer
	if errors.Is(err, unix.EAGAIN) {
		err = fmt.Errorf("%w: %w", ErrChanged, err)
	}
	if err != nil {
		return fmt.Errorf("replacing %s table %s (%s_SO_SET_REPLACE): %w", s.f.Tool(), t.Name, s.f.layout().opt, err)
	}
	add := make([]byte, countersHeader+len(counters))
	copy(add, t.Name)
	ne.PutUint32(add[32:], uint32(n))
	copy(add[countersHeader:], counters)
	if err := s.setsockopt(soSetAddCounters, add); err != nil {
		return fmt.Errorf("%w: %s table %s (%s_SO_SET_ADD_COUNTERS): %w", ErrCountersLost, s.f.Tool(), t.Name, s.f.layout().opt, err)
	}
	return nil
}

// bigBuffer is a zeroed buffer of n bytes marked for transparent huge
// pages before anything touches it: a kube-proxy table is 60 MB, and in a
// virtual machine faulting it in 4 KiB pages costs more than the kernel's
// copy into it.
func bigBuffer(n int) []byte {
	b := make([]byte, n)
	hugepage.Slice(b)
	return b
}

// reuse is old's memory as a zeroed buffer of n bytes when it has room,
// else bigBuffer(n).
func reuse(old *Table, n int) []byte {
	if old == nil || cap(old.buf) < n {
		return bigBuffer(n)
	}
	b := old.buf[:n]
	clear(b)
	return b
}

// level is the socket options' level: SOL_IP, or SOL_IPV6 for ip6tables.
func (s *Socket) level() int {
	if s.f == IPv6 {
		return unix.SOL_IPV6
	}
	return unix.SOL_IP
}

func (s *Socket) getsockopt(opt int, buf []byte) error {
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), uintptr(s.level()), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func (s *Socket) setsockopt(opt int, buf []byte) error {
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(s.fd), uintptr(s.level()), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
