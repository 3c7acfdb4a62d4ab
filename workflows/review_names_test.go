package workflows

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
)

// folderSim runs a manual-complete move over a source whose folders are
// listings[k] at the k-th Connect (the last one from then on), planned by
// engine.PlanFolders against a simulated target that follows CreateFolders.
// It returns, for each target folder (case-folded), the source folders
// (by UIDVALIDITY, as the engine resets a cursor whose folder changed it)
// whose messages a sync call put there.
func folderSim(t *testing.T, listings [][]engine.Folder) map[string]map[uint32]bool {
	t.Helper()
	env := newEnv(t)
	ns := engine.Namespace{Delim: '/'}
	target := map[string]string{"inbox": "INBOX"} // case-folded → name
	var current []engine.Folder
	connects := 0
	env.OnActivity(a.Connect, mock.Anything, mock.Anything).Return(func(context.Context, activities.ConnectInput) (activities.ConnectResult, error) {
		current = listings[min(connects, len(listings)-1)]
		connects++
		var tgt []engine.Folder
		for _, n := range target {
			tgt = append(tgt, engine.Folder{Name: n})
		}
		slices.SortFunc(tgt, func(a, b engine.Folder) int { return strings.Compare(a.Name, b.Name) })
		plans, _ := engine.PlanFolders(current, ns, tgt, ns, engine.Rules{})
		return activities.ConnectResult{Folders: plans}, nil
	})
	owners := map[string]map[uint32]bool{}
	env.OnActivity(a.CreateFolders, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateFoldersInput) error {
		for _, r := range in.Renames {
			if _, taken := target[strings.ToLower(r.To)]; taken {
				continue // RenameFolder: a name taken is no error
			}
			delete(target, strings.ToLower(r.From))
			target[strings.ToLower(r.To)] = r.To
			owners[strings.ToLower(r.To)], owners[strings.ToLower(r.From)] = owners[strings.ToLower(r.From)], nil
		}
		for _, p := range in.Folders {
			if _, ok := target[strings.ToLower(p.Target)]; !ok {
				target[strings.ToLower(p.Target)] = p.Target
			}
		}
		return nil
	})
	sync := func(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
		for _, c := range in.Cursors {
			i := slices.IndexFunc(current, func(f engine.Folder) bool { return f.Name == c.Source })
			if i < 0 {
				continue // gone: nothing copied
			}
			k := strings.ToLower(c.Target)
			if owners[k] == nil {
				owners[k] = map[uint32]bool{}
			}
			owners[k][current[i].UIDValidity] = true
		}
		return syncAllDone(ctx, in)
	}
	env.OnActivity(a.InitialSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.IncrementalSync, mock.Anything, mock.Anything).Return(sync)
	env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil)
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateComplete, "c", &testsuite.TestUpdateCallback{OnReject: func(err error) { t.Errorf("complete rejected: %v", err) },
			OnAccept: func() {}, OnComplete: func(interface{}, error) {}})
	}, time.Duration(len(listings))*time.Hour+time.Minute)
	env.ExecuteWorkflow(MailboxMove, testInput(Settings{Complete: CompleteManual, IncrementalInterval: time.Hour, ConnectionsPerMove: 1}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	return owners
}

func merged(owners map[string]map[uint32]bool) string {
	var out []string
	for tgt, o := range owners {
		if len(o) > 1 {
			out = append(out, fmt.Sprintf("%s ← %v", tgt, o))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// The user renames "Projects" to "Projects old", then "New" to
// "Projects", between two passes. "Projects" is still listed, so the
// replan sees no rename: it keeps the old Projects' target (and its
// cursor, whose UIDVALIDITY no longer matches, so the engine copies the
// folder again from the start) for what was "New", and creates a new
// folder for "Projects old". Target "Projects" then holds both source
// folders' messages, and Projects' messages are copied a second time.
func TestReviewRenameOntoAFreedNameMergesTwoFolders(t *testing.T) {
	first := []engine.Folder{{Name: "INBOX", UIDValidity: 1}, {Name: "Projects", UIDValidity: 2}, {Name: "New", UIDValidity: 3}}
	later := []engine.Folder{{Name: "INBOX", UIDValidity: 1}, {Name: "Projects", UIDValidity: 3}, {Name: "Projects old", UIDValidity: 2}}
	if m := merged(folderSim(t, [][]engine.Folder{first, later})); m != "" {
		t.Errorf("target folders holding two source folders' messages: %s", m)
	}
}

// Random evolutions of a source (new folders colliding with planned
// names by case, separators and wildcards, renames to fresh names,
// deletions) over several passes: no target folder ever receives the
// messages of two source folders. Renames onto a name another folder had
// are left out (TestReviewRenameOntoAFreedNameMergesTwoFolders).
func TestReviewRandomFolderChangesNeverMerge(t *testing.T) {
	names := []string{"Work", "work", "WORK", "a*b", "a%b", "a_b", "a_b (2)", "Work (2)", "x/y", "x//y", "Sent", "sent", "Archive", "Trash", "Deleted Items", "Ünï", "_"}
	for seed := uint64(0); seed < 60; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		next := uint32(2)
		used := map[string]bool{}
		listing := []engine.Folder{{Name: "INBOX", UIDValidity: 1}}
		fresh := func() string {
			for {
				n := names[r.IntN(len(names))]
				if r.IntN(3) == 0 {
					n += "/" + names[r.IntN(len(names))]
				}
				if !used[n] {
					used[n] = true
					return n
				}
			}
		}
		var listings [][]engine.Folder
		for pass := 0; pass < 4; pass++ {
			listing = slices.Clone(listing)
			for k := r.IntN(4); k > 0; k-- {
				switch i := 1 + r.IntN(len(listing)); {
				case i == len(listing) || r.IntN(3) == 0: // a new folder
					listing = append(listing, engine.Folder{Name: fresh(), UIDValidity: next})
					next++
				case r.IntN(2) == 0: // renamed
					listing[i].Name = fresh()
				default: // deleted
					listing = slices.Delete(listing, i, i+1)
				}
			}
			r.Shuffle(len(listing)-1, func(i, j int) { listing[i+1], listing[j+1] = listing[j+1], listing[i+1] })
			listings = append(listings, listing)
		}
		if m := merged(folderSim(t, listings)); m != "" {
			t.Fatalf("seed %d: target folders holding two source folders' messages: %s\nlistings %v", seed, m, listings)
		}
	}
}
