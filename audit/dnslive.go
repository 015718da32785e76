package audit

import (
	"context"
	"fmt"

	"github.com/snatrace/snatrace/tool"
)

// dnsDumps are the dumps a live audit scans for the DNS path: every table
// (nat for the service, raw for NOTRACK), in each backend whose tool is
// installed.
var dnsDumps = []tool.Cmd{
	tool.Command("iptables-nft-save"),
	tool.Command("iptables-legacy-save"),
	tool.Command("nft", "list", "ruleset"),
}

// ScanDNSLive scans the dumps of every installed save tool, run through r
// (in the audited namespace), for the DNS path. A tool that is missing is
// skipped; one that fails is a warning. skipLegacy leaves iptables-legacy
// unread.
func ScanDNSLive(ctx context.Context, r tool.Runner, skipLegacy bool) (*DNSPath, []string) {
	p := &DNSPath{}
	var warnings []string
	for _, c := range dnsDumps {
		if skipLegacy && c.Name == "iptables-legacy-save" {
			continue
		}
		if _, err := r.LookPath(c.Name); err != nil {
			continue
		}
		out, err := r.Run(ctx, c)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("DNS path: %s: %v", c, err))
			continue
		}
		ScanDNS(p, c.String(), string(out))
	}
	if len(p.Scanned) == 0 {
		return nil, warnings
	}
	return p, warnings
}
