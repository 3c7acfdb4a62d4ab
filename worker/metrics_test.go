package worker

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailmove/mailmove/internal/metrics"
)

// What the SDK and mailmove record reaches a Prometheus scrape, whatever
// tags each series carries (the SDK adds and drops some per call).
func TestRegistryServesWhatTheHandlerRecords(t *testing.T) {
	r := NewRegistry()
	h := r.Handler().WithTags(map[string]string{"namespace": "default"})
	h.WithTags(map[string]string{metrics.TagBatch: "wave1"}).Counter(metrics.MessagesCopied).Inc(40)
	h.WithTags(map[string]string{metrics.TagBatch: "wave1"}).Counter(metrics.MessagesCopied).Inc(2)
	h.WithTags(map[string]string{metrics.TagBatch: "wave2"}).Counter(metrics.MessagesCopied).Inc(5)
	h.WithTags(map[string]string{metrics.TagBatch: "wave1", metrics.TagReason: "LogonFailed"}).Counter(metrics.Failures).Inc(1)
	h.Counter("temporal_request").Inc(3)
	h.WithTags(map[string]string{"operation": "Poll"}).Counter("temporal_request").Inc(4) // other labels, same name
	h.Gauge("temporal_worker_task_slots_available").Update(7)
	h.Timer("temporal_activity_execution_latency").Record(300 * time.Millisecond)
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{
		`mailmove_messages_copied{batch="wave1",namespace="default"} 42`,
		`mailmove_messages_copied{batch="wave2",namespace="default"} 5`,
		`mailmove_failures{batch="wave1",namespace="default",reason="LogonFailed"} 1`,
		`temporal_request{namespace="default"} 3`,
		`temporal_request{namespace="default",operation="Poll"} 4`,
		`temporal_worker_task_slots_available{namespace="default"} 7`,
		`temporal_activity_execution_latency_seconds_bucket{namespace="default",le="0.5"} 1`,
		`temporal_activity_execution_latency_seconds_count{namespace="default"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s:\n%s", want, body)
		}
	}
}
