package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
)

func TestParseSweep(t *testing.T) {
	for _, tc := range []struct {
		in    string
		param string
		vals  []float64
		ok    bool
	}{
		{"pods=16,32,64", "pods", []float64{16, 32, 64}, true},
		{"cpus=2:16:x2", "cpus", []float64{2, 4, 8, 16}, true},
		{"rate=1000:3000:+1000", "rate", []float64{1000, 2000, 3000}, true},
		{"window=0.5,1,2", "window", []float64{0.5, 1, 2}, true},
		{"NAT-RANGE=64", "nat-range", []float64{64}, true},
		{"colour=1", "", nil, false},
		{"pods", "", nil, false},
		{"pods=", "", nil, false},
		{"pods=0", "", nil, false},
		{"pods=-4", "", nil, false},
		{"pods=16:8:x2", "", nil, false},
		{"pods=1:8:x1", "", nil, false},
		{"pods=1:8:/2", "", nil, false},
		{"pods=1:100000:+1", "", nil, false},
		{"pods=NaN", "", nil, false},
	} {
		p, v, err := ParseSweep(tc.in)
		if (err == nil) != tc.ok || p != tc.param || !reflect.DeepEqual(v, tc.vals) {
			t.Errorf("ParseSweep(%q) = %q %v %v", tc.in, p, v, err)
		}
	}
}

func FuzzParseSweep(f *testing.F) {
	for _, s := range []string{"pods=16,32", "cpus=2:64:x2", "rate=1:9:+2", "window=1e-3:1:x10", "x=:", "pods=1:1e308:x1.0000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, vals, err := ParseSweep(s)
		if err != nil {
			return
		}
		if len(vals) == 0 || len(vals) > maxSweepValues {
			t.Errorf("ParseSweep(%q): %d values", s, len(vals))
		}
	})
}

func TestApply(t *testing.T) {
	base := Config{NAT: mode(t, "masquerade fully-random")}
	c, _ := Apply(base, ParamRange, 100)
	if c.PortRange != [2]uint16{32768, 32867} {
		t.Errorf("range: %v", c.PortRange)
	}
	c, _ = Apply(base, ParamNATRange, 64)
	if c.NAT.PortMin != 1024 || c.NAT.PortMax != 1087 || !c.NAT.FullyRandom {
		t.Errorf("nat-range: %+v", c.NAT)
	}
	c, _ = Apply(base, ParamWindow, 2)
	if c.Window.Mean() != 2*time.Microsecond || c.Window.Kind != DefaultWindow.Kind {
		t.Errorf("window: %v", c.Window)
	}
	if _, err := Apply(base, ParamRange, 40000); err == nil {
		t.Errorf("range past 65535 accepted")
	}
	// A count that rounds to 0 would run with the Config's default.
	for _, p := range []string{ParamPods, ParamCPUs, ParamServers, ParamRange, ParamNATRange} {
		if c, err := Apply(base, p, 0.4); err == nil {
			t.Errorf("%s=0.4 accepted: %+v", p, c)
		}
	}
	s := SweepSpec{Base: base, Param: ParamPods, Values: []float64{2, 0.3}, Eras: []natmodel.Era{natmodel.Era65}, Modes: []natrule.Mode{base.NAT}}
	var fe *FieldError
	if _, err := s.Scenarios(); !errors.As(err, &fe) || fe.Field != "sweep" {
		t.Errorf("pods=0.3: error %v, want a FieldError of sweep", err)
	}
}

// Each value's seed depends only on the base seed and the value's index.
func TestScenarioSeeds(t *testing.T) {
	s := SweepSpec{Base: Config{Seed: 7}, Param: ParamPods, Values: []float64{2, 4},
		Eras: []natmodel.Era{natmodel.Legacy, natmodel.Era65}, Modes: []natrule.Mode{mode(t, "masquerade"), mode(t, "masquerade random")}}
	scs, err := s.Scenarios()
	if err != nil || len(scs) != 8 {
		t.Fatal(err, len(scs))
	}
	for i, sc := range scs {
		if want := ScenarioSeed(7, i%2); sc.Config.Seed != want {
			t.Errorf("scenario %d seed %d, want %d", i, sc.Config.Seed, want)
		}
	}
	if ScenarioSeed(7, 0) == ScenarioSeed(7, 1) || ScenarioSeed(7, 0) == ScenarioSeed(8, 0) {
		t.Errorf("seeds collide")
	}
	a, err := RunSweep(context.Background(), SweepSpec{Base: Config{Connections: 2000, Seed: 3}, Param: ParamCPUs, Values: []float64{2, 8},
		Eras: []natmodel.Era{natmodel.Era50}, Modes: []natrule.Mode{mode(t, "masquerade")}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RunSweep(context.Background(), SweepSpec{Base: Config{Connections: 2000, Seed: 3}, Param: ParamCPUs, Values: []float64{2, 8},
		Eras: []natmodel.Era{natmodel.Era50}, Modes: []natrule.Mode{mode(t, "masquerade")}, Workers: 4})
	if !reflect.DeepEqual(a, b) {
		t.Errorf("results depend on the number of workers")
	}
}

// A calibration printed as JSON reads back to the same window.
func TestCalibrationRoundTrip(t *testing.T) {
	cal, err := Calibrate(context.Background(), readLabFile(t, calibrationLab), CalibrateOptions{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cal)
	back, err := ReadCalibration(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if back.WindowDist() != cal.WindowDist() {
		t.Errorf("round trip: %v vs %v", back.WindowDist(), cal.WindowDist())
	}
	for _, bad := range []string{`{}`, `{"shape":"exp:1us","scale":0,"scale_lo":1,"scale_hi":1}`, `{"shape":"gamma","scale":1,"scale_lo":1,"scale_hi":1}`, `[`} {
		if _, err := ReadCalibration(bytes.NewReader([]byte(bad))); err == nil {
			t.Errorf("ReadCalibration(%s) accepted", bad)
		}
	}
}

// A lab client gives up after its timeout (8 s when the report predates
// the field), on the pods' tcp_syn_retries.
func TestLabConfigTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout float64
		want    time.Duration
	}{{0, 8 * time.Second}, {7.5, 7500 * time.Millisecond}, {600, 600 * time.Second}} {
		rep := readLabFile(t, calibrationLab)
		rep.Workload.TimeoutSeconds = tc.timeout
		c, err := LabConfig(rep, rep.Results[0], Config{})
		if err != nil {
			t.Fatal(err)
		}
		if c.ConnectTimeout != tc.want || c.SynRetries != 6 {
			t.Errorf("timeout %vs: connect timeout %v, syn-retries %d; want %v, 6", tc.timeout, c.ConnectTimeout, c.SynRetries, tc.want)
		}
	}
}
