// Package metrics exposes the service's Prometheus metrics: calls by method
// and code, stage latencies, worker-pool occupancy, variant outcomes, the
// bytes accounting from which an operator reads the saving ratio
// (1 - imgedge_served_bytes_total / imgedge_original_bytes_total), what
// auto-quality searches cost and chose, and how often a negotiated format
// gave way to another.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Pool is what the metrics read from the worker pool.
type Pool interface {
	InFlight() int
	Waiting() int
	Workers() int
}

// Metrics holds the collectors, registered on their own registry.
type Metrics struct {
	Registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	stages        *prometheus.HistogramVec
	variants      *prometheus.CounterVec
	lookups       *prometheus.CounterVec
	remembered    prometheus.Counter // lookups{variants="remembered"}
	headed        prometheus.Counter // lookups{variants="headed"}
	originalBytes prometheus.Counter
	servedBytes   prometheus.Counter
	// auto-quality searches, by format
	trials, chosenQuality, scores *prometheus.HistogramVec
	// negotiated formats that gave way, by the formats from and to
	fallbacks *prometheus.CounterVec
}

// New creates the metrics and registers them, with Go and process metrics.
func New(pool Pool) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgedge_rpc_requests_total", Help: "RPCs handled, by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imgedge_rpc_duration_seconds", Help: "RPC latency, by method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imgedge_stage_duration_seconds", Help: "Latency of one step: head (freshness check), fetch (GET original), process (decode+transform+encode), store (PUT).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"stage"}),
		variants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgedge_variants_total", Help: "EnsureVariant outcomes: created, already_existed, original_is_smaller, original_kept.",
		}, []string{"outcome"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgedge_lookups_total", Help: "Freshness checks, by how the variants were found: remembered (only the original HEADed) or headed.",
		}, []string{"variants"}),
		originalBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imgedge_original_bytes_total", Help: "Sum of the originals' sizes over successful EnsureVariant calls.",
		}),
		servedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imgedge_served_bytes_total", Help: "Sum of the sizes of what those calls said to serve (variant, or original when kept).",
		}),
		trials: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imgedge_autoquality_trials", Help: "Trials (an encode and a score each) per auto-quality search, by format: its CPU cost.",
			Buckets: []float64{1, 2, 3, 4, 5, 6},
		}, []string{"format"}),
		chosenQuality: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imgedge_autoquality_quality", Help: "Encoder quality each auto-quality search chose, by format.",
			Buckets: prometheus.LinearBuckets(40, 5, 12), // 40 … 95
		}, []string{"format"}),
		scores: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imgedge_autoquality_score", Help: "SSIMULACRA2 score the chosen quality measured, by format (at or just above the target; below it only for a target out of reach).",
			Buckets: []float64{50, 60, 65, 70, 71, 72, 75, 80, 81, 82, 85, 90, 95},
		}, []string{"format"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgedge_format_fallbacks_total", Help: "Negotiated formats that gave way to the next the viewer accepts, by from and to: past the format's size or the memory budget, or (EnsureVariant) a variant that did not beat the original.",
		}, []string{"from", "to"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.stages, m.variants, m.lookups, m.originalBytes, m.servedBytes,
		m.trials, m.chosenQuality, m.scores, m.fallbacks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imgedge_inflight_transforms", Help: "Image transforms holding a worker."},
			func() float64 { return float64(pool.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imgedge_queue_depth", Help: "Calls waiting for a worker."},
			func() float64 { return float64(pool.Waiting()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imgedge_workers", Help: "Size of the worker pool."},
			func() float64 { return float64(pool.Workers()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, o := range []transform.Outcome{transform.Created, transform.AlreadyExisted, transform.OriginalIsSmaller, transform.OriginalKept} {
		m.variants.WithLabelValues(o.String())
	}
	m.remembered, m.headed = m.lookups.WithLabelValues("remembered"), m.lookups.WithLabelValues("headed")
	return m
}

// Stage implements transform.Observer.
func (m *Metrics) Stage(name string, d time.Duration) {
	m.stages.WithLabelValues(name).Observe(d.Seconds())
}

// Ensured implements transform.Observer.
func (m *Metrics) Ensured(o transform.Outcome, originalBytes, servedBytes int64) {
	m.variants.WithLabelValues(o.String()).Inc()
	m.originalBytes.Add(float64(originalBytes))
	m.servedBytes.Add(float64(servedBytes))
}

// FellBack implements transform.Observer.
func (m *Metrics) FellBack(from, to variant.Format) {
	m.fallbacks.WithLabelValues(from.String(), to.String()).Inc()
}

// Lookup implements transform.Observer.
func (m *Metrics) Lookup(remembered bool) {
	if remembered {
		m.remembered.Inc()
		return
	}
	m.headed.Inc()
}

// Searched implements transform.Observer.
func (m *Metrics) Searched(f variant.Format, trials, quality int, score float64) {
	format := f.String()
	m.trials.WithLabelValues(format).Observe(float64(trials))
	m.chosenQuality.WithLabelValues(format).Observe(float64(quality))
	if score > 0 {
		m.scores.WithLabelValues(format).Observe(score)
	}
}

// ServerOptions count and time every RPC.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := handler(ctx, req)
			m.observe(info.FullMethod, err, start)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			start := time.Now()
			err := handler(srv, ss)
			m.observe(info.FullMethod, err, start)
			return err
		}),
	}
}

func (m *Metrics) observe(method string, err error, start time.Time) {
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	return mux
}
