package nftnl

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// TypeMask strips the nested and byte-order flags off an attribute type.
const TypeMask = 0x3fff

// Walk calls fn for each netlink attribute in b, with its type without the
// nested and byte-order flags, without allocating. A malformed attribute is
// an error; fn's error stops the walk.
func Walk(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & TypeMask
		if l < 4 || l > len(b) {
			return errors.New("malformed netlink attribute")
		}
		if err := fn(typ, b[4:l]); err != nil {
			return err
		}
		l = (l + 3) &^ 3
		if l > len(b) {
			l = len(b)
		}
		b = b[l:]
	}
	return nil
}

// CString returns a NUL-terminated attribute as a string.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
