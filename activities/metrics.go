package activities

import (
	"context"
	"strings"

	"go.temporal.io/sdk/activity"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/metrics"
)

// batchOf is the batch of the move an activity works for, from its
// workflow ID (workflows.MoveWorkflowID: mailmove/BATCH/MAILBOX); "" for
// a dry run.
func batchOf(ctx context.Context) string {
	id := activity.GetInfo(ctx).WorkflowExecution.ID
	if rest, ok := strings.CutPrefix(id, "mailmove/"); ok {
		if i := strings.LastIndex(rest, "/"); i >= 0 {
			return rest[:i]
		}
	}
	return ""
}

// meter records what a sync attempt did beyond from, where it started:
// messages, bytes and bad items, and its failure by type.
func meter(ctx context.Context, from, res SyncResult, err error) {
	h := activity.GetMetricsHandler(ctx).WithTags(map[string]string{metrics.TagBatch: batchOf(ctx)})
	if n := res.Copied - from.Copied; n > 0 {
		h.Counter(metrics.MessagesCopied).Inc(int64(n))
	}
	if n := res.Bytes - from.Bytes; n > 0 {
		h.Counter(metrics.BytesCopied).Inc(n)
	}
	if n := len(res.BadItems) - len(from.BadItems); n > 0 {
		h.Counter(metrics.BadItems).Inc(int64(n))
	}
	meterFailure(ctx, err)
}

// meterFailure counts a classified failure of an activity by its type.
func meterFailure(ctx context.Context, err error) {
	if err == nil {
		return
	}
	activity.GetMetricsHandler(ctx).WithTags(map[string]string{metrics.TagBatch: batchOf(ctx), metrics.TagReason: string(failure.DetailsOf(err).Type)}).
		Counter(metrics.Failures).Inc(1)
}
