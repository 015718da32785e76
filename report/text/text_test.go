package text

import (
	"errors"
	"strings"
	"testing"
)

type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(p), nil
}

func TestWriterKeepsFirstError(t *testing.T) {
	var b strings.Builder
	w := &Writer{W: &b}
	w.Printf("%d %s\n", 3, Plural(3, "rule", "rules"))
	if b.String() != "3 rules\n" || w.Err != nil {
		t.Fatalf("wrote %q, %v", b.String(), w.Err)
	}
	f := &Writer{W: &failAfter{1}}
	f.Printf("a")
	f.Printf("b")
	f.Printf("c")
	if f.Err == nil || f.Err.Error() != "disk full" {
		t.Fatalf("error %v, want the first one", f.Err)
	}
	if Plural(1, "rule", "rules") != "rule" {
		t.Error("Plural(1)")
	}
}

func TestCount(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 64512: "64,512", 600000: "600,000",
		1234567.6: "1,234,568", -1500: "-1,500", 0.4: "0", -0.4: "0"} {
		if got := Count(x); got != want {
			t.Errorf("Count(%v) = %q, want %q", x, got, want)
		}
	}
}
