package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mailmove/mailmove/worker"
)

func TestFlagsReachTheWorkerOptions(t *testing.T) {
	var got *worker.Options
	cmd := newRootCmd(func(o *worker.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--address", "t:7233", "--namespace", "ns", "--secret-key-file", "/k", "--max-connections-per-server", "2", "--activities-per-second", "1.5"})
	cmd.SetOut(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Address != "t:7233" || got.Namespace != "ns" || got.SecretKeyFile != "/k" || got.MaxConnectionsPerServer != 2 || got.ActivitiesPerSecond != 1.5 {
		t.Fatalf("options = %+v", got)
	}
}

func TestNegativeSizeIsAFlagError(t *testing.T) {
	cmd := newRootCmd(func(*worker.Options) error { t.Fatal("ran with a negative cap"); return nil })
	flagErr := false
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { flagErr = true; return err })
	cmd.SetArgs([]string{"--max-connections-per-server", "-1"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--max-connections-per-server -1") || !flagErr {
		t.Fatalf("Execute() = %v (flag error %v), want a flag error naming --max-connections-per-server", err, flagErr)
	}
}
