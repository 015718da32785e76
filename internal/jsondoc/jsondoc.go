// Package jsondoc decodes files that must hold exactly one JSON document
// (saved plans, backups): unknown fields and anything after the document,
// closing brackets included, are errors.
package jsondoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrTrailing is returned for data after the document.
var ErrTrailing = errors.New("trailing data after the document")

// Decode decodes data, which must be one JSON document with no field v
// does not have, into v.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// More reports false before a closing bracket: ask for the next token.
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailing
	}
	return nil
}
