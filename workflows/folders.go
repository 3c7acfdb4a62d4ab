package workflows

import (
	"cmp"
	"slices"
	"strings"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"go.temporal.io/sdk/workflow"
)

// plan runs Connect: both sides' folders, mapped by the batch's rules.
func (m *move) plan(ctx workflow.Context) (activities.ConnectResult, error) {
	var res activities.ConnectResult
	in := func() interface{} {
		return activities.ConnectInput{Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, Rules: m.settings.Rules}
	}
	if err := m.call(ctx, shortOptions(ctx, m.settings), a.Connect, in, &res, nil); err != nil {
		return res, err
	}
	m.state.FoldersExcluded = res.Excluded
	return res, nil
}

func (m *move) connect(ctx workflow.Context) error {
	res, err := m.plan(ctx)
	if err != nil {
		return err
	}
	// A move started before profiles, whose Connect ran on a newer
	// worker, keeps none: its history has no budget waits to replay.
	src, tgt := cmp.Or(m.settings.SourceProfile, res.SourceProfile), cmp.Or(m.settings.TargetProfile, res.TargetProfile)
	if (src != "" || tgt != "") && workflow.GetVersion(ctx, "provider-profiles", workflow.DefaultVersion, 1) == 1 {
		m.state.SourceProfile, m.state.TargetProfile = src, tgt
	}
	for _, p := range res.Folders {
		m.state.Folders = append(m.state.Folders, FolderState{Plan: p, Cursor: p.Cursor()})
		m.state.MessagesTotal += int(p.Messages)
		m.state.BytesTotal += p.Bytes
	}
	return nil
}

func (m *move) createFolders(ctx workflow.Context) error {
	in := func() interface{} {
		plans := make([]engine.FolderPlan, len(m.state.Folders))
		for i, f := range m.state.Folders {
			plans[i] = f.Plan
		}
		return activities.CreateFoldersInput{Mailbox: m.in.Mailbox, Target: m.in.Target, Folders: plans}
	}
	if err := m.call(ctx, shortOptions(ctx, m.settings), a.CreateFolders, in, nil, nil); err != nil {
		return err
	}
	m.state.FoldersCreated = true
	return nil
}

// replan lists the source's folders again before an incremental pass: a new
// folder is created and copied, a renamed one is followed (the target folder
// is renamed, its progress kept), a deleted one stays on the target and is
// no longer synced.
func (m *move) replan(ctx workflow.Context) error {
	res, err := m.plan(ctx)
	if err != nil {
		return err
	}
	bySource := make(map[string]int, len(m.state.Folders))
	for i, f := range m.state.Folders {
		if !f.Gone {
			bySource[f.Plan.Source] = i
		}
	}
	// UIDVALIDITY is unique per folder name only: a server that gives
	// several folders one value (a constant, a creation second) tells no
	// rename apart.
	listed := map[uint32]int{}
	for _, p := range res.Folders {
		listed[p.UIDValidity]++
	}
	seen := make(map[int]bool)
	var fresh []engine.FolderPlan
	for _, p := range res.Folders {
		// Moves started before this patch keep matching by name alone
		// (docs/evolving-workflows.md).
		if i, ok := bySource[p.Source]; ok && !(m.renamedAway(i, p, res.Folders, listed) &&
			workflow.GetVersion(ctx, "rename-onto-freed-name", workflow.DefaultVersion, 1) == 1) {
			seen[i] = true
			continue
		}
		fresh = append(fresh, p)
	}
	// A source folder that vanished while one with its UIDVALIDITY appeared
	// was renamed; with two candidates it is ambiguous and treated as a
	// deletion and a new folder.
	vanished := make(map[uint32][]int)
	for i, f := range m.state.Folders {
		if !f.Gone && !seen[i] {
			v := f.Cursor.UIDValidity
			if v == 0 {
				v = f.Plan.UIDValidity
			}
			vanished[v] = append(vanished[v], i)
		}
	}
	// A folder that appears or is renamed on the source never takes the
	// target folder of another: the plan named the folders of one listing
	// apart, not the ones planned in earlier passes.
	taken := make(map[string]bool, len(m.state.Folders))
	for _, f := range m.state.Folders {
		taken[strings.ToLower(f.Plan.Target)] = true
	}
	apart := func(p *engine.FolderPlan, own string) {
		if strings.EqualFold(p.Target, own) {
			return
		}
		if name := engine.UniqueName(p.Target, taken); name != p.Target {
			p.Target = name
			p.Renamed = strings.TrimPrefix(p.Renamed+"; "+engine.CollisionNote, "; ")
		}
	}
	var renames []activities.FolderRename
	var created []engine.FolderPlan
	// Renames first, as CreateFolders does them: a target name a renamed
	// folder gives up is free for a new one ("Projects" renamed to
	// "Projects old", "New" renamed to "Projects").
	var added []engine.FolderPlan
	for _, p := range fresh {
		if idx := vanished[p.UIDValidity]; p.UIDValidity != 0 && len(idx) == 1 && listed[p.UIDValidity] == 1 {
			delete(vanished, p.UIDValidity)
			f := &m.state.Folders[idx[0]]
			apart(&p, f.Plan.Target)
			if f.Plan.Target != p.Target {
				renames = append(renames, activities.FolderRename{From: f.Plan.Target, To: p.Target})
				delete(taken, strings.ToLower(f.Plan.Target))
			}
			f.Plan.Source, f.Plan.Target, f.Plan.Subscribed, f.Plan.Renamed = p.Source, p.Target, p.Subscribed, p.Renamed
			f.Cursor.Source, f.Cursor.Target = p.Source, p.Target
			m.state.FoldersRenamed++
			continue
		}
		added = append(added, p)
	}
	for _, p := range added {
		apart(&p, "")
		m.state.Folders = append(m.state.Folders, FolderState{Plan: p, Cursor: p.Cursor()})
		m.state.MessagesTotal += int(p.Messages)
		m.state.BytesTotal += p.Bytes
		m.state.FoldersAdded++
		created = append(created, p)
	}
	//workflowcheck:ignore every vanished folder is marked: the order is irrelevant
	for _, idx := range vanished {
		for _, i := range idx {
			m.state.Folders[i].Gone = true
			m.state.FoldersDeleted++
		}
	}
	if len(renames) == 0 && len(created) == 0 {
		return nil
	}
	cin := func() interface{} {
		return activities.CreateFoldersInput{Mailbox: m.in.Mailbox, Target: m.in.Target, Renames: renames, Folders: created}
	}
	return m.call(ctx, shortOptions(ctx, m.settings), a.CreateFolders, cin, nil, nil)
}

// renamedAway reports that state folder i, listed again under its name p,
// is not the folder it was: the name now has another UIDVALIDITY, and the
// folder's own turns up under exactly one other name (renamed there, and
// another folder renamed to its name).
func (m *move) renamedAway(i int, p engine.FolderPlan, listing []engine.FolderPlan, listed map[uint32]int) bool {
	f := m.state.Folders[i]
	v := f.Cursor.UIDValidity
	if v == 0 {
		v = f.Plan.UIDValidity
	}
	if v == 0 || p.UIDValidity == 0 || p.UIDValidity == v || listed[v] != 1 {
		return false
	}
	return slices.ContainsFunc(listing, func(o engine.FolderPlan) bool { return o.UIDValidity == v && o.Source != p.Source })
}

// verify compares the folders of both sides once the last pass is done.
func (m *move) verify(ctx workflow.Context) error {
	res, err := m.compare(ctx)
	if err != nil {
		return err
	}
	// A message missing or copied twice is repaired once: the folders that
	// do not add up are synced again from scratch, which finds every copy
	// by identity, copies what is missing and removes extra copies. Moves
	// started before this patch take the old path.
	if res.Missing+res.Duplicated > 0 && workflow.GetVersion(ctx, "verify-repair", workflow.DefaultVersion, 1) == 1 {
		repair := false
		for _, f := range res.Folders {
			// Nearly every message missing, as many other messages on
			// the target: the target keeps no identity this folder's
			// messages can be recognised by, and a repair would double the
			// folder. The verification reports it instead.
			if f.Missing+f.Duplicated == 0 || 2*f.Missing >= f.SourceMessages && f.Other >= f.Missing {
				continue
			}
			i := slices.IndexFunc(m.state.Folders, func(s FolderState) bool { return !s.Gone && s.Plan.Source == f.Source })
			if i >= 0 {
				m.state.Folders[i].Cursor = m.state.Folders[i].Cursor.ForRepair()
				repair = true
			}
		}
		if repair {
			m.state.Repairs++
			if err := m.syncAll(ctx, a.IncrementalSync); err != nil {
				return err
			}
			if res, err = m.compare(ctx); err != nil {
				return err
			}
		}
	}
	m.state.Verify = &res
	return nil
}

// gmailRanking is what Gmail's priority rule ranks a message's labels
// among: the labels of every folder the move copies, those that appeared
// since it started too, so that a copy and its verification agree.
func (m *move) gmailRanking() engine.GmailRanking {
	var plans []engine.FolderPlan
	for _, f := range m.state.Folders {
		if !f.Gone {
			plans = append(plans, f.Plan)
		}
	}
	return engine.GmailRankingOf(plans, m.settings.Rules)
}

// compare runs Verify over the folders still on the source.
func (m *move) compare(ctx workflow.Context) (activities.VerifyResult, error) {
	in := func() interface{} {
		in := activities.VerifyInput{Mailbox: m.in.Mailbox, Source: m.in.Source, Target: m.in.Target, BadItems: m.state.BadItems, Rules: m.settings.Rules,
			Gmail: m.gmailRanking()}
		for _, f := range m.state.Folders {
			// A folder the user deleted during the move has nothing to
			// compare with: its copy is theirs.
			if !f.Gone && !f.Cursor.SourceGone {
				in.Folders = append(in.Folders, f.Plan)
				in.Cursors = append(in.Cursors, f.Cursor)
			}
		}
		return in
	}
	var res activities.VerifyResult
	err := m.call(ctx, shortOptions(ctx, m.settings), a.Verify, in, &res, nil)
	return res, err
}
