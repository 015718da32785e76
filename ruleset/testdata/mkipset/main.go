// mkipset creates hash:net ipsets in the current network namespace (test helper).
package main

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
)

func main() {
	for i := 1; i+1 < len(os.Args); i += 2 {
		if err := netlink.IpsetCreate(os.Args[i], os.Args[i+1], netlink.IpsetCreateOptions{Replace: true}); err != nil {
			fmt.Fprintln(os.Stderr, os.Args[i], err)
			os.Exit(1)
		}
	}
}
