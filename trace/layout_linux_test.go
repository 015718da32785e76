//go:build linux

package trace

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// TestRecordLayout checks the decoder's offsets against struct event as
// compiled into the eBPF object (through bpf2go's generated twin).
func TestRecordLayout(t *testing.T) {
	var e traceBPFEvent
	checks := []struct {
		name     string
		got, off uintptr
	}{
		{"size", unsafe.Sizeof(e), recordSize},
		{"ts_ns", unsafe.Offsetof(e.TsNs), offTs},
		{"ct_status", unsafe.Offsetof(e.CtStatus), offStatus},
		{"netns", unsafe.Offsetof(e.Netns), offNetNS},
		{"cpu", unsafe.Offsetof(e.Cpu), offCPU},
		{"reason", unsafe.Offsetof(e.Reason), offReason},
		{"kind", unsafe.Offsetof(e.Kind), offKind},
		{"source", unsafe.Offsetof(e.Source), offSource},
		{"family", unsafe.Offsetof(e.Family), offFamily},
		{"has_ct", unsafe.Offsetof(e.HasCt), offHasCT},
		{"orig_src", unsafe.Offsetof(e.OrigSrc), offOrigSrc},
		{"orig_dst", unsafe.Offsetof(e.OrigDst), offOrigDst},
		{"reply_src", unsafe.Offsetof(e.ReplySrc), offReplySrc},
		{"reply_dst", unsafe.Offsetof(e.ReplyDst), offReplyDst},
		{"orig_sport", unsafe.Offsetof(e.OrigSport), offOrigSport},
		{"orig_dport", unsafe.Offsetof(e.OrigDport), offOrigDport},
		{"reply_sport", unsafe.Offsetof(e.ReplySport), offReplySport},
		{"reply_dport", unsafe.Offsetof(e.ReplyDport), offReplyDport},
	}
	for _, c := range checks {
		if c.got != c.off {
			t.Errorf("struct event %s at %d, decoder reads %d", c.name, c.got, c.off)
		}
	}
}

func TestReasonNames(t *testing.T) {
	tests := []struct {
		name    string
		values  []btf.EnumValue
		want    uint32
		wantErr bool
	}{
		{
			name:   "6.18 numbering",
			values: []btf.EnumValue{{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 2}, {Name: "SKB_DROP_REASON_NETFILTER_DROP", Value: 11}},
			want:   11,
		},
		{
			name:   "another kernel's numbering",
			values: []btf.EnumValue{{Name: "SKB_DROP_REASON_NETFILTER_DROP", Value: 8}},
			want:   8,
		},
		{
			name:    "kernel without the reason",
			values:  []btf.EnumValue{{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 2}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, v, err := reasonNames(&btf.Enum{Name: "skb_drop_reason", Values: tt.values})
			if tt.wantErr {
				var me *MissingError
				if !errors.As(err, &me) || me.Need != NeedDropReason {
					t.Fatalf("reasonNames: %v, want a MissingError for %s", err, NeedDropReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("reasonNames: %v", err)
			}
			if v != tt.want || names[v] != "NETFILTER_DROP" {
				t.Errorf("NETFILTER_DROP = %d (%q), want %d", v, names[v], tt.want)
			}
		})
	}
}

// TestKernelDropReason reads the running kernel's enum by name.
func TestKernelDropReason(t *testing.T) {
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	names, v, err := dropReasons(kspec)
	if err != nil {
		t.Fatalf("dropReasons: %v", err)
	}
	if names[v] != "NETFILTER_DROP" {
		t.Errorf("value %d is named %q", v, names[v])
	}
}
