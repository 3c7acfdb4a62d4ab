package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailmove/mailmove/tests/temporaltest"
	"github.com/mailmove/mailmove/worker"
)

// A namespace without mailmove's search attributes is refused by a worker
// with the commands that fix it, and `dev-server` fixes it by itself.
func TestSearchAttributesAreCheckedAndRegistered(t *testing.T) {
	ctx := context.Background()
	c, err := client.Dial(client.Options{HostPort: env.temporal.Addr, Logger: temporaltest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: "bare", WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err = worker.EnsureSearchAttributes(ctx, c, "bare", false)
		if err != nil && strings.Contains(err.Error(), "temporal operator search-attribute create --namespace bare --name MailmoveStatusDetail") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EnsureSearchAttributes(bare) = %v, want the commands that register the missing attributes", err)
		}
		time.Sleep(500 * time.Millisecond) // the new namespace reaches the server's cache
	}
	if err := worker.EnsureSearchAttributes(ctx, c, "bare", true); err != nil {
		t.Fatalf("EnsureSearchAttributes(create) = %v", err)
	}
	if err := worker.EnsureSearchAttributes(ctx, c, "bare", false); err != nil {
		t.Fatalf("after registering: %v", err)
	}
}
