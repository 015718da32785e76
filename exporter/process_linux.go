//go:build linux

package exporter

import (
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// processCollector serves the exporter's own standard process metrics
// (process_cpu_seconds_total, _resident_memory_bytes, _virtual_memory_bytes,
// _virtual_memory_max_bytes, _start_time_seconds, _open_fds, _max_fds), as
// client_golang's process collector does, without two costs of each of its
// collections: /proc/self/net/netstat (process_network_*: the traffic of
// the network namespace, not of the process) and /proc/stat for the boot
// time (read once here); /proc/self/limits is read once a minute. Together
// they were a third of a scrape.
type processCollector struct {
	pid   int
	once  sync.Once
	start float64
	descs map[string]*prometheus.Desc

	mu       sync.Mutex
	limits   procfs.ProcLimits
	limitsAt time.Time // limits change only by prlimit: read once a minute
}

func newProcessCollector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &processCollector{pid: os.Getpid(), descs: map[string]*prometheus.Desc{
		"cpu":      d("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."),
		"rss":      d("process_resident_memory_bytes", "Resident memory size in bytes."),
		"vsize":    d("process_virtual_memory_bytes", "Virtual memory size in bytes."),
		"maxVsize": d("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes."),
		"start":    d("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
		"fds":      d("process_open_fds", "Number of open file descriptors."),
		"maxFds":   d("process_max_fds", "Maximum number of open file descriptors."),
	}}
}

// Describe implements prometheus.Collector.
func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector; a source that fails leaves its
// metrics out.
func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	p, err := procfs.NewProc(c.pid)
	if err != nil {
		return
	}
	if stat, err := p.Stat(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.descs["cpu"], prometheus.CounterValue, stat.CPUTime())
		ch <- prometheus.MustNewConstMetric(c.descs["vsize"], prometheus.GaugeValue, float64(stat.VirtualMemory()))
		ch <- prometheus.MustNewConstMetric(c.descs["rss"], prometheus.GaugeValue, float64(stat.ResidentMemory()))
		c.once.Do(func() { c.start, _ = stat.StartTime() })
		if c.start > 0 {
			ch <- prometheus.MustNewConstMetric(c.descs["start"], prometheus.GaugeValue, c.start)
		}
	}
	if fds, err := p.FileDescriptorsLen(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.descs["fds"], prometheus.GaugeValue, float64(fds))
	}
	if limits, ok := c.readLimits(p); ok {
		ch <- prometheus.MustNewConstMetric(c.descs["maxFds"], prometheus.GaugeValue, float64(limits.OpenFiles))
		ch <- prometheus.MustNewConstMetric(c.descs["maxVsize"], prometheus.GaugeValue, float64(limits.AddressSpace))
	}
}

// readLimits returns the process's limits, read at most once a minute.
func (c *processCollector) readLimits(p procfs.Proc) (procfs.ProcLimits, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.limitsAt) > time.Minute {
		l, err := p.Limits()
		if err != nil {
			return l, false
		}
		c.limits, c.limitsAt = l, time.Now()
	}
	return c.limits, true
}
