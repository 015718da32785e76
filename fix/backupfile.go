//go:build linux

package fix

import (
	"errors"
	"fmt"
	"io/fs"
)

// backupFile is the backup an apply writes before it changes anything and
// updates as each change lands. A nil *backupFile (no backup asked for)
// does nothing.
type backupFile struct {
	path string
	b    *Backup
}

// writeBackup merges entries into the backup at path (a new one if there is
// none) and writes it durably; "" writes nothing. A file at path that is not
// a backup of this namespace is refused, never overwritten.
func (f *Fixer) writeBackup(path string, entries []BackupEntry) (*backupFile, error) {
	if path == "" {
		return nil, nil
	}
	ino, err := f.cfg.NS.Inode()
	if err != nil {
		return nil, err
	}
	b := &Backup{Version: BackupVersion, Created: f.cfg.Now().UTC(), NetNS: f.nsName(), NetNSInode: ino}
	switch old, err := LoadBackup(path); {
	case err == nil:
		if err := b.sameNamespace(old); err != nil {
			return nil, fmt.Errorf("adding to the backup %s: %w", path, err)
		}
		b.Entries, b.Created = old.Entries, old.Created
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("the backup file exists and is not one snatrace can add to, so it is left as it is (give another --backup path): %w", err)
	}
	b.merge(entries)
	if err := b.WriteFile(path); err != nil {
		return nil, err
	}
	return &backupFile{path: path, b: b}, nil
}

// sameNamespace checks that old, a backup read from a file, was made in the
// namespace b describes (by inode when both know it, else by name).
func (b *Backup) sameNamespace(old *Backup) error {
	if old.NetNSInode != 0 && b.NetNSInode != 0 {
		if old.NetNSInode == b.NetNSInode {
			return nil
		}
	} else if old.NetNS == b.NetNS {
		return nil
	}
	return fmt.Errorf("%w: %s (net:[%d]), not %s (net:[%d]); give --netns for the backup's namespace", ErrOtherNamespace, nsLabel(old.NetNS), old.NetNSInode, nsLabel(b.NetNS), b.NetNSInode)
}

func nsLabel(name string) string {
	if name == "" {
		return "the host's"
	}
	return name
}

func (f *Fixer) nsName() string {
	if f.cfg.NS == nil {
		return ""
	}
	return f.cfg.NS.String()
}

// markApplied marks the entries pred selects as in the kernel.
func (bf *backupFile) markApplied(pred func(*BackupEntry) bool) error {
	if bf == nil {
		return nil
	}
	for i := range bf.b.Entries {
		if pred(&bf.b.Entries[i]) {
			bf.b.Entries[i].Applied = true
		}
	}
	return bf.b.WriteFile(bf.path)
}

// recordFixed stores what the verification read back of each fixed
// nftables rule, by ruleKey: its handle (a replacement may take a new one)
// and its fingerprint.
func (bf *backupFile) recordFixed(fixed map[string]fixedRule) error {
	if bf == nil || len(fixed) == 0 {
		return nil
	}
	for i := range bf.b.Entries {
		if f, ok := fixed[ruleKey(bf.b.Entries[i].Location, bf.b.Entries[i].Before)]; ok {
			bf.b.Entries[i].Handle, bf.b.Entries[i].Sum = f.handle, f.sum
		}
	}
	return bf.b.WriteFile(bf.path)
}

// fixedRule is a fixed nftables rule as the verification read it back.
type fixedRule struct {
	handle uint64
	sum    string
}
