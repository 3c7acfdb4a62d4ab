package integration

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/tests/testbed"
	"github.com/mailmove/mailmove/workflows"
)

func TestFolderRulesAndFilters(t *testing.T) {
	accs := addAccounts(t, 1100, 200, "ruled")
	a := accs[0]
	csv := writeCSV(t, accs, func(a account) string { return a.password })
	rules := []string{"--exclude-folder", "Junk", "--exclude-folder", "Archive/*", "--rename-folder", "Projets=Projects FR", "--max-message-size", "100KB"}

	// --dry-run shows the plan and copies nothing.
	args := append([]string{"batch", "start", "--name", "ruled", "--csv", csv, "--source", env.source.Addr(), "--target", env.target.Addr(),
		"--source-security", "none", "--target-security", "none", "--dry-run", "--secret-key-file", env.keyFile,
		"--address", env.temporal.Addr}, rules...) // the workers plan the dry run: it needs Temporal
	out, err := exec.Command(env.mailmove, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("--dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"Archive/2024/Q1 Reports", "(excluded)", "Projects FR", "Sent Items (exists) \\Sent"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("--dry-run output lacks %q:\n%s", want, out)
		}
	}
	if n, _ := countTarget(a); n != 0 {
		t.Fatalf("--dry-run copied %d messages", n)
	}

	startBatch(t, "default", "ruled", csv, rules...)
	m := onlyMove(t, waitTerminal(t, "default", "ruled", 3*time.Minute))

	src, tgt := snapshots(t, env.source.Addr(), env.target.Addr(), a)
	mapping := func(name string) string {
		switch {
		case name == "Junk", name == "Archive" || strings.HasPrefix(name, "Archive/"):
			return ""
		case name == "Projets" || strings.HasPrefix(name, "Projets/"):
			return "Projects FR" + strings.TrimPrefix(name, "Projets")
		}
		return testbed.OutlookName(name)
	}
	large := 0
	for name, msgs := range src {
		if mapping(name) == "" {
			continue
		}
		for _, msg := range msgs {
			if msg.Size > 100<<10 {
				large++
			}
		}
	}
	diff := testbed.Diff(src, tgt, mapping)
	for _, line := range diff {
		if !strings.Contains(line, "missing message") {
			t.Fatalf("unexpected difference: %s", line)
		}
	}
	if len(diff) != large || m.Filtered != large || large == 0 {
		t.Fatalf("%d messages missing on the target, %d filtered by the move; want the %d source messages above 100 KB", len(diff), m.Filtered, large)
	}
	// The target's own special folders (Archive, Junk Email) exist there
	// from the start; the rules must leave them empty.
	for name, msgs := range tgt {
		if (strings.HasPrefix(name, "Archive") || name == "Junk Email" || strings.HasPrefix(name, "Projets")) && len(msgs) > 0 {
			t.Fatalf("target folder %q has %d messages, but the rules exclude or rename its source", name, len(msgs))
		}
	}
}

func TestTargetPrefixAndSubscriptions(t *testing.T) {
	accs := addAccounts(t, 1200, 60, "prefixed")
	a := accs[0]
	startBatch(t, "default", "prefixed", writeCSV(t, accs, func(a account) string { return a.password }), "--target-prefix", "Migrated")
	if m := waitTerminal(t, "default", "prefixed", 3*time.Minute).Moves[0]; m.Status != workflows.StatusCompleted {
		t.Fatalf("%s/%s %q", m.Status, m.StatusDetail, m.Reason)
	}
	src, tgt := snapshots(t, env.source.Addr(), env.target.Addr(), a)
	if d := testbed.Diff(src, tgt, func(name string) string { return "Migrated/" + name }); len(d) > 0 {
		t.Fatalf("with --target-prefix Migrated:\n%s", strings.Join(d, "\n"))
	}
	srcSubs, err := testbed.Subscriptions(env.source.Addr(), a.user, a.password)
	if err != nil {
		t.Fatal(err)
	}
	tgtSubs, err := testbed.Subscriptions(env.target.Addr(), a.user, a.password)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcSubs {
		if !slices.Contains(tgtSubs, "Migrated/"+s) {
			t.Errorf("source subscription %q is not subscribed on the target as %q (target subscriptions: %v)", s, "Migrated/"+s, tgtSubs)
		}
	}
}
