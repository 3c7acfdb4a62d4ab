// Package worker runs a mailmove worker: it polls the task queue and runs
// MailboxMove and Batch workflows and their activities.
package worker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/workflows"
)

// Options configure a worker; NewCommand fills them from its flags.
type Options struct {
	// Connection is how the worker reaches Temporal (address, namespace,
	// TLS, API key, profile) and its SecretKeyFile.
	Connection
	// MaxConcurrentActivities bounds the activities — each holding one source
	// and one target connection — this process runs at once.
	MaxConcurrentActivities int
	// MaxConnectionsPerServer caps this process's connections to each IMAP
	// server (host:port); a copy waits for a free one. 0: no cap.
	MaxConnectionsPerServer int
	// ActivitiesPerSecond caps how fast copies start on the task queue,
	// across all its workers (the server enforces it). 0: no cap.
	ActivitiesPerSecond float64
	// SessionIdle is how long a session of a call that ended well waits
	// for its move's next call on this worker (activities.Sessions): 0,
	// activities.DefaultSessionIdle; negative, none is kept.
	SessionIdle time.Duration
	// MetricsAddress, when set, is the host:port where the worker serves
	// its Prometheus metrics at /metrics (docs/metrics.md).
	MetricsAddress string
	Logger         *zap.Logger
}

// Run connects to Temporal and serves the task queue until ctx ends, then
// stops gracefully: running activities get StopTimeout to checkpoint.
func Run(ctx context.Context, opts Options) error {
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	key, err := secret.Load(opts.SecretKeyFile, false)
	if err != nil {
		return err
	}
	var handler client.MetricsHandler
	if opts.MetricsAddress != "" {
		reg := NewRegistry()
		stop, err := serveMetrics(opts.MetricsAddress, reg)
		if err != nil {
			return err
		}
		defer stop()
		handler = reg.Handler()
		logger.Info("serving metrics", zap.String("url", "http://"+opts.MetricsAddress+"/metrics"))
	}
	c, conn, err := opts.Connection.dial(NewLogger(logger), handler)
	if err != nil {
		return err
	}
	defer c.Close()
	// A dev server just started may still be registering them.
	for i := 0; ; i++ {
		err := EnsureSearchAttributes(ctx, c, conn.Namespace, false)
		if err == nil {
			break
		}
		if i == 20 || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}

	w := sdkworker.New(c, workflows.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize: opts.MaxConcurrentActivities,
		TaskQueueActivitiesPerSecond:       opts.ActivitiesPerSecond,
		WorkerStopTimeout:                  30 * time.Second,
	})
	w.RegisterWorkflow(workflows.MailboxMove)
	w.RegisterWorkflow(workflows.Batch)
	w.RegisterWorkflow(workflows.DryRun)
	w.RegisterWorkflow(workflows.EndpointLimiter)
	endpoints := activities.NewEndpoints(c, logger)
	var sessions *activities.Sessions
	if opts.SessionIdle >= 0 {
		sessions = activities.NewSessions(opts.SessionIdle)
		defer sessions.Close()
		endpoints.OnCrowded(sessions.EvictEndpoint)
	}
	w.RegisterActivity(&activities.Activities{Key: key, Logger: logger, Connections: engine.NewLimiter(opts.MaxConnectionsPerServer),
		Endpoints: endpoints, Client: c, Sessions: sessions})

	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	logger.Info("worker started", zap.String("address", conn.HostPort), zap.String("namespace", conn.Namespace), zap.String("task_queue", workflows.TaskQueue))
	<-ctx.Done()
	logger.Info("worker stopping")
	w.Stop()
	return nil
}

// NewLogger adapts zap to the Temporal SDK's logger interface.
func NewLogger(l *zap.Logger) log.Logger {
	return zapLogger{l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

type zapLogger struct{ s *zap.SugaredLogger }

func (z zapLogger) Debug(msg string, kv ...interface{}) { z.s.Debugw(msg, kv...) }
func (z zapLogger) Info(msg string, kv ...interface{})  { z.s.Infow(msg, kv...) }
func (z zapLogger) Warn(msg string, kv ...interface{})  { z.s.Warnw(msg, kv...) }
func (z zapLogger) Error(msg string, kv ...interface{}) { z.s.Errorw(msg, kv...) }

// With implements log.WithLogger so the SDK's scoped loggers keep their fields.
func (z zapLogger) With(kv ...interface{}) log.Logger { return zapLogger{z.s.With(kv...)} }

// serveMetrics serves reg (and the Go runtime's and process's metrics) at
// http://addr/metrics until stop.
func serveMetrics(addr string, reg *Registry) (stop func(), err error) {
	pr := prometheus.NewRegistry()
	pr.MustRegister(reg, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(pr, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}
