package main

import (
	"strings"
	"testing"
)

func TestFixUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"fix", "--watch"}, "snatrace: --watch needs --apply (a watch changes rules)"},
		{[]string{"fix", "--interval", "1s"}, "snatrace: --interval applies to --watch only"},
		{[]string{"fix", "--apply", "--watch", "--interval", "0s"}, "snatrace: --interval 0s: must be positive"},
		{[]string{"fix", "--owner", "dockr"}, `snatrace: --owner: unknown owner "dockr" (want one of docker, netavark, libvirt, kube-proxy, flannel, calico, cilium, aws-vpc-cni, ip-masq-agent, weave, antrea, kube-router, k3s, cni, firewalld, unknown)`},
		{[]string{"fix", "--owner", ","}, "snatrace: --owner: empty list"},
		{[]string{"fix", "--exclude", "port=22"}, `snatrace: --exclude: "port=22": unknown key "port": want owner or chain`},
		{[]string{"fix", "--exclude", "owner"}, `snatrace: --exclude: "owner": want owner=NAME or chain=NAME`},
		{[]string{"fix", "--exclude", "owner=nobody"}, `snatrace: --exclude: "owner=nobody": unknown owner "nobody" (want one of docker, netavark, libvirt, kube-proxy, flannel, calico, cilium, aws-vpc-cni, ip-masq-agent, weave, antrea, kube-router, k3s, cni, firewalld, unknown)`},
		{[]string{"fix", "--chain", "A B"}, `snatrace: --chain "A B": want a chain name`},
		{[]string{"fix", "--plan", "p.json"}, "snatrace: --plan p.json: applying a saved plan needs --apply"},
		{[]string{"fix", "--apply", "--watch", "--plan", "p.json"}, "snatrace: --plan and --watch: a watch makes its own plans"},
		{[]string{"fix", "--rollback", "b.json", "--apply"}, "snatrace: --rollback restores a backup; it does not take --apply"},
		{[]string{"fix", "--rollback", "b.json", "--owner", "docker"}, "snatrace: --rollback restores a backup; it does not take --owner"},
		{[]string{"fix", "--backup", "b.json"}, "snatrace: --backup/--no-backup apply to --apply only"},
		{[]string{"fix", "--apply", "--backup", "b.json", "--no-backup"}, "snatrace: --backup and --no-backup: give one"},
		{[]string{"fix", "--apply", "--backup", ""}, "snatrace: --backup: empty file name (use --no-backup for none)"},
		{[]string{"fix", "--iptables-nft-via", "magic"}, `snatrace: --iptables-nft-via "magic": want netlink or iptables-restore`},
		{[]string{"fix", "--iptables-legacy-via", "magic"}, `snatrace: --iptables-legacy-via "magic": want kernel or iptables-restore`},
		{[]string{"fix", "--apply", "--tries", "0"}, "snatrace: --tries 0: must be at least 1"},
		{[]string{"fix", "--no-monitor"}, "snatrace: --no-monitor applies to --watch only"},
		{[]string{"fix", "extra"}, `snatrace: unknown command "extra" for "snatrace fix"`},
		{[]string{"fix", "--netns", "snt-no-such-namespace"}, "snatrace: --netns snt-no-such-namespace: opening network namespace snt-no-such-namespace: no such file or directory"},
		{[]string{"fix", "--rollback", "/nonexistent/backup.json"}, "snatrace: --rollback: reading the backup: open /nonexistent/backup.json: no such file or directory"},
	}
	for _, tt := range tests {
		stdout, stderr, code := runCLI(t, tt.args...)
		if code != exitUsage || strings.TrimSpace(stderr) != tt.want || stdout != "" {
			t.Errorf("snatrace %v: exit %d, stderr %q, stdout %q; want exit 2, stderr %q", tt.args, code, stderr, stdout, tt.want)
		}
	}
}
