// Package ctstat reads the kernel's conntrack statistics per CPU, from
// /proc/net/stat/nf_conntrack (by column name) or from ctnetlink
// (IPCTNL_MSG_CT_GET_STATS_CPU, by attribute).
//
// It exists because the SNAT race shows up only in these counters: a SYN that
// loses the race is counted in insert_failed and drop on the CPU that handled
// it. Readers that go by column position (prometheus/procfs, and so
// node_exporter) mislabel the columns renamed in 5.10 (searched -> clashres)
// and 5.15 (delete_list -> chainlength); ctstat reads the header instead.
//
// Counters are per network namespace. ProcPath names the file of the calling
// thread's namespace, and ReadNetlink takes a namespace file descriptor, so a
// caller that entered a namespace on a locked OS thread reads that namespace.
package ctstat
