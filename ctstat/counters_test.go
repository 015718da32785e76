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
