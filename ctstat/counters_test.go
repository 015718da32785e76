package ctstat

import (
	"reflect"
	"testing"
)

func TestCountersSubAdd(t *testing.T) {
	a := Counters{Found: 10, InsertFailed: 5, Drop: 5, ClashResolve: 1, ChainTooLong: 9}
	b := Counters{Found: 4, InsertFailed: 7, Drop: 5, ChainTooLong: 2}
	if got, want := a.Sub(b), (Counters{Found: 6, ClashResolve: 1, ChainTooLong: 7}); got != want {
		t.Errorf("Sub = %+v, want %+v (InsertFailed saturates at 0)", got, want)
	}
	if got, want := a.Add(b), (Counters{Found: 14, InsertFailed: 12, Drop: 10, ClashResolve: 1, ChainTooLong: 11}); got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
	// Every field takes part: set all to distinct values through reflection.
	var all Counters
	v := reflect.ValueOf(&all).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(i + 1))
	}
	if got := all.Add(all).Sub(all); got != all {
		t.Errorf("Add then Sub lost a field: %+v", got)
	}
	if got := all.Sub(all); got != (Counters{}) {
		t.Errorf("x-x = %+v", got)
	}
}

func TestDelta(t *testing.T) {
	before := Snapshot{Source: "proc", Entries: 3, CPUs: []CPU{
		{CPU: 0, Counters: Counters{InsertFailed: 2, Drop: 2}},
		{CPU: 1, Counters: Counters{Found: 5}},
		{CPU: 2, Counters: Counters{Found: 1}}, // gone after
	}}
	after := Snapshot{Source: "netlink", Entries: 9, CPUs: []CPU{
		{CPU: 1, Counters: Counters{Found: 8, InsertFailed: 1}},
		{CPU: 0, Counters: Counters{InsertFailed: 5, Drop: 6}},
		{CPU: 3, Counters: Counters{Drop: 4}}, // new
	}}
	want := Snapshot{Source: "netlink", Entries: 9, CPUs: []CPU{
		{CPU: 1, Counters: Counters{Found: 3, InsertFailed: 1}},
		{CPU: 0, Counters: Counters{InsertFailed: 3, Drop: 4}},
		{CPU: 3, Counters: Counters{Drop: 4}},
	}}
	got := Delta(before, after)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Delta\n got %+v\nwant %+v", got, want)
	}
	if tot := got.Total(); tot != (Counters{Found: 3, InsertFailed: 4, Drop: 8}) {
		t.Errorf("Total = %+v", tot)
	}
}

// TestSubWraps: a per-CPU counter that wrapped past 2^32 between readings
// gives the real delta, not 0.
func TestSubWraps(t *testing.T) {
	before := Counters{InsertFailed: 0xfffffff0, Drop: 0xffffffff, Found: 5}
	after := Counters{InsertFailed: 0x10, Drop: 3, Found: 9}
	if got, want := after.Sub(before), (Counters{InsertFailed: 0x20, Drop: 4, Found: 4}); got != want {
		t.Errorf("Sub across a wrap = %+v, want %+v", got, want)
	}
	d := Delta(Snapshot{CPUs: []CPU{{CPU: 1, Counters: before}}}, Snapshot{CPUs: []CPU{{CPU: 1, Counters: after}}})
	if d.Total().InsertFailed != 0x20 {
		t.Errorf("Delta across a wrap: insert_failed %d, want 32", d.Total().InsertFailed)
	}
	// Sums over CPUs are not 32-bit: one that went down gives 0.
	if got := (Counters{Drop: 1 << 33}).Sub(Counters{Drop: 1<<33 + 1}); got.Drop != 0 {
		t.Errorf("a 64-bit sum that went down gave %d", got.Drop)
	}
}
