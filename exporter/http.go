package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/klauspost/compress/gzhttp"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// MetricsPath is where the metrics are served.
const MetricsPath = "/metrics"

// HandlerOpts bound the work of concurrent scrapes.
type HandlerOpts struct {
	// MaxRequestsInFlight answers 503 beyond this many concurrent scrapes
	// (default 10): memory stays bounded however many scrapers there are.
	MaxRequestsInFlight int
	// Timeout, if positive, answers 503 to a scrape that takes longer. By
	// default there is none: every kernel read of a scrape is bounded on
	// its own (ctnetlink's socket deadline), and promhttp's timeout runs
	// each scrape in a goroutine of its own with its body buffered twice.
	Timeout time.Duration
	// Logger receives the errors of promhttp.
	Logger *slog.Logger
	// Extra collectors served beside e (ClashDrops when tracing).
	Extra []prometheus.Collector
}

// NewHandler serves e, the Go runtime and the process metrics (processCollector) on
// MetricsPath, gzip- or zstd-compressed when the scraper accepts it, and a
// landing page on /.
func NewHandler(e *Exporter, o HandlerOpts) (http.Handler, error) {
	if o.MaxRequestsInFlight <= 0 {
		o.MaxRequestsInFlight = 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(e); err != nil {
		return nil, fmt.Errorf("registering the snatrace collector: %w", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), newProcessCollector())
	for _, c := range o.Extra {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering a collector: %w", err)
		}
	}
	mux := http.NewServeMux()
	// Compression at the fastest level: promhttp's own gzip runs at the
	// default level, a third of a scrape's CPU, and its writers (800 KB of
	// state each) are reallocated after every garbage collection, which
	// the scrapes' garbage makes frequent: the slow tail of scrapes.
	gz, err := gzhttp.NewWrapper(gzhttp.CompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, fmt.Errorf("building the compressing handler: %w", err)
	}
	mux.Handle(MetricsPath, gz(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(o.Logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: o.MaxRequestsInFlight,
		Timeout:             o.Timeout,
		DisableCompression:  true,
	})))
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "snatrace exporter",
		Description: "SNAT source-port race: conntrack counters per CPU and rule audit",
		Links:       []web.LandingLinks{{Address: MetricsPath, Text: "Metrics"}},
	})
	if err != nil {
		return nil, fmt.Errorf("building the landing page: %w", err)
	}
	mux.Handle("/", landing)
	return mux, nil
}

// Serve serves h on l until ctx is done, with TLS and basic auth from the
// exporter-toolkit web configuration file webConfig ("" for plain HTTP).
func Serve(ctx context.Context, l net.Listener, h http.Handler, webConfig string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		done <- web.Serve(l, srv, &web.FlagConfig{WebConfigFile: &webConfig}, log)
	}()
	select {
	case err := <-done:
		return fmt.Errorf("serving metrics on %s: %w", l.Addr(), err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutting down the metrics server: %w", err)
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving metrics on %s: %w", l.Addr(), err)
		}
		return nil
	}
}

// ValidateWebConfig checks an exporter-toolkit web configuration file.
func ValidateWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("checking web config %s: %w", path, err)
	}
	return nil
}
