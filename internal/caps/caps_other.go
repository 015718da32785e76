//go:build !linux

package caps

import "errors"

func effective() (uint64, error) { return 0, errors.New("capabilities need Linux") }
