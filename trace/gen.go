package trace

// The eBPF object and its Go bindings are generated and committed, so building
// snatrace needs no clang. Regenerate after editing bpf/*.c or bpf/*.h:
//
//	go generate ./trace/
//
// .ci/bpf-check regenerates and fails when the committed files differ.
//go:generate go tool bpf2go -cc clang -strip llvm-strip -cflags "-O2 -g -Wall -Werror" -tags linux -type event -type dest_key -type tracer_config -go-package trace traceBPF bpf/trace.bpf.c
