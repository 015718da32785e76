// Package caps checks the Linux capabilities a job needs before it starts,
// so that a job without privilege says which capability is missing instead of
// failing halfway with EPERM.
package caps

// Cap is one Linux capability.
type Cap struct {
	Bit  uint
	Name string // "CAP_NET_ADMIN"
}

func (c Cap) String() string { return c.Name }

// The capabilities snatrace's jobs use (capabilities(7)).
var (
	NetAdmin = Cap{12, "CAP_NET_ADMIN"}
	NetRaw   = Cap{13, "CAP_NET_RAW"}
	SysAdmin = Cap{21, "CAP_SYS_ADMIN"}
	Perfmon  = Cap{38, "CAP_PERFMON"}
	BPF      = Cap{39, "CAP_BPF"}
)

// Missing returns those of want that the calling thread does not have in its
// effective set, in the order given.
func Missing(want ...Cap) ([]Cap, error) {
	eff, err := effective()
	if err != nil {
		return nil, err
	}
	var out []Cap
	for _, c := range want {
		if c.Bit >= 64 || eff&(1<<c.Bit) == 0 {
			out = append(out, c)
		}
	}
	return out, nil
}

// Has reports whether the calling thread has c in its effective set.
func Has(c Cap) bool {
	m, err := Missing(c)
	return err == nil && len(m) == 0
}

// Names returns the names of cs.
func Names(cs []Cap) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
