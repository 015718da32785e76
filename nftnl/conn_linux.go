//go:build linux

package nftnl

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/kernel"
)

// Timeout bounds every request on a real socket: a dump of even a huge
// ruleset takes well under a second, and no job may hang on the kernel.
const Timeout = 30 * time.Second

// MaxTries bounds the reads Consistent makes before it gives up on a ruleset
// that keeps changing.
const MaxTries = 20

// ErrChanging is returned when the ruleset changed during every one of
// MaxTries reads.
var ErrChanging = errors.New("the nftables ruleset kept changing during the read")

// ErrGeneration is returned by SendBatch when the kernel refused the batch
// because the ruleset generation moved on since the batch was built
// (ERESTART): nothing of the batch was applied.
var ErrGeneration = errors.New("the nftables ruleset generation moved on")

// Conn is a NETLINK_NETFILTER socket for nftables requests. It is not safe
// for concurrent use.
type Conn struct {
	c    *netlink.Conn
	test bool
	// owner is the Conn of Shared whose socket a borrowed Conn uses (its
	// Close leaves the socket open); nil for a Conn of its own.
	owner *Conn
	// spoilt says a request on the socket ended without its whole
	// answer read, or with an error: a Shared dial then opens a socket of
	// its own rather than read what is left of that answer.
	spoilt bool
	// parts is the number of parts the last DumpEach read (for tests).
	parts int
}

// Dial opens a socket; on a real socket every request and its answer are
// bounded by Timeout.
func Dial(opts ...Option) (*Conn, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if sh := cfg.shared; sh != nil && !sh.spoilt {
		return &Conn{c: sh.c, test: sh.test, owner: sh}, nil
	}
	if cfg.test != nil {
		return &Conn{c: nltest.Dial(cfg.test), test: true}, nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.ns.Fd()})
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink socket in %s: %w", cfg.ns, err)
	}
	return &Conn{c: c}, nil
}

// deadline bounds the next request and its answer by Timeout.
func (c *Conn) deadline() error {
	if c.test {
		return nil
	}
	if err := c.c.SetDeadline(time.Now().Add(Timeout)); err != nil {
		return fmt.Errorf("setting a netlink deadline: %w", err)
	}
	return nil
}

// execute sends m and returns the answer, bounded by Timeout.
func (c *Conn) execute(m netlink.Message) ([]netlink.Message, error) {
	if err := c.deadline(); err != nil {
		return nil, c.spoil(err)
	}
	msgs, err := c.c.Execute(m)
	return msgs, c.spoil(err)
}

// spoil marks c's socket spoilt after err (see Conn.spoilt), and returns
// err. A batch refused for its generation is answered whole (one error),
// and spoils nothing: a watch's replan goes on over the same socket.
func (c *Conn) spoil(err error) error {
	if err != nil && !errors.Is(err, ErrGeneration) {
		sock := c
		if c.owner != nil {
			sock = c.owner
		}
		sock.spoilt = true
	}
	return err
}

// Test reports whether c answers from a test function, not a kernel.
func (c *Conn) Test() bool { return c.test }

// Close closes the socket, on a real one in the background, and returns
// at once. The kernel answers the close of a netfilter socket by waiting,
// holding the namespace's commit lock, until the objects of the last
// commit are freed after an RCU grace period (nft_rcv_nl_event calls
// nf_tables_trans_destroy_flush_work): about 16 ms on this 250 Hz VM, and
// no caller needs to wait for that. The socket, and the namespace it
// holds, are released within that time. The Close of a Conn of Shared
// leaves the socket open.
func (c *Conn) Close() error {
	if c.owner != nil {
		return nil
	}
	if c.test {
		return c.c.Close()
	}
	go c.c.Close()
	return nil
}

// Raw returns the underlying netlink connection.
func (c *Conn) Raw() *netlink.Conn { return c.c }

// Message builds an nftables request: NFNL_SUBSYS_NFTABLES type msgType, the
// nfgenmsg header for family (AF_UNSPEC: every family), then attrs.
func Message(msgType uint16, flags netlink.HeaderFlags, family byte, attrs []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		Data: append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
}

// Generation returns the ruleset generation id (NFT_MSG_GETGEN).
func (c *Conn) Generation() (uint32, error) {
	msgs, err := c.execute(Message(unix.NFT_MSG_GETGEN, 0, unix.AF_UNSPEC, nil))
	if err != nil {
		return 0, fmt.Errorf("reading nftables generation: %w", err)
	}
	return generationOf(msgs)
}

