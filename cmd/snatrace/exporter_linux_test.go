//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
)

// An exporter watching a namespace by name stops, with a message naming
// it, when the name is deleted: its handle would keep the namespace alive
// and its metrics would describe a namespace nothing else uses.
func TestExporterStopsWhenItsNamespaceIsDeleted(t *testing.T) {
	testenv.NeedRoot(t, "creates a network namespace")
	name := fmt.Sprintf("snt-expgone-%d", os.Getpid())
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	var errb bytes.Buffer
	cmd := snatrace("exporter", "--netns", name, "--listen", "127.0.0.1:0", "--no-audit")
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		netns.Delete(name)
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(time.Second) // serving
	if err := netns.Delete(name); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		want := "snatrace: network namespace " + name + ": gone (deleted, or its process ended): stopping"
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(errb.String(), want) {
			t.Errorf("exporter ended with %v, stderr %q; want exit %d and %q", err, errb.String(), exitUsage, want)
		}
	case <-time.After(3 * netnsCheck):
		cmd.Process.Kill()
		<-done
		t.Fatalf("exporter still running %v after its namespace was deleted; stderr %q", 3*netnsCheck, errb.String())
	}
}
