package trace

import (
	"errors"
	"testing"
	"time"
)

type fakeConn struct {
	inode  uint32
	closed *int
}

func (f *fakeConn) Close() error { *f.closed++; return nil }

type fakeOpener struct {
	opens, closed int
	fail          map[uint32]bool
}

func (o *fakeOpener) open(inode uint32) (*fakeConn, error) {
	o.opens++
	if o.fail[inode] {
		return nil, errors.New("unreachable")
	}
	return &fakeConn{inode: inode, closed: &o.closed}, nil
}

func newFakeCache(o *fakeOpener, clock *time.Time) *connCache[*fakeConn] {
	c := newConnCache(o.open)
	c.max, c.now = 4, func() time.Time { return *clock }
	return c
}

// Pod churn: a namespace per drop never holds more than max sockets; the
// least recently used go first and are closed.
func TestConnCacheBounded(t *testing.T) {
	clock := time.Unix(1000, 0)
	o := &fakeOpener{}
	c := newFakeCache(o, &clock)
	for inode := uint32(1); inode <= 100; inode++ {
		if _, err := c.get(inode); err != nil {
			t.Fatal(err)
		}
		if inode%10 == 0 {
			c.get(1) // keep namespace 1 in use
		}
		clock = clock.Add(time.Millisecond)
	}
	if c.len() != 4 || o.opens-o.closed != 4 {
		t.Fatalf("%d held, %d open (%d opened, %d closed); want 4 and 4", c.len(), o.opens-o.closed, o.opens, o.closed)
	}
	before := o.opens
	if v, _ := c.get(1); v == nil || v.inode != 1 || o.opens != before {
		t.Errorf("namespace 1, used every 10 drops, was evicted (opens %d → %d)", before, o.opens)
	}
	if err := c.Close(); err != nil || o.closed != o.opens || c.len() != 0 {
		t.Errorf("Close: %v; %d opened, %d closed, %d held", err, o.opens, o.closed, c.len())
	}
}

// A socket unused for idle is closed (its namespace released) and reopened
// on the next drop there.
func TestConnCacheIdle(t *testing.T) {
	clock := time.Unix(1000, 0)
	o := &fakeOpener{}
	c := newFakeCache(o, &clock)
	c.get(1)
	c.get(2)
	clock = clock.Add(connIdle - time.Second)
	c.get(2)
	clock = clock.Add(2 * time.Second) // 1 idle for connIdle+1s, 2 for 2s
	c.get(3)
	if o.closed != 1 || c.len() != 2 {
		t.Fatalf("after namespace 1 idled: %d closed, %d held; want 1 and 2", o.closed, c.len())
	}
	c.get(1)
	if o.opens != 4 {
		t.Errorf("namespace 1 after idling: %d opens, want 4 (reopened)", o.opens)
	}
}

// An unreachable namespace is not retried at every drop, but is after retry.
func TestConnCacheRetry(t *testing.T) {
	clock := time.Unix(1000, 0)
	o := &fakeOpener{fail: map[uint32]bool{7: true}}
	c := newFakeCache(o, &clock)
	for range 50 {
		if _, err := c.get(7); err == nil {
			t.Fatal("no error from an unreachable namespace")
		}
	}
	if o.opens != 1 {
		t.Fatalf("%d opens within the retry time, want 1", o.opens)
	}
	clock = clock.Add(openRetry)
	delete(o.fail, 7)
	if v, err := c.get(7); err != nil || v.inode != 7 || o.opens != 2 {
		t.Errorf("after retry: %v %v, %d opens; want the socket and 2 opens", v, err, o.opens)
	}
}
