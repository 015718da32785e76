package natrule

import (
	"context"

	"github.com/snatrace/snatrace/tool"
)

// LegacyTools returns the save and restore tools that reach the
// iptables-legacy tables of fam on this host: the -legacy names
// (iptables 1.8+), or the plain iptables-save and iptables-restore when the
// -legacy ones are missing and the plain ones are the legacy flavour
// (iptables before 1.8, or a legacy-only build). Without either it returns
// the -legacy names, so that the caller's LookPath names what to install.
func LegacyTools(ctx context.Context, run tool.Runner, fam Family) (save, restore string) {
	save, restore, _ = Tools(IptablesLegacy, fam)
	if _, err := run.LookPath(save); err == nil {
		return save, restore
	}
	ps, pr := PlainTools(fam)
	if _, err := run.LookPath(ps); err != nil {
		return save, restore
	}
	if v, err := run.Run(ctx, tool.Command(ps, "--version")); err == nil && !IsNFTFlavour(string(v)) {
		return ps, pr
	}
	return save, restore
}

// LegacyToolNames are every binary LegacyTools may choose, for both
// families: the -legacy save and restore tools and the plain ones.
func LegacyToolNames() []string {
	var out []string
	for _, fam := range []Family{IPv4, IPv6} {
		save, restore, _ := Tools(IptablesLegacy, fam)
		ps, pr := PlainTools(fam)
		out = append(out, save, restore, ps, pr)
	}
	return out
}
