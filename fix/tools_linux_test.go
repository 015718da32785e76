//go:build linux

package fix

import (
	"context"
	"errors"
	"os/exec"
	"testing"

	"github.com/snatrace/snatrace/ruleset"
)

// fakeRunner has the tools in have; --version prints version.
type fakeRunner struct {
	have    map[string]bool
	version string
}

func (r fakeRunner) Run(_ context.Context, _ string, name string, args ...string) (string, error) {
	if len(args) == 1 && args[0] == "--version" {
		return name + " " + r.version + "\n", nil
	}
	return "", errors.New("not in this fake")
}

func (r fakeRunner) LookPath(name string) (string, error) {
	if r.have[name] {
		return "/usr/sbin/" + name, nil
	}
	return "", exec.ErrNotFound
}

func TestTools(t *testing.T) {
	all := map[string]bool{"iptables-legacy-save": true, "iptables-legacy-restore": true, "iptables-nft-save": true, "iptables-nft-restore": true,
		"ip6tables-legacy-save": true, "ip6tables-legacy-restore": true, "iptables-save": true, "iptables-restore": true}
	old := map[string]bool{"iptables-save": true, "iptables-restore": true}
	tests := []struct {
		name                string
		have                map[string]bool
		version             string
		backend             ruleset.Backend
		fam                 ruleset.Family
		save, restore, miss string
	}{
		{"legacy", all, "v1.8.9 (legacy)", ruleset.IptablesLegacy, "ip", "iptables-legacy-save", "iptables-legacy-restore", ""},
		{"legacy ip6", all, "v1.8.9 (legacy)", ruleset.IptablesLegacy, "ip6", "ip6tables-legacy-save", "ip6tables-legacy-restore", ""},
		{"nft", all, "v1.8.9 (nf_tables)", ruleset.IptablesNft, "ip", "iptables-nft-save", "iptables-nft-restore", ""},
		// iptables 1.6: only the plain names, which are legacy.
		{"old iptables", old, "v1.6.1", ruleset.IptablesLegacy, "ip", "iptables-save", "iptables-restore", ""},
		// Plain names that are the nf_tables flavour cannot change legacy rules.
		{"plain is nft", old, "v1.8.9 (nf_tables)", ruleset.IptablesLegacy, "ip", "", "", "iptables-legacy-save"},
		{"no restore", map[string]bool{"iptables-legacy-save": true}, "", ruleset.IptablesLegacy, "ip", "", "", "iptables-legacy-restore"},
		{"no nft restore", map[string]bool{"iptables-nft-save": true, "iptables-restore": true}, "v1.8.9 (legacy)", ruleset.IptablesNft, "ip", "", "", "iptables-nft-restore"},
	}
	for _, tt := range tests {
		f := &Fixer{run: fakeRunner{have: tt.have, version: tt.version}}
		save, restore, err := f.tools(context.Background(), tt.backend, tt.fam)
		var mb *MissingBinaryError
		switch {
		case tt.miss != "":
			if !errors.As(err, &mb) || mb.Binary != tt.miss {
				t.Errorf("%s: error %v, want %s missing", tt.name, err, tt.miss)
			}
		case err != nil || save != tt.save || restore != tt.restore:
			t.Errorf("%s: %s %s %v, want %s %s", tt.name, save, restore, err, tt.save, tt.restore)
		}
	}
}

func TestCanHoldLock(t *testing.T) {
	have := map[string]bool{"iptables-legacy-save": true, "iptables-legacy-restore": true}
	for _, tt := range []struct {
		version string
		want    bool
	}{
		{"v1.8.9 (legacy)", true},
		{"v1.8.6 (legacy)", true},
		{"v1.8.5 (legacy)", false}, // does not honour XTABLES_LOCKFILE: would wait for our lock
		{"v1.6.1", false},
		{"unknown", false},
	} {
		f := &Fixer{run: fakeRunner{have: have, version: tt.version}}
		if got := f.canHoldLock(context.Background(), []ruleset.Family{"ip"}); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.version, got, tt.want)
		}
	}
	f := &Fixer{run: fakeRunner{have: have, version: "v1.8.9"}}
	if f.canHoldLock(context.Background(), nil) {
		t.Error("no legacy change: no lock")
	}
}
