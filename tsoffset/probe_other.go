//go:build !linux

package tsoffset

import (
	"context"
	"errors"
)

// ProbePorts are the source ports Probe connects from.
var ProbePorts = []uint16{40001, 40002, 40003, 40004}

// Probe needs Linux network namespaces.
func Probe(ctx context.Context) (Detection, error) {
	return Detection{Kind: Unknown}, errors.New("probing timestamp offsets needs Linux")
}
