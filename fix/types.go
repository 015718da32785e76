package fix

import (
	"errors"
	"time"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/tool"
)

// Config says which namespace a Fixer works on and how.
type Config struct {
	// NS is the namespace whose rules are fixed; nil for the caller's own.
	NS *netns.NS
	// Options are the plan options (scope, iptables-nft method, kernel).
	Options Options
	// SkipLegacy leaves iptables-legacy alone (not read, not changed).
	SkipLegacy bool
	// LegacyText reads and changes iptables-legacy's nat tables (IPv4 and
	// IPv6) with the legacy save and restore tools only. By default it is read and
	// changed through the kernel interface (package xtables), with the
	// tools as the fallback for chains xtables cannot print.
	LegacyText bool
	// Runner runs the iptables tools; nil runs them inside NS. The
	// Fixer may call it from several goroutines at once.
	Runner tool.Runner
	// Nftables are extra options for the nftables sockets: a test dial.
	Nftables []nftnl.Option
	// HoldLock makes ApplyFresh take the xtables lock before it reads
	// (when iptables-legacy is read and its tools honour
	// XTABLES_LOCKFILE) and hold it through the apply, so that the legacy
	// tables are read once: at 100,000 rules a read of the table is a
	// quarter of the fix. A watcher leaves it off: releasing the lock wakes
	// its own lock watch.
	HoldLock bool
	// LockPath is the xtables lock iptables writers take; "" is
	// $XTABLES_LOCKFILE or /run/xtables.lock, as in iptables.
	LockPath string
	// Now is the clock for backup timestamps; nil is time.Now.
	Now func() time.Time
}

// ErrStale is returned when the ruleset changed since the plan was made:
// nothing was changed, make a new plan.
var ErrStale = errors.New("the ruleset changed since the plan was made")

// ErrTampered is returned for a plan or backup file that asks for anything
// other than what snatrace itself computes: nothing was changed.
var ErrTampered = errors.New("the file asks for a change snatrace would not make")

// ErrOtherNamespace is returned when a backup belongs to another network
// namespace than the one the command acts on: a rollback there would take
// fully-random off rules that merely look the same.
var ErrOtherNamespace = errors.New("the backup was made in another network namespace")

// Result is what Apply did.
type Result struct {
	Applied []Change `json:"applied"`
	// Backup is the file the original rules were written to ("" for none).
	Backup string `json:"backup,omitempty"`
	// Verified is true when a re-read found every changed rule fully-random
	// at its position.
	Verified bool `json:"verified"`
	// Replans counts plans that went stale before one applied (ApplyFresh).
	Replans int `json:"replans,omitempty"`
	// Error is set when the apply failed after Applied were changed.
	Error string `json:"error,omitempty"`
	// Warnings are what went wrong without undoing the change (counters
	// that could not be carried over).
	Warnings []string `json:"warnings,omitempty"`
}

// RollbackResult is what Rollback did.
type RollbackResult struct {
	Restored []BackupEntry `json:"restored"`
	// Missing are entries whose rule is no longer as the fix left it (its
	// owner rewrote or removed it); they are left alone.
	Missing []BackupEntry `json:"missing"`
}

// DefaultInterval is how often Watch re-reads the rules when no nftables
// event arrives (iptables-legacy changes send none).
const DefaultInterval = 2 * time.Second

// Event is one thing Watch did.
type Event struct {
	Time time.Time `json:"time"`
	// Trigger is what woke the watch: "start", "nftables" (a netlink
	// event), "xtables-lock" (an iptables writer closed the lock file) or
	// "interval".
	Trigger string `json:"trigger"`
	// Applied are the changes made; empty when the rules were already fixed.
	Applied []Change `json:"applied,omitempty"`
	// Replans counts stale plans before the one that applied.
	Replans int    `json:"replans,omitempty"`
	Err     string `json:"error,omitempty"`
	// Took is the time from the trigger to the fix in the kernel.
	Took time.Duration `json:"took_ns"`
}

// WatchOptions tune Watch.
type WatchOptions struct {
	// Interval between periodic re-reads; 0 is DefaultInterval.
	Interval time.Duration
	// Backup is the backup file every application merges into ("" none).
	Backup string
	// OnEvent is called for every round that changed something or failed.
	OnEvent func(Event)
	// NoMonitor disables the nftables netlink monitor (periodic re-reads only).
	NoMonitor bool
}

// MaxLoggedEvents is how many of a watch's events an EventLog keeps.
const MaxLoggedEvents = 1000

// EventLog is a watch's record for --json: totals over the whole watch and
// its last MaxLoggedEvents events. A watch runs for weeks; its memory must
// not grow with them.
type EventLog struct {
	Events []Event `json:"events"`
	// Dropped counts the oldest events not kept.
	Dropped int `json:"events_dropped"`
	// Changes counts the rules changed and Errors the failed rounds, over
	// every event, kept or not.
	Changes int `json:"changes"`
	Errors  int `json:"errors"`
}

// Add records e, dropping the oldest event when MaxLoggedEvents are kept.
func (l *EventLog) Add(e Event) {
	l.Changes += len(e.Applied)
	if e.Err != "" {
		l.Errors++
	}
	if len(l.Events) == MaxLoggedEvents {
		copy(l.Events, l.Events[1:])
		l.Events = l.Events[:MaxLoggedEvents-1]
		l.Dropped++
	}
	l.Events = append(l.Events, e)
}
