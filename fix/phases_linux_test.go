//go:build linux

package fix

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TestPhases runs the four phases of an apply one at a time against a fake
// kernel: prepare changes nothing, the backup is written before the commit
// and marked applied after it, verify reads the rule back.
func TestPhases(t *testing.T) {
	ctx := context.Background()
	k := fakeKernel()
	f := fakeFixer(k)
	p, err := f.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tx, err := f.prepare(ctx, p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.unlock()
	if len(k.Batches()) != 0 || tx.nft == nil || len(tx.nft.msgs) != 1 || len(tx.entries) != 1 {
		t.Fatalf("prepare: %d batches sent, txn %+v: want nothing sent and one replacement ready", len(k.Batches()), tx)
	}
	e := tx.entries[0]
	if e.Handle != 4 || e.OldFlags != 0 || e.NewFlags != unix.NF_NAT_RANGE_PROTO_RANDOM_FULLY || e.Applied {
		t.Errorf("backup entry %+v", e)
	}

	path := filepath.Join(t.TempDir(), "b.json")
	bk, err := f.writeBackup(path, tx.entries)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := LoadBackup(path); err != nil || len(b.Entries) != 1 || b.Entries[0].Applied {
		t.Fatalf("backup before the commit: %+v, %v; want one entry not applied", b, err)
	}

	applied, err := f.commit(ctx, tx, bk)
	if err != nil || len(applied) != 1 || len(k.Batches()) != 1 {
		t.Fatalf("commit: %v, %d applied, %d batches", err, len(applied), len(k.Batches()))
	}
	if b, _ := LoadBackup(path); !b.Entries[0].Applied {
		t.Error("the backup does not say the change was applied")
	}

	// The fake kernel does not run batches: make the rule what the batch
	// asked for, then verify reads it back.
	if ok, _, err := f.verify(ctx, applied, nil); err != nil || ok {
		t.Fatalf("verify of an unchanged rule: %v, %v; want not verified", ok, err)
	}
	k.Rules[0].Exprs = append(append([]expr.Any(nil), plainMasq[:4]...), &expr.Masq{FullyRandom: true})
	ok, handles, err := f.verify(ctx, applied, nil)
	if err != nil || !ok || handles[ruleKey(applied[0].Location, applied[0].Before)].handle != 4 {
		t.Fatalf("verify: %v, handles %v, %v", ok, handles, err)
	}
}

// TestPrepareStale: prepare refuses a plan whose generation moved, unless
// the plan is fresh (made a moment ago by --apply or --watch) and the rule
// it replaces is still the planned one: it is then prepared at the current
// generation. A rule that is no longer at its position is stale either way.
func TestPrepareStale(t *testing.T) {
	ctx := context.Background()
	k := fakeKernel()
	f := fakeFixer(k)
	p, err := f.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k.Gen++ // another writer committed elsewhere
	if _, err := f.prepare(ctx, p, false); !errors.Is(err, ErrStale) {
		t.Errorf("prepare of a saved plan of another generation: %v, want ErrStale", err)
	}
	tx, err := f.prepare(ctx, p, true)
	if err != nil || tx.nft == nil || tx.nft.gen != k.Gen {
		t.Errorf("prepare of a fresh plan after an unrelated commit: %+v, %v; want it prepared at generation %d", tx, err, k.Gen)
	}
	p.Changes[0].Position = 2
	if _, err := f.prepare(ctx, p, true); !errors.Is(err, ErrStale) {
		t.Errorf("prepare of a rule not at its position: %v, want ErrStale", err)
	}
	if n := len(k.Batches()); n != 0 {
		t.Errorf("%d batches sent", n)
	}
}
