package trace

import (
	"errors"
	"fmt"
)

// ErrMissing matches (errors.Is) every *MissingError: the tracer cannot run
// on this host as it is. The CLI turns it into exit code 2.
var ErrMissing = errors.New("missing kernel feature or privilege")

// ErrUnsupported is returned by Start on operating systems other than Linux.
var ErrUnsupported = fmt.Errorf("eBPF tracing needs Linux: %w", ErrMissing)

// Requirement names something the tracer needs from the host.
type Requirement string

// The requirements Start checks, in order, before loading anything.
const (
	// NeedBTF is the kernel's own type information, /sys/kernel/btf/vmlinux
	// (CONFIG_DEBUG_INFO_BTF=y).
	NeedBTF Requirement = "kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)"
	// NeedCapBPF is the capability to load eBPF programs.
	NeedCapBPF Requirement = "CAP_BPF"
	// NeedCapPerfmon is the capability to attach tracing programs.
	NeedCapPerfmon Requirement = "CAP_PERFMON"
	// NeedTracepoint is a BTF-enabled tracepoint (tp_btf) the tracer attaches to.
	NeedTracepoint Requirement = "tracepoint"
	// NeedFexit is a BPF trampoline (fexit) on __nf_conntrack_confirm,
	// required by ModeFexit only.
	NeedFexit Requirement = "fexit (BPF trampoline) on __nf_conntrack_confirm"
	// NeedDropReason is a value of the kernel's enum skb_drop_reason.
	NeedDropReason Requirement = "skb drop reason"
)

// MissingError reports a requirement the host does not meet.
type MissingError struct {
	Need   Requirement
	Detail string // which tracepoint or reason, or how to get it
	Err    error  // underlying error, if any
}

func (e *MissingError) Error() string {
	msg := "trace needs " + string(e.Need)
	if e.Detail != "" {
		msg += " " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *MissingError) Unwrap() error { return e.Err }

// Is reports whether target is ErrMissing.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }
