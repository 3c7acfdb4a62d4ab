package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// randomFolders makes a source listing of random paths whose levels are
// chosen to collide: case variants, separators of the other side inside a
// level, wildcards, empty and dot levels, "(2)" names, special uses.
func randomFolders(r *rand.Rand, ns Namespace) []Folder {
	levels := []string{"Work", "work", "WORK", "a.b", "a/b", "a_b", "a*b", "a%b", "a_b (2)", "Work (2)", "", ".", "..", "Sent", "sent", "Sent Items",
		"Archive", "archive", "Trash", "Deleted Items", "INBOX", "Inbox", "Junk", "Drafts", "Ünï", "_"}
	uses := []imap.MailboxAttr{"", "", "", imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrArchive, imap.MailboxAttrJunk, imap.MailboxAttrDrafts}
	seen := map[string]bool{"INBOX": true}
	out := []Folder{{Name: "INBOX", UIDValidity: 1}}
	for n := 3 + r.IntN(12); len(out) < n; {
		depth := 1 + r.IntN(3)
		var parts []string
		for i := 0; i < depth; i++ {
			parts = append(parts, levels[r.IntN(len(levels))])
		}
		name := strings.Join(parts, string(ns.Delim))
		if !strings.EqualFold(name, "INBOX") {
			name = ns.Prefix + name
		}
		if seen[name] || strings.EqualFold(name, "INBOX") || name == ns.Prefix {
			continue
		}
		seen[name] = true
		out = append(out, Folder{Name: name, SpecialUse: uses[r.IntN(len(uses))], UIDValidity: uint32(len(out) + 1)})
	}
	return out
}

func checkPlans(t *testing.T, what string, plans []FolderPlan) map[string]string {
	t.Helper()
	bySource := map[string]string{}
	byTarget := map[string]string{}
	for _, p := range plans {
		k := strings.ToLower(p.Target)
		if prev, ok := byTarget[k]; ok {
			t.Fatalf("%s: %q and %q both go to %q\n%+v", what, prev, p.Source, p.Target, plans)
		}
		byTarget[k] = p.Source
		bySource[p.Source] = p.Target
		if strings.ContainsAny(p.Target, "*%") && p.SpecialUse == "" {
			t.Fatalf("%s: %q goes to %q, a name with a wildcard", what, p.Source, p.Target)
		}
	}
	return bySource
}

// Random source listings, namespaces and rules: no two plans share a
// target, whatever the order the servers list the folders in.
func TestReviewPlanFoldersRandomNeverMergesAndIsStable(t *testing.T) {
	nss := []Namespace{{Delim: '/'}, {Delim: '.'}, {Prefix: "INBOX.", Delim: '.'}, {Prefix: "INBOX/", Delim: '/'}}
	for seed := uint64(0); seed < 3000; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		srcNS, tgtNS := nss[r.IntN(len(nss))], nss[r.IntN(len(nss))]
		src := randomFolders(r, srcNS)
		tgt := randomFolders(r, tgtNS)
		var rules Rules
		if r.IntN(4) == 0 {
			rules.TargetPrefix = []string{"Old", "old", "a.b", "Work"}[r.IntN(4)]
		}
		if r.IntN(3) == 0 {
			rules.Renames = map[string]string{}
			for i := 0; i < 1+r.IntN(2); i++ {
				from := translateName(srcNS.local(src[r.IntN(len(src))].Name), srcNS.Delim, '/')
				rules.Renames[from] = translateName(srcNS.local(src[r.IntN(len(src))].Name), srcNS.Delim, '/')
			}
		}
		what := fmt.Sprintf("seed %d (%+v → %+v, rules %+v)", seed, srcNS, tgtNS, rules)
		plans, _ := PlanFolders(src, srcNS, tgt, tgtNS, rules)
		want := checkPlans(t, what, plans)
		// Which of two folders of one use is merged into the target's
		// follows the listing (TestReviewPlanFoldersSpecialUseFollowsListingOrder).
		if sharedUse(src, srcNS) || sharedUse(tgt, tgtNS) {
			continue
		}
		for k := 0; k < 3; k++ {
			shuffled := slices.Clone(src)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			tshuffled := slices.Clone(tgt)
			r.Shuffle(len(tshuffled), func(i, j int) { tshuffled[i], tshuffled[j] = tshuffled[j], tshuffled[i] })
			again, _ := PlanFolders(shuffled, srcNS, tshuffled, tgtNS, rules)
			if got := checkPlans(t, what, again); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: listing order changes the plan:\n%v\n%v\nsource %v", what, want, got, src)
			}
		}
	}
}

func sharedUse(fs []Folder, ns Namespace) bool {
	seen := map[imap.MailboxAttr]bool{}
	for _, f := range fs {
		if u := specialUse(ns.local(f.Name), ns.Delim, f.SpecialUse); u != "" {
			if seen[u] {
				return true
			}
			seen[u] = true
		}
	}
	return false
}

// Two source folders of one use, as an account used by two mail clients
// has ("Sent" and "Sent Messages"): which one is merged into the target's
// "Sent Items" and which keeps its name depends on the order the source
// lists them in, unlike the other renames.
func TestReviewPlanFoldersSpecialUseFollowsListingOrder(t *testing.T) {
	ns := Namespace{Delim: '/'}
	a := []Folder{{Name: "INBOX"}, {Name: "Sent", SpecialUse: imap.MailboxAttrSent}, {Name: "Sent Messages"}}
	b := []Folder{a[0], a[2], a[1]}
	tgt := []Folder{{Name: "INBOX"}, {Name: "Sent Items", SpecialUse: imap.MailboxAttrSent}}
	pa, _ := PlanFolders(a, ns, tgt, ns, Rules{})
	pb, _ := PlanFolders(b, ns, tgt, ns, Rules{})
	if fmt.Sprint(checkPlans(t, "a", pa)) != fmt.Sprint(checkPlans(t, "b", pb)) {
		t.Errorf("listing order changes the plan: %v / %v", checkPlans(t, "a", pa), checkPlans(t, "b", pb))
	}
}
