package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mailmove/mailmove/worker"
)

// rootWithWorker is mailmove's root whose worker command records its
// options instead of running.
func rootWithWorker(f *factory, runF func(*worker.Options) error) *cobra.Command {
	root := newCmdRoot(f)
	for _, c := range root.Commands() {
		if c.Name() == "worker" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newCmdWorker(f, runF))
	return root
}

func TestWorkerTakesTheRootsConnectionFlags(t *testing.T) {
	f, _ := testFactory(t, nil)
	var got *worker.Options
	root := rootWithWorker(f, func(o *worker.Options) error { got = o; return nil })
	if err := execute(root, "worker", "--address", "t:7233", "--namespace", "ns", "--secret-key-file", "/k", "--max-concurrent-activities", "8", "--max-connections-per-server", "2"); err != nil {
		t.Fatal(err)
	}
	if got.Address != "t:7233" || got.Namespace != "ns" || got.SecretKeyFile != "/k" || got.MaxConcurrentActivities != 8 || got.MaxConnectionsPerServer != 2 {
		t.Fatalf("worker options = %+v", got)
	}
}

func TestWorkerRejectsNegativeSizes(t *testing.T) {
	for _, flag := range []string{"--max-concurrent-activities", "--max-connections-per-server", "--activities-per-second"} {
		f, _ := testFactory(t, nil)
		root := rootWithWorker(f, func(*worker.Options) error { t.Fatalf("ran with %s -1", flag); return nil })
		root.SetArgs([]string{"worker", flag, "-1"})
		root.SetOut(io.Discard)
		err := root.Execute()
		if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), flag+" -1") {
			t.Errorf("worker %s -1 = %v (exit %d), want a usage error naming the flag", flag, err, exitCode(err))
		}
	}
}

// --session-idle: the default keeps sessions 45 s; 0 keeps none (the
// worker's Options say so with a negative value); 2m or more is refused,
// since a session's reader gives up on a silent server after 2 minutes.
func TestWorkerSessionIdle(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
		err  string
	}{
		{nil, 45 * time.Second, ""},
		{[]string{"--session-idle", "0"}, -1, ""},
		{[]string{"--session-idle", "10s"}, 10 * time.Second, ""},
		{[]string{"--session-idle", "2m"}, 0, "--session-idle 2m0s"},
	} {
		f, _ := testFactory(t, nil)
		var got *worker.Options
		root := rootWithWorker(f, func(o *worker.Options) error { got = o; return nil })
		root.SetOut(io.Discard)
		err := execute(root, append([]string{"worker"}, c.args...)...)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) || exitCode(err) != exitUsage {
				t.Errorf("worker %v = %v; want a usage error naming %q", c.args, err, c.err)
			}
		case err != nil || got.SessionIdle != c.want:
			t.Errorf("worker %v = %v, SessionIdle %v; want %v", c.args, err, got, c.want)
		}
	}
}

// The worker command and mailmove-worker are one definition: the worker
// flags, plus the root's connection flags.
func TestWorkerFlags(t *testing.T) {
	f, _ := testFactory(t, nil)
	root := newCmdRoot(f)
	cmd, _, err := root.Find([]string{"worker"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	cmd.InheritedFlags().VisitAll(func(fl *pflag.Flag) { names = append(names, fl.Name) })
	cmd.LocalFlags().VisitAll(func(fl *pflag.Flag) { names = append(names, fl.Name) })
	slices.Sort(names)
	want := []string{"activities-per-second", "address", "api-key", "config-file", "max-concurrent-activities", "max-connections-per-server", "metrics-address",
		"namespace", "profile", "secret-key-file", "session-idle", "tls", "tls-ca-path", "tls-cert-path", "tls-key-path", "tls-server-name"}
	if !slices.Equal(names, want) {
		t.Fatalf("worker flags = %q, want %q", names, want)
	}
}
