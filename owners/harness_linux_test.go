//go:build linux

package owners

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/buildtest"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	buildtest.Cleanup()
	os.Exit(code)
}

// node is a throwaway network namespace that a daemon writes its rules in.
type node struct {
	t   *testing.T
	ns  *netns.NS
	bin string
	dir string // a short private directory (unix socket paths are limited)
}

func newNode(t *testing.T, tag string, binaries ...string) *node {
	t.Helper()
	testenv.NeedRoot(t, "starts daemons in a network namespace")
	for _, b := range binaries {
		if _, err := exec.LookPath(b); err != nil {
			testenv.Skip(t, "needs %s (.ci/run installs it)", b)
		}
	}
	dir, err := os.MkdirTemp("", "snt-"+tag+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &node{t: t, ns: netnstest.New(t, tag), bin: buildtest.Snatrace(t), dir: dir}
}

// run runs a command in the namespace and returns its output.
func (n *node) run(name string, args ...string) string {
	n.t.Helper()
	return netnstest.Run(n.t, n.ns, "", name, args...)
}

// start starts a daemon from a thread inside the namespace (its network
// namespace only: `ip netns exec` would remount /sys), logging to a file.
// Cleanup stops it with SIGTERM, then SIGKILL after 20 s.
func (n *node) start(name string, args ...string) *exec.Cmd {
	n.t.Helper()
	return n.startEnv(nil, name, args...)
}

// startEnv is start with extra environment settings.
func (n *node) startEnv(env []string, name string, args ...string) *exec.Cmd {
	n.t.Helper()
	log, err := os.Create(filepath.Join(n.dir, filepath.Base(name)+".log"))
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := n.ns.Do(cmd.Start); err != nil {
		n.t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(done) }()
	n.t.Cleanup(func() { stop(cmd, done) })
	return cmd
}

func stop(cmd *exec.Cmd, done chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// logOf returns the daemon's log.
func (n *node) logOf(name string) string {
	b, _ := os.ReadFile(filepath.Join(n.dir, filepath.Base(name)+".log"))
	return string(b)
}

// snatrace runs the snatrace command against the namespace.
func (n *node) snatrace(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(n.bin, append(args, "--netns", n.ns.Path())...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatalf("snatrace %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// auditedRule is what the tests read of audit's JSON.
type auditedRule struct {
	Backend       string `json:"backend"`
	Table         string `json:"table"`
	Chain         string `json:"chain"`
	Rule          string `json:"rule"`
	Owner         string `json:"owner"`
	OwnerEvidence string `json:"owner_evidence"`
	FullyRandom   bool   `json:"fully_random"`
}

type auditDoc struct {
	Rules     []auditedRule `json:"rules"`
	TSOffsets struct {
		Kind string `json:"kind"`
	} `json:"ts_offsets"`
	Findings []struct {
		Kind   string `json:"kind"`
		Owner  string `json:"owner"`
		Remedy string `json:"remedy"`
	} `json:"findings"`
}

// audit runs snatrace audit --json.
func (n *node) audit() auditDoc {
	n.t.Helper()
	out, errs, code := n.snatrace("audit", "--interval", "0", "--json")
	var doc auditDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || (code != 0 && code != 1) {
		n.t.Fatalf("audit: exit %d, %v\n%s\n%s", code, err, out, errs)
	}
	return doc
}

// auditOwned runs snatrace audit and checks that it reports want source-NAT
// rules (what names them for the failure message), each attributed to owner
// with evidence and, if in is not nil, in the chain in says; and that every
// remedy names the owner's fix.
func (n *node) auditOwned(owner string, want int, what string, in func(auditedRule) bool) auditDoc {
	n.t.Helper()
	doc := n.audit()
	if len(doc.Rules) != want {
		n.t.Fatalf("%d source-NAT rules, want %s: %+v", len(doc.Rules), what, doc.Rules)
	}
	for _, r := range doc.Rules {
		if r.Owner != owner || r.OwnerEvidence == "" || (in != nil && !in(r)) {
			n.t.Errorf("rule %q in %s/%s: owner %q (%s), want %s with evidence, in its chain", r.Rule, r.Table, r.Chain, r.Owner, r.OwnerEvidence, owner)
		}
	}
	checkRemedy(n.t, doc, owner)
	n.dumpsAgree(owner, doc)
	return doc
}

// dumpsAgree reads the namespace's rules from nft's own dumps (text and
// JSON) with audit --from-file and checks that the rules the live read
// found in nftables (nft and iptables-nft) come out with the same owner.
func (n *node) dumpsAgree(owner string, live auditDoc) {
	n.t.Helper()
	want := 0
	for _, r := range live.Rules {
		if r.Backend != "iptables-legacy" {
			want++
		}
	}
	for _, args := range [][]string{{"list", "ruleset"}, {"-j", "list", "ruleset"}} {
		dump := filepath.Join(n.dir, "nft-dump")
		if err := os.WriteFile(dump, []byte(n.run("nft", args...)), 0o644); err != nil {
			n.t.Fatal(err)
		}
		out, errs, code := runBinary(n.bin, "audit", "--from-file", dump, "--json")
		var doc auditDoc
		if err := json.Unmarshal([]byte(out), &doc); err != nil || (code != 0 && code != 1) {
			n.t.Errorf("audit --from-file (nft %v): exit %d, %v\n%s", args, code, err, errs)
			continue
		}
		got := 0
		for _, r := range doc.Rules {
			if r.Owner == owner {
				got++
			} else {
				n.t.Errorf("from nft %v: rule %q in %s/%s: owner %q (%s), live says %s", args, r.Rule, r.Table, r.Chain, r.Owner, r.OwnerEvidence, owner)
			}
		}
		if got != want {
			n.t.Errorf("from nft %v: %d rules of %s, the live read %d", args, got, owner, want)
		}
	}
}

// runBinary runs bin with args (no namespace) and returns its output and
// exit code.
func runBinary(bin string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

// fixAndRollback runs snatrace fix --owner OWNER --apply and checks that
// exactly want rules of the dump's section gained fully-random and that the
// owner's software still works (works), then --rollback and checks that the
// dump is restored byte for byte. It returns the rules made fully-random.
func (n *node) fixAndRollback(owner, section string, want int, works func()) int {
	n.t.Helper()
	before := n.dump()
	backup := filepath.Join(n.dir, "backup.json")
	if out, errs, code := n.snatrace("fix", "--owner", owner, "--apply", "--backup", backup); code != 0 {
		n.t.Fatalf("fix --apply: exit %d\n%s\n%s", code, out, errs)
	}
	gained := checkFixed(n.t, before, n.dump())
	if gained[section] != want {
		n.t.Errorf("rules made fully-random: %v, want %d in %s", gained, want, section)
	}
	works()
	if out, errs, code := n.snatrace("fix", "--rollback", backup); code != 0 {
		n.t.Fatalf("rollback: exit %d\n%s\n%s", code, out, errs)
	}
	if got := n.dump(); got != before {
		n.t.Errorf("rollback did not restore the rules:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	return gained[section]
}

// dump is every rule of every backend in the namespace, without counters
// and comment lines: what fix must leave byte-identical.
func (n *node) dump() string {
	n.t.Helper()
	var b strings.Builder
	for _, c := range [][]string{{"iptables-nft-save"}, {"ip6tables-nft-save"}, {"iptables-legacy-save"}, {"ip6tables-legacy-save"}} {
		out, err := netnstest.RunErr(n.ns, "", c[0], c[1:]...)
		if err != nil {
			n.t.Fatalf("%s: %v: %s", c[0], err, out)
		}
		fmt.Fprintf(&b, "$ %s\n%s", c[0], strip(out))
	}
	fmt.Fprintf(&b, "$ nft --stateless list ruleset\n%s", strip(n.run("nft", "--stateless", "list", "ruleset")))
	return b.String()
}

var counters = regexp.MustCompile(`\[[0-9]+:[0-9]+\]`)

func strip(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(counters.ReplaceAllString(l, "[0:0]"))
		}
	}
	return b.String()
}

// waitFor polls ok every 10 ms until it holds or limit passes, and returns
// how long it took.
func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

var randomFlag = regexp.MustCompile(` --random-fully| fully-random`)

// checkFixed compares the dumps before and after a fix: the same lines in
// the same order, each either byte-identical or the same rule gaining
// fully-random. It returns how many gained it, per dump section.
func checkFixed(t *testing.T, before, after string) map[string]int {
	t.Helper()
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(b) != len(a) {
		t.Fatalf("the fix changed the number of lines (%d → %d):\nbefore:\n%s\nafter:\n%s", len(b), len(a), before, after)
	}
	gained := map[string]int{}
	section := ""
	for i := range b {
		if strings.HasPrefix(b[i], "$ ") {
			section = strings.TrimPrefix(b[i], "$ ")
		}
		if b[i] == a[i] {
			continue
		}
		if randomFlag.ReplaceAllString(a[i], "") != randomFlag.ReplaceAllString(b[i], "") || randomFlag.MatchString(b[i]) {
			t.Errorf("line %d changed beyond fully-random:\n- %s\n+ %s", i+1, b[i], a[i])
			continue
		}
		gained[section]++
	}
	return gained
}

// watch runs snatrace fix --apply --watch until the test ends.
func (n *node) watch() {
	n.t.Helper()
	cmd := exec.Command(n.bin, "fix", "--apply", "--watch", "--no-backup", "--netns", n.ns.Path())
	log, err := os.Create(filepath.Join(n.dir, "watch.log"))
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(done) }()
	n.t.Cleanup(func() { stop(cmd, done) })
}

// natFixed reports whether every source-NAT rule in the namespace's nat
// tables (iptables-nft, iptables-legacy) and nftables ruleset is
// fully-random: cheap enough to poll. An iptables-nft rule is seen twice
// (its save and nft's listing), which does not change the answer.
func (n *node) natFixed() bool { return len(n.unfixed()) == 0 }

// unfixed returns the source-NAT rules that are not fully-random.
func (n *node) unfixed() []string {
	n.t.Helper()
	var bad []string
	for _, c := range [][]string{{"iptables-nft-save", "-t", "nat"}, {"iptables-legacy-save", "-t", "nat"}, {"nft", "list", "ruleset"}} {
		out, _ := netnstest.RunErr(n.ns, "", c[0], c[1:]...)
		for _, l := range strings.Split(out, "\n") {
			l = quoted.ReplaceAllString(l, `""`) // comments name masquerade too
			if sourceNAT.MatchString(l) && !randomFlag.MatchString(l) {
				bad = append(bad, c[0]+": "+strings.TrimSpace(l))
			}
		}
	}
	return bad
}

// waitFixed waits until every source-NAT rule is fully-random, and returns
// how long it took; it fails the test with the rules left and the watch's
// log after limit.
func (n *node) waitFixed(limit time.Duration, what string) time.Duration {
	n.t.Helper()
	start := time.Now()
	for !n.natFixed() {
		if time.Since(start) > limit {
			b, _ := os.ReadFile(filepath.Join(n.dir, "watch.log"))
			n.t.Fatalf("%s: not fixed within %v: %q\nwatch log:\n%s", what, limit, n.unfixed(), tailOf(string(b), 3000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

var quoted = regexp.MustCompile(`"[^"]*"`)

var sourceNAT = regexp.MustCompile(`-j (MASQUERADE|SNAT)\b|\b(masquerade|snat to)\b`)

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkRemedy checks that every race finding's remedy names the owner's
// fix (snatrace fix --owner OWNER --apply --watch), and that every
// paws-timewait finding (rules that remap ports on a kernel with per-port
// timestamp offsets: fully-random would add to it, so its remedy is not the
// fix) is the owner's and points to the exclusion instead.
func checkRemedy(t *testing.T, doc auditDoc, owner string) {
	t.Helper()
	fix := "snatrace fix --owner " + owner + " --apply --watch"
	seen := false
	for _, f := range doc.Findings {
		switch {
		case f.Kind == "ts-offsets-unknown":
			// Host-wide, no owner: the probe could not tell the kernel's
			// timestamp offsets; its remedy is the PAWS one.
		case f.Kind == "paws-timewait":
			if f.Owner != owner || !strings.Contains(f.Remedy, "snatrace fix --exclude owner=") {
				t.Errorf("finding %s: owner %q, remedy %q; want %s's, naming the exclusion", f.Kind, f.Owner, f.Remedy, owner)
			}
		case f.Remedy != "":
			seen = true
			if !strings.Contains(f.Remedy, fix) {
				t.Errorf("finding %s: remedy %q does not say %q", f.Kind, f.Remedy, fix)
			}
		}
	}
	if !seen {
		t.Errorf("no race finding gives a remedy")
	}
}

// ownerRow is one row of docs/audit.md's owner table.
type ownerRow struct {
	Owner, Software          string
	Rules, Attributed, Fixed int
	Reactions                map[string]time.Duration
}

// recordOwner appends the row to $SNATRACE_OWNER_TABLE, if set (the table in
// docs/audit.md is made from it).
func recordOwner(t *testing.T, r ownerRow) {
	path := os.Getenv("SNATRACE_OWNER_TABLE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	json.NewEncoder(f).Encode(r)
}

// pkgVersion returns the installed version of a Debian package, or "".
func pkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// recordDump writes a dump the test's owner wrote to ruleset's owner
// dumps, with its provenance, when SNATRACE_RECORD_DUMPS is set: the
// ruleset tests then hold that real output.
func recordDump(t *testing.T, file, provenance, dump string) {
	if os.Getenv("SNATRACE_RECORD_DUMPS") == "" {
		return
	}
	head := "# recorded by " + t.Name() + " (snatrace owners tests): " + provenance + "\n"
	if err := os.WriteFile(filepath.Join("..", "ruleset", "testdata", "owners", file), []byte(head+dump), 0o644); err != nil {
		t.Fatal(err)
	}
}
