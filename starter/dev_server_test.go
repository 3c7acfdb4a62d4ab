package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"

	"github.com/mailmove/mailmove/workflows"
)

func TestDevServerArgs(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *devServerOptions
	cmd := newCmdDevServer(f, func(o *devServerOptions) error { got = o; return nil })
	if err := execute(cmd, "--port", "7300", "--ui-port", "8300", "--db-filename", "x/t.db", "--temporal-bin", "/opt/temporal"); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(devServerArgs(got), " ")
	for _, want := range []string{"server start-dev --ip 127.0.0.1 --port 7300 --ui-port 8300 --db-filename x/t.db", "--search-attribute MailmoveBatch=Keyword"} {
		if !strings.Contains(args, want) || got.TemporalBin != "/opt/temporal" {
			t.Errorf("dev server args %q lack %q (bin %s)", args, want, got.TemporalBin)
		}
	}
}

// fakeOperator is a server's operator service that has the search
// attributes have and records those added.
type fakeOperator struct {
	operatorservice.OperatorServiceClient
	have  []string
	mu    sync.Mutex
	added []string
	done  chan struct{}
}

func (o *fakeOperator) ListSearchAttributes(context.Context, *operatorservice.ListSearchAttributesRequest, ...grpc.CallOption) (*operatorservice.ListSearchAttributesResponse, error) {
	custom := map[string]enums.IndexedValueType{}
	for _, n := range o.have {
		custom[n] = enums.INDEXED_VALUE_TYPE_KEYWORD
	}
	return &operatorservice.ListSearchAttributesResponse{CustomAttributes: custom}, nil
}

func (o *fakeOperator) AddSearchAttributes(_ context.Context, req *operatorservice.AddSearchAttributesRequest, _ ...grpc.CallOption) (*operatorservice.AddSearchAttributesResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for n := range req.GetSearchAttributes() {
		o.added = append(o.added, n)
	}
	sort.Strings(o.added)
	close(o.done)
	return &operatorservice.AddSearchAttributesResponse{}, nil
}

type operatorClient struct {
	*fakeClient
	op *fakeOperator
}

func (c operatorClient) OperatorService() operatorservice.OperatorServiceClient { return c.op }

func TestDevServerRunsTemporalAndRegistersTheMissingSearchAttributes(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "temporal")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" > \"$0.args\"\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	op := &fakeOperator{have: []string{"MailmoveBatch", "MailmoveStatus"}, done: make(chan struct{})}
	var dialed string
	opts := &devServerOptions{
		Dial: func(hostPort string) (client.Client, error) {
			dialed = hostPort
			return operatorClient{newFakeClient(), op}, nil
		},
		Out:         &strings.Builder{},
		ErrOut:      &strings.Builder{},
		TemporalBin: bin, DBFile: filepath.Join(dir, "state", "t.db"), IP: "127.0.0.1", Port: 7300, UIPort: 8300,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- devServerRun(ctx, opts) }()
	select {
	case <-op.done:
	case <-time.After(10 * time.Second):
		t.Fatal("search attributes not registered")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if args, _ := os.ReadFile(bin + ".args"); len(args) > 0 || time.Now().After(deadline) {
			break
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("dev server did not stop with its context")
	}
	if dialed != "127.0.0.1:7300" || strings.Join(op.added, ",") != "MailmoveMailbox,MailmoveStatusDetail" {
		t.Fatalf("dialed %s, added %q; want the two missing attributes on the dev server", dialed, op.added)
	}
	args, _ := os.ReadFile(bin + ".args")
	if !strings.Contains(string(args), "--port 7300") || strings.Count(string(args), "--search-attribute") != len(workflows.SearchAttributes) {
		t.Fatalf("temporal ran with %q", args)
	}
}
