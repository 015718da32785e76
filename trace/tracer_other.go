//go:build !linux

package trace

import (
	"context"
	"net/netip"
)

// Tracer is unavailable on this operating system.
type Tracer struct{}

// Start returns ErrUnsupported: eBPF tracing needs Linux.
func Start(ctx context.Context, opts Options) (*Tracer, error) { return nil, ErrUnsupported }

// Events returns a closed channel.
func (t *Tracer) Events() <-chan Event {
	ch := make(chan Event)
	close(ch)
	return ch
}

// Retransmits returns nil.
func (t *Tracer) Retransmits() (map[netip.AddrPort]uint64, error) { return nil, ErrUnsupported }

// Stats returns zero counters.
func (t *Tracer) Stats() (Stats, error) { return Stats{}, ErrUnsupported }

// Mode returns ModeAuto.
func (t *Tracer) Mode() Mode { return ModeAuto }

// PAWS reports false: there is no tracer.
func (t *Tracer) PAWS() bool { return false }

// Fallback returns nil.
func (t *Tracer) Fallback() error { return nil }

// Close does nothing.
func (t *Tracer) Close() error { return nil }
