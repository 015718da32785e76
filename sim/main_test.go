package sim

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs every test with the model checking what the runner
// promises it (verifyModel); benchmarks run as users do, without.
func TestMain(m *testing.M) {
	flag.Parse()
	verifyModel = flag.Lookup("test.bench").Value.String() == ""
	os.Exit(m.Run())
}
