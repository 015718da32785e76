package natmodel_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/snatrace/snatrace/natmodel"
)

// Two pods connect from the same source port to the same server at the same
// moment, on two CPUs: both SNAT choices happen before either confirm, so
// both keep the port and the second SYN is dropped at confirm.
func Example_race() {
	tb, _ := natmodel.NewTable(natmodel.Config{Era: natmodel.Era65, Rand: rand.New(rand.NewPCG(1, 2))})
	masq := natmodel.Masquerade(netip.MustParseAddr("192.0.2.1"), 0, 0, 0)
	server := netip.MustParseAddrPort("198.51.100.1:80")

	a, _ := tb.NewConn(natmodel.Tuple{Proto: natmodel.TCP, Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: server})
	b, _ := tb.NewConn(natmodel.Tuple{Proto: natmodel.TCP, Src: netip.MustParseAddrPort("10.0.0.2:40000"), Dst: server})
	ca, _ := tb.SNAT(a, &masq) // CPU 0
	cb, _ := tb.SNAT(b, &masq) // CPU 1, before CPU 0 confirms
	va, _ := tb.Confirm(a)
	vb, _ := tb.Confirm(b)
	fmt.Println(ca.Source, ca.Step, va)
	fmt.Println(cb.Source, cb.Step, vb)
	st := tb.Stats()
	fmt.Println("insert_failed", st.InsertFailed, "drop", st.Drop)

	// With fully-random both search from a random offset instead.
	fr := natmodel.Masquerade(netip.MustParseAddr("192.0.2.1"), natmodel.ProtoRandomFully, 0, 0)
	c, _ := tb.NewConn(natmodel.Tuple{Proto: natmodel.TCP, Src: netip.MustParseAddrPort("10.0.0.3:40000"), Dst: server})
	cc, _ := tb.SNAT(c, &fr)
	fmt.Println(cc.Step, cc.Source.Port() != 40000)
	// Output:
	// 192.0.2.1:40000 preserve accepted
	// 192.0.2.1:40000 preserve dropped
	// insert_failed 1 drop 1
	// search true
}
