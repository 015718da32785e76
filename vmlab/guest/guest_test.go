package guest

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{Exit: 0, Stdout: []byte("{\"kernel\":\"6.1.0\"}\n"), Report: []byte("<html>\n\r\x00</html>")},
		{Exit: 2},
		{Exit: 143, Stdout: []byte("SNATRACE-END\nnot the end")},
	} {
		var b bytes.Buffer
		b.WriteString("boot noise\r\n")
		if err := WriteResult(&b, r); err != nil {
			t.Fatal(err)
		}
		got, err := ReadResult(b.Bytes())
		if err != nil || got.Exit != r.Exit || !bytes.Equal(got.Stdout, r.Stdout) || !bytes.Equal(got.Report, r.Report) {
			t.Errorf("round trip of %+v: %+v %v", r, got, err)
		}
	}
}

func TestReadResultIncomplete(t *testing.T) {
	var b bytes.Buffer
	WriteResult(&b, Result{Exit: 1, Stdout: []byte("0123456789")})
	full := b.Bytes()
	for _, cut := range []int{0, 10, len("SNATRACE-RESULT v1 exit=1"), len(full) - 5, len(full) - 1} {
		if _, err := ReadResult(full[:cut]); !errors.Is(err, ErrNoResult) {
			t.Errorf("cut at %d: %v, want ErrNoResult", cut, err)
		}
	}
	if _, err := ReadResult([]byte("SNATRACE-RESULT v1 exit=0 stdout=-4 report=0\n")); !errors.Is(err, ErrNoResult) {
		t.Errorf("negative length: %v", err)
	}
}

func FuzzReadResult(f *testing.F) {
	var b bytes.Buffer
	WriteResult(&b, Result{Exit: 0, Stdout: []byte("{}"), Report: []byte("<html>")})
	f.Add(b.Bytes())
	f.Add([]byte("SNATRACE-RESULT v1 exit=0 stdout=999999999999 report=0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadResult(data)
		if err != nil {
			return
		}
		var again bytes.Buffer
		WriteResult(&again, r)
		r2, err := ReadResult(again.Bytes())
		if err != nil || r2.Exit != r.Exit || !bytes.Equal(r2.Stdout, r.Stdout) || !bytes.Equal(r2.Report, r.Report) {
			t.Errorf("re-encoding %+v: %+v %v", r, r2, err)
		}
	})
}

func TestParseExit(t *testing.T) {
	for line, want := range map[string]int{"snatrace-guest: exit 0": 0, "snatrace-guest: exit 143\r": 143} {
		if got, ok := ParseExit(line); !ok || got != want {
			t.Errorf("ParseExit(%q) = %d %v", line, got, ok)
		}
	}
	if _, ok := ParseExit("snatrace-guest: exit x"); ok {
		t.Error("non-numeric exit parsed")
	}
}

func TestParseModprobe(t *testing.T) {
	tests := []struct {
		args []string
		want ModprobeRequest
		err  string
	}{
		{[]string{"-q", "--", "nft-chain-2-nat"}, ModprobeRequest{Modules: []string{"nft-chain-2-nat"}, Quiet: true}, ""},
		{[]string{"ip_tables"}, ModprobeRequest{Modules: []string{"ip_tables"}}, ""},
		{[]string{"nf_conntrack", "hashsize=1024", "expect_hashsize=64"}, ModprobeRequest{Modules: []string{"nf_conntrack"}, Params: "hashsize=1024 expect_hashsize=64"}, ""},
		{[]string{"-a", "nf_conntrack", "nf_nat"}, ModprobeRequest{Modules: []string{"nf_conntrack", "nf_nat"}}, ""},
		{[]string{"-b", "-v", "-q", "veth"}, ModprobeRequest{Modules: []string{"veth"}, Quiet: true}, ""},
		{[]string{"-r", "veth"}, ModprobeRequest{}, "removing modules is not supported"},
		{[]string{"-q"}, ModprobeRequest{Quiet: true}, "no module named"},
	}
	for _, tt := range tests {
		got, err := ParseModprobe(tt.args)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseModprobe(%q) error %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseModprobe(%q) = %+v %v, want %+v", tt.args, got, err, tt.want)
		}
	}
}
