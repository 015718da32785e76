//go:build linux

package nftnl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Batch wraps msgs in an nftables transaction that the kernel applies only
// while the ruleset generation is still gen (NFNL_BATCH_GENID), whole or not
// at all.
func Batch(gen uint32, msgs []netlink.Message) []netlink.Message {
	genAttr, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFNL_BATCH_GENID, Data: binary.BigEndian.AppendUint32(nil, gen)},
	})
	begin := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}, genAttr...),
	}
	end := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	}
	out := make([]netlink.Message, 0, len(msgs)+2)
	out = append(out, begin)
	out = append(out, msgs...)
	return append(out, end)
}

// SendBatch sends msgs as one transaction guarded by gen and waits for the
// kernel's answer. Only the last message asks for an ack, so a batch of 1e4
// rules does not overflow the socket with acks; the kernel reports every
// failure before that ack, and aborts the whole batch on one. A batch the
// kernel refused for its generation is ErrGeneration.
func (c *Conn) SendBatch(gen uint32, msgs []netlink.Message) error {
	return c.spoil(c.sendBatch(gen, msgs))
}

func (c *Conn) sendBatch(gen uint32, msgs []netlink.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs[:len(msgs)-1] {
		msgs[i].Header.Flags &^= netlink.Acknowledge
	}
	msgs[len(msgs)-1].Header.Flags |= netlink.Acknowledge
	b := Batch(gen, msgs)
	if err := c.sizeSendBuffer(b); err != nil {
		return err
	}
	if err := c.deadline(); err != nil {
		return err
	}
	sent, err := c.c.SendMessages(b)
	if err != nil {
		return fmt.Errorf("sending the nftables batch: %w", err)
	}
	lastSeq := sent[len(sent)-2].Header.Sequence
	for {
		replies, err := c.c.Receive()
		if err != nil {
			if errors.Is(err, unix.ERESTART) {
				return fmt.Errorf("nftables refused the batch: %w", ErrGeneration)
			}
			return fmt.Errorf("sending the nftables batch: %w", err)
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error && m.Header.Sequence == lastSeq {
				return nil
			}
		}
	}
}

// sizeSendBuffer makes the send buffer hold the whole batch: the kernel
// takes a batch in one message (nft does the same with SO_SNDBUFFORCE,
// which needs CAP_NET_ADMIN to go above wmem_max).
func (c *Conn) sizeSendBuffer(b []netlink.Message) error {
	size := 0
	for _, m := range b {
		size += 16 + (len(m.Data)+3)&^3
	}
	if size <= 128<<10 || c.test {
		return nil
	}
	rc, err := c.c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sizing the netlink send buffer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*size)
	}); err != nil {
		return fmt.Errorf("sizing the netlink send buffer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("sizing the netlink send buffer to %d bytes: %w", 2*size, serr)
	}
	return nil
}
