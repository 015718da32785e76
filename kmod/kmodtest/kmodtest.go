// Package kmodtest makes kernel module files for tests.
package kmodtest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strings"
	"testing"
)

// Module returns a minimal ELF64 relocatable object whose .modinfo
// section holds the given key=value entries, as a kernel module's does.
func Module(t testing.TB, entries ...string) []byte {
	t.Helper()
	shstr := []byte("\x00.shstrtab\x00.modinfo\x00")
	info := []byte(strings.Join(entries, "\x00") + "\x00")
	const ehsize, shsize = 64, 64
	shoff := uint64(ehsize + len(shstr) + len(info))
	var b bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: shoff, Ehsize: ehsize, Shentsize: shsize, Shnum: 3, Shstrndx: 1,
	}
	copy(hdr.Ident[:], "\x7fELF\x02\x01\x01")
	secs := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_STRTAB), Off: ehsize, Size: uint64(len(shstr)), Addralign: 1},
		{Name: 11, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: ehsize + uint64(len(shstr)), Size: uint64(len(info)), Addralign: 1},
	}
	for _, v := range []any{hdr, shstr, info, secs} {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}
