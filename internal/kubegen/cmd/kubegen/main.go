// Command kubegen writes a kube-proxy sized iptables-save dump to stdout:
//
//	go run ./internal/kubegen/cmd/kubegen -rules 100000 > kube100k.rules
//	go run ./internal/kubegen/cmd/kubegen -ipv6 -rules 100000 > kube100k6.rules
//	go run ./internal/kubegen/cmd/kubegen -nft -rules 10000 > kube10k.nft
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/snatrace/snatrace/internal/kubegen"
)

func main() {
	rules := flag.Int("rules", 100000, "approximate number of rules")
	endpoints := flag.Int("endpoints", 3, "endpoints per service")
	ipv6 := flag.Bool("ipv6", false, "write an ip6tables-save dump (IPv6 addresses) instead of iptables-save")
	nft := flag.Bool("nft", false, "write an nft ruleset (kube-proxy nftables mode) instead of iptables-save")
	maps := flag.Bool("maps", true, "with -nft: pick endpoints with anonymous verdict maps as kube-proxy does (slow to load at 100k rules: the kernel makes each anonymous set in O(sets))")
	flag.Parse()
	if *nft {
		if err := kubegen.WriteNft(os.Stdout, *rules, *maps); err != nil {
			fmt.Fprintln(os.Stderr, "kubegen:", err)
			os.Exit(1)
		}
		return
	}
	if *rules < 100 || *endpoints < 1 {
		fmt.Fprintln(os.Stderr, "kubegen: -rules must be at least 100 and -endpoints at least 1")
		os.Exit(2)
	}
	services := (*rules - 15) / (2 + 3**endpoints)
	write := kubegen.Write
	if *ipv6 {
		write = kubegen.Write6
	}
	if err := write(os.Stdout, services, *endpoints); err != nil {
		fmt.Fprintln(os.Stderr, "kubegen:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kubegen: %d services x %d endpoints = %d rules\n", services, *endpoints, kubegen.Rules(services, *endpoints))
}
