package worker

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdkmetrics "go.temporal.io/sdk/client"
)

// Registry holds every series a worker records, the SDK's and mailmove's
// (internal/metrics names these): it is both the SDK's metrics handler
// and a Prometheus collector, so one /metrics page holds them all.
// timerBuckets are the upper bounds, in seconds, of the histograms timers
// become: from a fast RPC to a long copy call.
var timerBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}

type Registry struct {
	mu     sync.Mutex
	series map[string]*series
}

type kind int

const (
	counter kind = iota
	gauge
	timer
)

type series struct {
	name   string
	kind   kind
	labels map[string]string
	n      atomic.Int64  // counter
	bits   atomic.Uint64 // gauge: float64 bits
	mu     sync.Mutex    // timer
	count  uint64
	sum    float64
	bucket []uint64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{series: map[string]*series{}} }

// Handler is the SDK's view of the registry, with no tags.
func (r *Registry) Handler() sdkmetrics.MetricsHandler { return handler{r: r} }

func (r *Registry) get(name string, k kind, tags map[string]string) *series {
	keys := slices.Sorted(maps.Keys(tags))
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + tags[k])
	}
	id := b.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[id]
	if s == nil {
		s = &series{name: sanitize(name), kind: k, labels: maps.Clone(tags)}
		if k == timer {
			s.bucket = make([]uint64, len(timerBuckets))
		}
		r.series[id] = s
	}
	return s
}

// sanitize makes a Prometheus metric or label name of an SDK name.
func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			return r
		}
		return '_'
	}, name)
}

// Describe sends nothing: the registry is an unchecked collector, whose
// series appear as they are recorded.
func (r *Registry) Describe(chan<- *prometheus.Desc) {}

// Collect sends every series' current value.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	all := slices.Collect(maps.Values(r.series))
	r.mu.Unlock()
	for _, s := range all {
		names := slices.Sorted(maps.Keys(s.labels))
		values := make([]string, len(names))
		for i, n := range names {
			values[i] = s.labels[n]
			names[i] = sanitize(n)
		}
		switch s.kind {
		case counter:
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(s.name, s.name, names, nil), prometheus.CounterValue, float64(s.n.Load()), values...)
		case gauge:
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(s.name, s.name, names, nil), prometheus.GaugeValue, math.Float64frombits(s.bits.Load()), values...)
		case timer:
			s.mu.Lock()
			buckets := make(map[float64]uint64, len(timerBuckets))
			cum := uint64(0)
			for i, ub := range timerBuckets {
				cum += s.bucket[i]
				buckets[ub] = cum
			}
			count, sum := s.count, s.sum
			s.mu.Unlock()
			ch <- prometheus.MustNewConstHistogram(prometheus.NewDesc(s.name+"_seconds", s.name, names, nil), count, sum, buckets, values...)
		}
	}
}

// handler is the registry with tags, as the SDK hands it around.
type handler struct {
	r    *Registry
	tags map[string]string
}

func (h handler) WithTags(tags map[string]string) sdkmetrics.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, tags)
	return handler{r: h.r, tags: merged}
}

func (h handler) Counter(name string) sdkmetrics.MetricsCounter {
	s := h.r.get(name, counter, h.tags)
	return counterFunc(func(d int64) { s.n.Add(d) })
}

func (h handler) Gauge(name string) sdkmetrics.MetricsGauge {
	s := h.r.get(name, gauge, h.tags)
	return gaugeFunc(func(v float64) { s.bits.Store(math.Float64bits(v)) })
}

func (h handler) Timer(name string) sdkmetrics.MetricsTimer {
	s := h.r.get(name, timer, h.tags)
	return timerFunc(func(d time.Duration) {
		sec := d.Seconds()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.count++
		s.sum += sec
		for i, ub := range timerBuckets {
			if sec <= ub {
				s.bucket[i]++
				break
			}
		}
	})
}

type (
	counterFunc func(int64)
	gaugeFunc   func(float64)
	timerFunc   func(time.Duration)
)

func (f counterFunc) Inc(d int64)          { f(d) }
func (f gaugeFunc) Update(v float64)       { f(v) }
func (f timerFunc) Record(d time.Duration) { f(d) }
