package lab

import (
	"time"

	"github.com/snatrace/snatrace/ctstat"
)

// The UDP round's outcome and counter types, used by the accounting in
// udpresult.go on every OS (the rounds themselves are Linux only).

// udpOutcome is what became of one query.
type udpOutcome struct {
	pod, server int
	qtype       uint16
	localPort   uint16
	first       time.Time     // the first transmission
	latency     time.Duration // until the answer, or until the client gave up
	attempt     int           // transmissions - 1
	lost        int           // transmissions unanswered within the timeout
	late        int           // answers to an attempt that had timed out
	answered    bool
	seen        uint8 // attempts whose answer came (bit a: attempt a)
	failed      bool  // no answer after every attempt, or a send error
	sent        bool
	deadline    time.Time
	err         error
}

// udpDelta is the difference of two udpCounters readings.
type udpDelta struct {
	roundDelta
	perCPU                             []ctstat.CPU // the node's conntrack counters per CPU, from /proc
	podRcvbuf, podNoPorts, podInErrors uint64
	srvRcvbuf, srvInErrors             uint64
}
