package trace

import (
	"container/list"
	"errors"
	"io"
	"time"
)

// Bounds of the reply checker's per-namespace sockets (connCache).
const (
	// maxNamespaceConns is how many namespaces keep a ctnetlink socket open.
	maxNamespaceConns = 64
	// connIdle closes a namespace's socket unused for this long, and so
	// lets a deleted pod's namespace go.
	connIdle = 5 * time.Minute
	// openRetry is how long a namespace that could not be reached is not
	// tried again.
	openRetry = 30 * time.Second
)

// connCache keeps one value (a ctnetlink socket) per network namespace inode
// for at most max namespaces, least recently used first out; closes those
// unused for idle; and remembers a failed open for retry before trying that
// namespace again. It is not safe for concurrent use.
type connCache[T io.Closer] struct {
	max         int
	idle, retry time.Duration
	now         func() time.Time
	open        func(inode uint32) (T, error)

	byInode map[uint32]*list.Element // of *cacheEntry[T]
	lru     list.List                // front: most recently used
}

type cacheEntry[T io.Closer] struct {
	inode uint32
	v     T
	err   error     // the open failed
	used  time.Time // last get; for a failure, when it failed
}

func newConnCache[T io.Closer](open func(uint32) (T, error)) *connCache[T] {
	return &connCache[T]{max: maxNamespaceConns, idle: connIdle, retry: openRetry, now: time.Now, open: open,
		byInode: make(map[uint32]*list.Element)}
}

// get returns inode's value, opening it on first use, after a failure older
// than retry, or after it was closed for being idle or least recently used.
func (c *connCache[T]) get(inode uint32) (T, error) {
	now := c.now()
	c.expire(now)
	if el, ok := c.byInode[inode]; ok {
		e := el.Value.(*cacheEntry[T])
		if e.err == nil {
			e.used = now
			c.lru.MoveToFront(el)
			return e.v, nil
		}
		if now.Sub(e.used) < c.retry {
			return e.v, e.err
		}
		c.remove(el)
	}
	v, err := c.open(inode)
	for c.lru.Len() >= c.max {
		c.remove(c.lru.Back())
	}
	c.byInode[inode] = c.lru.PushFront(&cacheEntry[T]{inode: inode, v: v, err: err, used: now})
	return v, err
}

// expire closes the values unused for idle (failures are kept until retry
// passes, and then reopened by get).
func (c *connCache[T]) expire(now time.Time) {
	for el := c.lru.Back(); el != nil; {
		prev := el.Prev()
		if e := el.Value.(*cacheEntry[T]); e.err == nil && now.Sub(e.used) >= c.idle {
			c.remove(el)
		} else if e.err == nil {
			return // the rest were used more recently
		}
		el = prev
	}
}

func (c *connCache[T]) remove(el *list.Element) error {
	e := c.lru.Remove(el).(*cacheEntry[T])
	delete(c.byInode, e.inode)
	if e.err == nil {
		return e.v.Close()
	}
	return nil
}

// len returns how many namespaces are held, failures included.
func (c *connCache[T]) len() int { return c.lru.Len() }

// Close closes every value.
func (c *connCache[T]) Close() error {
	var errs []error
	for c.lru.Len() > 0 {
		errs = append(errs, c.remove(c.lru.Back()))
	}
	return errors.Join(errs...)
}