// generationOf decodes the answer to NFT_MSG_GETGEN.
func generationOf(msgs []netlink.Message) (uint32, error) {
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		var gen uint32
		found := false
		err := Walk(m.Data[4:], func(typ uint16, v []byte) error {
			if typ == unix.NFTA_GEN_ID && len(v) == 4 {
				gen, found = be32(v), true
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("decoding nftables generation: %w", err)
		}
		if found {
			return gen, nil
		}
	}
	return 0, errors.New("reading nftables generation: no NFTA_GEN_ID in the reply")
}

// Dump sends a dump request of msgType for family with attrs (a filter) and
// returns every reply, and whether the kernel flagged the dump interrupted
// (NLM_F_DUMP_INTR: a commit overlapped it). Large dumps are better read
// with DumpEach, which keeps no message.
func (c *Conn) Dump(msgType uint16, family byte, attrs []netlink.Attribute) ([]netlink.Message, bool, error) {
	var msgs []netlink.Message
	intr, err := c.DumpEach(msgType, family, attrs, func(m netlink.Message) error {
		m.Data = append([]byte(nil), m.Data...)
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, intr, err
	}
	return msgs, intr, nil
}

// Get sends a request of msgType for family with attrs and returns the
// replies.
func (c *Conn) Get(msgType uint16, family byte, attrs []netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("encoding a request: %w", err)
	}
	return c.execute(Message(msgType, 0, family, data))
}

// Consistent runs read until it reads one generation: no transaction was
// under way before or after read (Settle) and the generation is the same,
// and read saw no interrupted dump. It returns that generation, or
// ErrChanging after MaxTries reads. read must start afresh each time.
func (c *Conn) Consistent(read func() (interrupted bool, err error)) (uint32, error) {
	return c.ConsistentUnless(read, nil)
}

// ConsistentUnless is Consistent, except that a read overlapped by commits
// is also accepted when harmless says they could not have changed what it
// read (harmless sees the generations before and after the read); the
// generation returned is then the one after.
func (c *Conn) ConsistentUnless(read func() (interrupted bool, err error), harmless func(before, after uint32) bool) (uint32, error) {
	for attempt := 0; attempt < MaxTries; attempt++ {
		before, err := c.Generation()
		if err != nil {
			return 0, err
		}
		settled, err := c.Settle(before)
		if err != nil {
			return 0, err
		}
		if !settled {
			continue
		}
		intr, err := read()
		if err != nil {
			return 0, err
		}
		// A transaction under way at the end of read may have linked
		// chains that it has not committed yet.
		settled, err = c.Settle(before)
		if err != nil {
			return 0, err
		}
		if !intr && settled {
			return before, nil
		}
		after, err := c.Generation()
		if err != nil {
			return 0, err
		}
		if harmless != nil && harmless(before, after) {
			return after, nil
		}
	}
	return 0, fmt.Errorf("%w (%d reads)", ErrChanging, MaxTries)
}

// Settle waits until no nftables transaction is under way in c's namespace
// and reports whether the ruleset generation is still gen.
//
// Why a read needs it: a commit bumps the generation before it switches
// the ruleset to the new one and unlinks what it deleted, and a batch
// links the chains it adds (inactive) before its commit; a dump that
// resumes across either counts chains and rules differently from one
// part to the next, without the generation or NLM_F_DUMP_INTR telling
// (nf_tables_dump_chains skips an inactive chain without counting it, but
// counts every chain before the resume point). Settle passes the
// namespace's commit lock, which every transaction holds from its first
// message to the end of its commit: it sends an empty batch guarded by
// gen, which the kernel refuses (ERESTART) if the generation moved on and
// otherwise commits as nothing — no new generation, no event. The kernel
// handles a netlink request within the send, so a refusal is queued before
// the answer to the NFT_MSG_GETGEN sent next.
//
// On kernels before 5.4, whose commit of an empty batch may start a new
// generation, and on a test socket, Settle only compares the generation.
func (c *Conn) Settle(gen uint32) (bool, error) {
	if c.test || !emptyCommitIsNothing() {
		now, err := c.Generation()
		return now == gen, err
	}
	if err := c.deadline(); err != nil {
		return false, c.spoil(err)
	}
	if _, err := c.c.SendMessages(Batch(gen, nil)); err != nil {
		return false, c.spoil(fmt.Errorf("sending an empty nftables batch: %w", err))
	}
	if _, err := c.c.Send(Message(unix.NFT_MSG_GETGEN, 0, unix.AF_UNSPEC, nil)); err != nil {
		return false, c.spoil(fmt.Errorf("reading nftables generation: %w", err))
	}
	refused := false
	for {
		msgs, err := c.c.Receive()
		switch {
		case errors.Is(err, unix.ERESTART) && !refused:
			refused = true // the answer to GETGEN follows
			continue
		case err != nil:
			return false, c.spoil(fmt.Errorf("settling the nftables ruleset: %w", err))
		}
		now, err := generationOf(msgs)
		if err != nil {
			return false, c.spoil(err)
		}
		return !refused && now == gen, nil
	}
}

// emptyCommitIsNothing reports whether the running kernel commits an empty
// nftables batch without starting a generation (nf_tables_commit returns
// at once on an empty transaction list from 5.4 at the latest).
var emptyCommitIsNothing = sync.OnceValue(func() bool {
	r, err := kernel.Release()
	if err != nil {
		return false
	}
	v, err := kernel.ParseVersion(r)
	return err == nil && v.AtLeast(5, 4)
})
