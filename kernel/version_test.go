package kernel

import "testing"

func TestParseVersion(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Version
		err  string
	}{
		{"6.18.44-fc-v1045", Version{6, 18, 44}, ""},
		{"4.19.0-27-amd64", Version{4, 19, 0}, ""},
		{"5.15.153.1-microsoft-standard-WSL2", Version{5, 15, 153}, ""},
		{"6.6.87.2-microsoft-standard-WSL2+", Version{6, 6, 87}, ""},
		{"4.18.0-305.el8.x86_64", Version{4, 18, 0}, ""},
		{"5.14.21-150500.55.39-default", Version{5, 14, 21}, ""},
		{"5.4-rc1", Version{5, 4, 0}, ""},
		{"5.4", Version{5, 4, 0}, ""},
		{"v1.6.1", Version{1, 6, 1}, ""},
		{"6.1.0+", Version{6, 1, 0}, ""},
		{"", Version{}, `parsing kernel version "": want MAJOR.MINOR[.PATCH], got "" at part 1`},
		{"x", Version{}, `parsing kernel version "x": want MAJOR.MINOR[.PATCH], got "x" at part 1`},
		{"5", Version{}, `parsing kernel version "5": want MAJOR.MINOR, no minor number`},
		{"6.x", Version{}, `parsing kernel version "6.x": want MAJOR.MINOR[.PATCH], got "x" at part 2`},
		{"5.0.x", Version{}, `parsing kernel version "5.0.x": want MAJOR.MINOR[.PATCH], got "x" at part 3`},
		{"5..0", Version{}, `parsing kernel version "5..0": want MAJOR.MINOR[.PATCH], got ".0" at part 2`},
		{"1234567.1", Version{}, `parsing kernel version "1234567.1": number "1234567" is too long`},
	} {
		got, err := ParseVersion(tt.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.err {
			t.Errorf("ParseVersion(%q) = %v, %q; want %v, %q", tt.in, got, gotErr, tt.want, tt.err)
		}
	}
}

func TestLess(t *testing.T) {
	if !(Version{4, 19, 0}).Less(Version{5, 0, 0}) || (Version{5, 0, 0}).Less(Version{5, 0, 0}) || !(Version{6, 1, 9}).Less(Version{6, 1, 10}) {
		t.Error("Less is wrong")
	}
	if !(Version{6, 5, 0}).AtLeast(6, 5) || (Version{6, 4, 99}).AtLeast(6, 5) {
		t.Error("AtLeast is wrong")
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"6.18.44-fc", "5.15.153.1-microsoft", "v4.19", "", "5..0", "9.99.99.99.99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		if v.Major < 0 || v.Minor < 0 || v.Patch < 0 {
			t.Fatalf("ParseVersion(%q) = %v", s, v)
		}
		if p, err := ParseVersion(v.String()); err != nil || p != v {
			t.Fatalf("round trip of %q: %v %v", s, p, err)
		}
	})
}
