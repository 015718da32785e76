//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFixTamperedPlanCLI edits a saved plan the ways an attacker with write
// access to it would: a different rule after, an extra restore command on a
// new line, another chain, another table, a rule that is not NAT. Each
// apply must exit 2, say the file asks for a change snatrace would not make,
// and change nothing.
func TestFixTamperedPlanCLI(t *testing.T) {
	ns := fixNS(t, "tamper")
	inNS(t, ns, fixLegacyNat+"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", "iptables-legacy-restore", "-w")
	out, _, code := runCLI(t, "fix", "--netns", ns.Path(), "--json")
	if code != exitFindings {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	const before = `-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`
	const after = before + ` --random-fully`
	if !strings.Contains(out, `"after": "`+after+`"`) {
		t.Fatalf("the plan does not change %q:\n%s", before, out)
	}
	orig := saveAll(t, ns) + inNS(t, ns, "", "iptables-legacy-save", "-t", "filter")
	for _, tt := range []struct{ name, from, to string }{
		{"other after", `"after": "` + after + `"`, `"after": "-A POSTROUTING -j ACCEPT"`},
		{"smuggled line", `"after": "` + after + `"`, `"after": "` + after + `\n-A POSTROUTING -j DROP"`},
		{"smuggled before", `"before": "` + before + `"`, `"before": "` + before + `\nCOMMIT\n*filter\n-A INPUT -j DROP"`},
		{"other chain", `"chain": "POSTROUTING"`, `"chain": "INPUT"`},
		{"other table", `"table": "nat"`, `"table": "filter"`},
		{"not nat", before, `-A POSTROUTING -s 172.17.0.0/16 -j ACCEPT`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(out, tt.from, tt.to, -1)
			if doc == out {
				t.Fatalf("%q is not in the plan", tt.from)
			}
			plan := filepath.Join(t.TempDir(), "plan.json")
			os.WriteFile(plan, []byte(doc), 0o600)
			_, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--plan", plan, "--no-backup")
			if code != exitUsage || !strings.Contains(errs, "the file asks for a change snatrace would not make") || !strings.Contains(errs, "nothing was changed") {
				t.Errorf("tampered plan: exit %d, stderr %q", code, errs)
			}
			if got := saveAll(t, ns) + inNS(t, ns, "", "iptables-legacy-save", "-t", "filter"); stripVolatile(got) != stripVolatile(orig) {
				t.Fatalf("a tampered plan changed rules:\n%s", got)
			}
		})
	}
}

// TestFixPlanUnknownField hands --plan a saved plan with a field snatrace
// does not write, and one with a second document after it: both must be
// refused by name (exit 2), changing nothing, instead of being ignored.
func TestFixPlanUnknownField(t *testing.T) {
	ns := fixNS(t, "planfield")
	inNS(t, ns, fixLegacyNat, "iptables-legacy-restore", "-w")
	out, _, code := runCLI(t, "fix", "--netns", ns.Path(), "--json")
	if code != exitFindings {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	orig := saveAll(t, ns)
	for _, tt := range []struct{ name, doc, want string }{
		{"unknown field", strings.Replace(out, `"before": `, `"fully_random": false, "before": `, 1), `json: unknown field "fully_random"`},
		{"trailing document", out + out, "trailing data after the document"},
		{"trailing bracket", out + "}", "trailing data after the document"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.doc == out {
				t.Fatal("the edit did not apply")
			}
			plan := filepath.Join(t.TempDir(), "plan.json")
			os.WriteFile(plan, []byte(tt.doc), 0o600)
			_, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--plan", plan, "--no-backup")
			if code != exitUsage || !strings.Contains(errs, "not the output of snatrace fix --json: "+tt.want) {
				t.Errorf("exit %d, stderr %q", code, errs)
			}
			if got := saveAll(t, ns); stripVolatile(got) != stripVolatile(orig) {
				t.Fatalf("the plan was applied:\n%s", got)
			}
		})
	}
	// The untouched document is still accepted.
	plan := filepath.Join(t.TempDir(), "plan.json")
	os.WriteFile(plan, []byte(out), 0o600)
	if _, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--plan", plan, "--no-backup"); code != exitOK {
		t.Fatalf("the saved plan: exit %d, stderr %q", code, errs)
	}
}

// TestFixTamperedBackupCLI edits a real backup so that a rollback would
// write another rule: the rollback must exit 2 and change nothing.
func TestFixTamperedBackupCLI(t *testing.T) {
	ns := fixNS(t, "tamperb")
	inNS(t, ns, fixLegacyNat, "iptables-legacy-restore", "-w")
	backup := filepath.Join(t.TempDir(), "b.json")
	if out, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--backup", backup); code != exitOK {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	fixed := saveAll(t, ns)
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, from, to string }{
		{"other before", `"before": "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"`, `"before": "-A POSTROUTING -j ACCEPT"`},
		{"smuggled line", `"before": "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"`, `"before": "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n-A POSTROUTING -j DROP"`},
		{"other chain", `"chain": "POSTROUTING"`, `"chain": "PREROUTING"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(string(data), tt.from, tt.to, -1)
			if doc == string(data) {
				t.Fatalf("%q is not in the backup", tt.from)
			}
			bad := filepath.Join(t.TempDir(), "bad.json")
			os.WriteFile(bad, []byte(doc), 0o600)
			_, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--rollback", bad)
			if code != exitUsage || !strings.Contains(errs, "the file asks for a change snatrace would not make") {
				t.Errorf("tampered backup: exit %d, stderr %q", code, errs)
			}
			if got := saveAll(t, ns); stripVolatile(got) != stripVolatile(fixed) {
				t.Fatalf("a tampered backup changed rules:\n%s", got)
			}
		})
	}
}
