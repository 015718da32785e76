package fix

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/snatrace/snatrace/internal/jsondoc"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
)

// BackupVersion is the format version Backup files carry.
const BackupVersion = 1

// Backup is what a fix changed, written before the change so that Rollback
// can put exactly those rules back.
type Backup struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// NetNS is the namespace the rules live in ("" for the host's), as
	// given; NetNSInode is its nsfs inode, which names it however it is
	// given (0 in backups from before it was recorded).
	NetNS      string        `json:"netns,omitempty"`
	NetNSInode uint32        `json:"netns_inode,omitempty"`
	Entries    []BackupEntry `json:"entries"`
}

// BackupEntry is one changed rule: where it is and what it was. Its Handle
// is the nftables handle of the rule read back after the fix, 0 when
// unknown.
type BackupEntry struct {
	ruleset.Location
	Method Method `json:"method"`
	// Before is the rule's original text (the iptables-save line for
	// iptables rules), After the text the fix gave it.
	Before string `json:"before"`
	After  string `json:"after"`
	From   string `json:"from"`
	To     string `json:"to"`
	// OldFlags and NewFlags are the NAT flags word before and after, for
	// nftables rules (the netlink method).
	OldFlags uint32 `json:"old_flags"`
	NewFlags uint32 `json:"new_flags"`
	// Applied is set once the change is in the kernel.
	Applied bool `json:"applied"`
	// Sum fingerprints the fixed nftables rule as the verification read it
	// back (ruleSum): a rollback changes only a rule that still has it.
	Sum string `json:"sum,omitempty"`
}

// DefaultBackupName is the backup file an apply writes when none is given:
// snatrace-fix-backup-<UTC time>.json in the current directory.
func DefaultBackupName(now time.Time) string {
	return fmt.Sprintf("snatrace-fix-backup-%s.json", now.UTC().Format("20060102T150405Z"))
}

// ReadBackup parses and checks a backup file's content; name labels errors.
func ReadBackup(data []byte, name string) (*Backup, error) {
	var b Backup
	if err := jsondoc.Decode(data, &b); err != nil {
		return nil, fmt.Errorf("%s: not a snatrace fix backup: %w", name, err)
	}
	if b.Version != BackupVersion {
		return nil, fmt.Errorf("%s: backup version %d, want %d", name, b.Version, BackupVersion)
	}
	if err := printable(b.NetNS); err != nil {
		return nil, fmt.Errorf("%s: netns: %w: %w", name, ErrTampered, err)
	}
	for i := range b.Entries {
		if err := b.Entries[i].check(); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", name, i+1, err)
		}
	}
	return &b, nil
}

// check accepts only an entry that snatrace fix could have written: a valid
// location, no control character, and a change that is exactly "add
// fully-random" (so that a rollback can only take it away again). A failure
// wraps ErrTampered.
func (e *BackupEntry) check() error {
	err := func() error {
		if err := e.Location.Check(); err != nil {
			return err
		}
		if err := printable(e.Before, e.After, e.From, e.To); err != nil {
			return err
		}
		switch e.Method {
		case MethodNetlink:
			if e.Backend == natrule.IptablesLegacy {
				return errors.New("iptables-legacy rules are not changed over nftables netlink")
			}
			full := uint32(natmodel.ProtoRandomFully)
			if e.OldFlags&full != 0 || e.NewFlags != e.OldFlags|full {
				return fmt.Errorf("flags %#x -> %#x are not a change to fully-random", e.OldFlags, e.NewFlags)
			}
		case MethodRestore:
			return checkRestore(e.Location, e.Before, e.After)
		default:
			return fmt.Errorf("unknown method %q", e.Method)
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTampered, err)
	}
	return nil
}

// WriteFile writes b to path atomically (a temporary file renamed over it)
// and durably (fsynced): it must exist before the rules change.
func (b *Backup) WriteFile(path string) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the backup: %w", err)
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), ".snatrace-fix-*")
	if err != nil {
		return fmt.Errorf("writing the backup %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the backup %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the backup %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the backup %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing the backup %s: %w", path, err)
	}
	return nil
}

// LoadBackup reads and checks the backup file at path.
func LoadBackup(path string) (*Backup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the backup: %w", err)
	}
	return ReadBackup(data, path)
}

// merge adds entries to b, replacing an older entry for the same rule: the
// same position and the same original text. After a watch re-applies a fix
// to a rule its owner rewrote, rollback restores the owner's latest
// version; a different rule now at a fixed rule's position (one inserted
// above it) is added, and the fixed rule, which moved, keeps its entry
// (rollback finds nftables rules by handle, iptables rules by their line).
func (b *Backup) merge(entries []BackupEntry) {
	idx := map[string]int{}
	for i := range b.Entries {
		idx[ruleKey(b.Entries[i].Location, b.Entries[i].Before)] = i
	}
	for _, e := range entries {
		k := ruleKey(e.Location, e.Before)
		if i, ok := idx[k]; ok {
			b.Entries[i] = e
			continue
		}
		idx[k] = len(b.Entries)
		b.Entries = append(b.Entries, e)
	}
}

// ruleKey names one rule across the fixes that share a backup: its
// position and its original text.
func ruleKey(l ruleset.Location, before string) string { return l.Key() + "\x00" + before }

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
