//go:build linux

package fix

// backupFile is the backup an apply writes before it changes anything and
// updates as each change lands. A nil *backupFile (no backup asked for)
// does nothing.
type backupFile struct {
	path string
	b    *Backup
}

// writeBackup merges entries into the backup at path (a new one if there is
// none) and writes it durably; "" writes nothing.
func (f *Fixer) writeBackup(path string, entries []BackupEntry) (*backupFile, error) {
	if path == "" {
		return nil, nil
	}
	b := &Backup{Version: BackupVersion, Created: f.cfg.Now().UTC(), NetNS: f.nsName()}
	if old, err := LoadBackup(path); err == nil {
		b.Entries, b.Created = old.Entries, old.Created
	}
	b.merge(entries)
	if err := b.WriteFile(path); err != nil {
		return nil, err
	}
	return &backupFile{path: path, b: b}, nil
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

// recordHandles stores the handles the verify read back, by location key.
func (bf *backupFile) recordHandles(handles map[string]uint64) error {
	if bf == nil || len(handles) == 0 {
		return nil
	}
	for i := range bf.b.Entries {
		if h, ok := handles[bf.b.Entries[i].Key()]; ok {
			bf.b.Entries[i].Handle = h
		}
	}
	return bf.b.WriteFile(bf.path)
}
