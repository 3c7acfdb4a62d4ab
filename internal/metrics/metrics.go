// Package metrics names mailmove's metrics. Activities and workflows
// record them through the Temporal SDK's metrics handler, which the worker
// serves to Prometheus with the SDK's own (worker/metrics.go;
// docs/metrics.md lists them).
package metrics

// Names of mailmove's own metrics. Each carries a batch label; failures
// and waits also a reason (a failure type such as LogonFailed, or a wait
// such as StalledDueToTarget_Unavailable).
const (
	MessagesCopied = "mailmove_messages_copied"
	BytesCopied    = "mailmove_bytes_copied"
	BadItems       = "mailmove_bad_items"
	Failures       = "mailmove_failures"
	Waits          = "mailmove_waits"
	WaitSeconds    = "mailmove_wait_seconds"
	MovesEnded     = "mailmove_moves_ended"
)

// Tag names of mailmove's metrics.
const (
	TagBatch  = "batch"
	TagReason = "reason"
	TagStatus = "status"
)
