package fix

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupAcrossFixes is what a --watch with one backup file lives
// through: a rule fixed, its owner inserting another above it, that one
// fixed into the same backup. Rollback restores both. A file that is not a
// backup is never overwritten, and a backup is never rolled back, or added
// to, in another namespace.
func TestBackupAcrossFixes(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	a, other := newNS(t, "bka"), newNS(t, "bkb")
	chain := "table ip t {\n chain pr {\n  type nat hook postrouting priority srcnat;\n  oifname \"a0\" masquerade\n }\n}\n"
	sh(t, a, chain, "nft", "-f", "-")
	sh(t, other, chain, "nft", "-f", "-")
	fa := New(Config{NS: a, SkipLegacy: true})
	backup := filepath.Join(t.TempDir(), "b.json")
	if _, _, err := fa.ApplyFresh(ctx, backup, 1); err != nil {
		t.Fatal(err)
	}
	sh(t, a, "", "nft", "insert", "rule", "ip", "t", "pr", "oifname", "b0", "masquerade")
	if _, _, err := fa.ApplyFresh(ctx, backup, 1); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBackup(backup)
	if err != nil || len(b.Entries) != 2 {
		t.Fatalf("backup after two fixes: %v, %+v; want 2 entries", err, b)
	}

	// Another namespace with the same rule: neither rollback nor a fix
	// into this backup may act there.
	fo := New(Config{NS: other, SkipLegacy: true})
	if _, err := fo.Rollback(ctx, b); !errors.Is(err, ErrOtherNamespace) {
		t.Errorf("rollback in another namespace: %v, want ErrOtherNamespace", err)
	}
	if _, _, err := fo.ApplyFresh(ctx, backup, 1); !errors.Is(err, ErrOtherNamespace) {
		t.Errorf("a fix of another namespace into this backup: %v, want ErrOtherNamespace", err)
	}
	if out := sh(t, other, "", "nft", "list", "chain", "ip", "t", "pr"); strings.Contains(out, "fully-random") {
		t.Errorf("the refused fix changed the other namespace:\n%s", out)
	}

	res, err := fa.Rollback(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Restored) != 2 || len(res.Missing) != 0 {
		t.Errorf("rollback restored %d, missed %d; want 2 and 0", len(res.Restored), len(res.Missing))
	}
	if out := sh(t, a, "", "nft", "list", "chain", "ip", "t", "pr"); strings.Contains(out, "fully-random") {
		t.Errorf("after rollback (restored %+v) a rule is still fully-random:\n%s\nbackup %+v", res.Restored, out, b.Entries)
	}

	notes := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notes, []byte("important\n"), 0o644)
	if _, _, err := fa.ApplyFresh(ctx, notes, 1); err == nil || !strings.Contains(err.Error(), "left as it is") {
		t.Errorf("--backup on a file that is not a backup: %v", err)
	}
	if got, _ := os.ReadFile(notes); string(got) != "important\n" {
		t.Errorf("the file given as --backup was overwritten: %q", got)
	}
}
