package jsondoc

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	type doc struct{ A int }
	for in, want := range map[string]error{
		`{"A":1}`:        nil,
		"{\"A\":1}\n \t": nil,
		`{"A":1}}`:       ErrTrailing,
		`{"A":1}]]`:      ErrTrailing,
		`{"A":1}{}`:      ErrTrailing,
		`{"A":1} xyz`:    ErrTrailing,
	} {
		var d doc
		if err := Decode([]byte(in), &d); !errors.Is(err, want) || want == nil && d.A != 1 {
			t.Errorf("Decode(%q) = %v (A=%d), want %v", in, err, d.A, want)
		}
	}
	var d doc
	if err := Decode([]byte(`{"B":1}`), &d); err == nil {
		t.Errorf("an unknown field was accepted")
	}
	if err := Decode([]byte(`{"A":`), &d); err == nil {
		t.Errorf("a truncated document was accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"A":1}`))
	f.Add([]byte(`{"A":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d struct{ A int }
		// What Decode accepts is one JSON document and white space: valid
		// JSON as a whole.
		if err := Decode(b, &d); err == nil && !json.Valid(b) {
			t.Errorf("Decode accepted %q, which is not one JSON document", b)
		}
	})
}
