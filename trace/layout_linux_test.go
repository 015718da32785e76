//go:build linux

package trace

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
	"github.com/snatrace/snatrace/internal/testenv"
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
		{"proto", unsafe.Offsetof(e.Proto), offProto},
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
		testenv.Skip(t, "no kernel BTF: %v", err)
	}
	names, v, err := dropReasons(kspec)
	if err != nil {
		t.Fatalf("dropReasons: %v", err)
	}
	if names[v] != "NETFILTER_DROP" {
		t.Errorf("value %d is named %q", v, names[v])
	}
}

// kernelBTF builds a BTF spec holding only the named tracepoint typedefs
// and, when values is not nil, enum skb_drop_reason.
func kernelBTF(t *testing.T, tracepoints []string, values []btf.EnumValue) *btf.Spec {
	t.Helper()
	var types []btf.Type
	for _, tp := range tracepoints {
		proto := &btf.FuncProto{Return: (*btf.Void)(nil)}
		types = append(types, &btf.Typedef{Name: "btf_trace_" + tp, Type: &btf.Pointer{Target: proto}})
	}
	if values != nil {
		types = append(types, &btf.Enum{Name: "skb_drop_reason", Size: 4, Values: values})
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestPreflight checks that a kernel lacking a tracepoint or the drop reason
// is named in the error.
func TestPreflight(t *testing.T) {
	nf := []btf.EnumValue{{Name: "SKB_DROP_REASON_NETFILTER_DROP", Value: 11}}
	both := []string{"kfree_skb", "tcp_retransmit_skb"}
	tests := []struct {
		name        string
		tracepoints []string
		values      []btf.EnumValue
		need        Requirement
		detail      string
	}{
		{"complete", both, nf, "", ""},
		{"no kfree_skb", []string{"tcp_retransmit_skb"}, nf, NeedTracepoint, "skb:kfree_skb (tp_btf)"},
		{"no tcp_retransmit_skb", []string{"kfree_skb"}, nf, NeedTracepoint, "tcp:tcp_retransmit_skb (tp_btf)"},
		{"no drop reasons", both, nil, NeedDropReason, "enum skb_drop_reason"},
		{"no NETFILTER_DROP", both, []btf.EnumValue{{Name: "SKB_DROP_REASON_NO_SOCKET", Value: 3}}, NeedDropReason, "SKB_DROP_REASON_NETFILTER_DROP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, v, err := preflight(kernelBTF(t, tt.tracepoints, tt.values))
			if tt.need == "" {
				if err != nil || v != 11 {
					t.Fatalf("preflight = %d, %v; want 11, nil", v, err)
				}
				return
			}
			var me *MissingError
			if !errors.As(err, &me) || me.Need != tt.need || me.Detail != tt.detail {
				t.Fatalf("preflight: %v; want a MissingError for %s %s", err, tt.need, tt.detail)
			}
		})
	}
}
