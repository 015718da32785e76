// Command skips reads `go test -json` from stdin, passes the test output
// through to stdout, and at the end lists every skipped test. It exits 1 if
// a test failed, or if a test skipped that is not on the allow-list given
// as the first argument (lines "package TestName  # why"): in CI the
// environment is built for every test, so a skip hides a test that cannot
// fail.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	allowed := map[string]bool{}
	if len(os.Args) > 1 {
		data, err := os.ReadFile(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "skips:", err)
			os.Exit(2)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(strings.SplitN(l, "#", 2)[0]); len(f) == 2 {
				allowed[f[0]+" "+f[1]] = true
			}
		}
	}
	var skipped, failed []string
	reason := map[string]string{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // not test2json: pass it on
			continue
		}
		pkg := strings.TrimPrefix(e.Package, "github.com/snatrace/snatrace/")
		key := pkg + " " + e.Test
		switch e.Action {
		case "output":
			fmt.Print(e.Output)
			if e.Test != "" && strings.Contains(e.Output, "_test.go:") {
				reason[key] = strings.TrimSpace(e.Output) // the last message: a skip's reason
			}
		case "skip":
			if e.Test != "" {
				skipped = append(skipped, key)
			}
		case "fail":
			if e.Test != "" {
				failed = append(failed, key)
			} else if e.Package != "" {
				failed = append(failed, pkg+" (package)")
			}
		}
	}
	sort.Strings(skipped)
	bad := 0
	fmt.Printf("\nci: %d skipped tests\n", len(skipped))
	for _, s := range skipped {
		mark := "allowed"
		if !allowed[s] {
			mark, bad = "NOT ALLOWED", bad+1
		}
		fmt.Printf("  %-12s %s  %s\n", mark, s, reason[s])
	}
	if len(failed) > 0 {
		fmt.Printf("ci: %d failed: %s\n", len(failed), strings.Join(failed, ", "))
	}
	if bad > 0 {
		fmt.Printf("ci: %d skips are not on the allow-list (.ci/allowed-skips): in CI every test must run\n", bad)
	}
	if bad > 0 || len(failed) > 0 {
		os.Exit(1)
	}
}
