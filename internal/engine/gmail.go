package engine

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/emersion/go-imap/v2"
)

// Gmail shows each label as a folder: a message with three labels is in
// three folders, and in All Mail. Rules.GmailLabels chooses what a copy
// makes of that:
//   - GmailLabelFolders (the default): a copy in the folder of each
//     label, archived mail (no label of its own folder) in the archive;
//   - GmailLabelPriority: one copy, in the folder of the message's first
//     label by Rules.GmailLabelOrder; its other labels become keywords.
//
// Either way All Mail, Starred and Important are not copied as folders.
const (
	GmailLabelFolders  = "folders"
	GmailLabelPriority = "priority"
)

// gmailSystem are the labels Gmail writes with a backslash (X-GM-LABELS),
// by the special use of their folder, and the names an admin may give
// them in GmailLabelOrder.
var gmailSystem = map[imap.MailboxAttr]string{imap.MailboxAttrSent: `\Sent`, imap.MailboxAttrDrafts: `\Draft`,
	imap.MailboxAttrTrash: `\Trash`, imap.MailboxAttrJunk: `\Spam`}

// gmailClass orders the labels no GmailLabelOrder pattern names: deleted
// and spam mail stays where it is, a user's own labels come before the
// places every message has (INBOX, Sent), and drafts last.
var gmailClass = map[string]int{`\trash`: 0, `\spam`: 0, `\inbox`: 2, `\sent`: 3, `\draft`: 4}

// gmailRank is a label's place in the priority rule: the first pattern of
// order that names it (a folder path as the other rules take it, or a
// system label without its backslash: "INBOX", "Sent", "Drafts"), then
// its class, then its name. It depends on nothing but the label and the
// order, so every pass and every folder ranks a message's labels alike.
type gmailRank struct {
	listed, class int
	name          string
}

func rankLabel(label string, order []string) gmailRank {
	lower := strings.ToLower(label)
	r := gmailRank{listed: len(order), class: 1, name: lower}
	if c, ok := gmailClass[lower]; ok {
		r.class = c
	} else if strings.HasPrefix(label, `\`) {
		r.class = 5
	}
	names := []string{strings.TrimPrefix(label, `\`)}
	if lower == `\draft` {
		names = append(names, "Drafts")
	}
	for i, p := range order {
		if slices.ContainsFunc(names, func(n string) bool { return matches(p, n) }) {
			r.listed = i
			break
		}
	}
	return r
}

func (a gmailRank) compare(b gmailRank) int {
	return cmp.Or(cmp.Compare(a.listed, b.listed), cmp.Compare(a.class, b.class), strings.Compare(a.name, b.name))
}

// GmailRanking is what the priority rule needs beyond a folder's cursor:
// the admin's order and the labels of every folder the move copies. A
// label the move does not copy (left out by the rules, hidden from IMAP)
// never takes a message away from a folder that is copied.
type GmailRanking struct {
	Order   []string `json:",omitempty"`
	Planned []string `json:",omitempty"`
	// Targets are the target folders of Planned, one each: where a Gmail
	// target shows a label.
	Targets []string `json:",omitempty"`
}

// home returns the target folder of the best-ranked copied label of a
// message, "" when it has none.
func (g GmailRanking) home(labels []string) (label, folder string) {
	var best gmailRank
	for _, l := range labels {
		i := slices.IndexFunc(g.Planned, func(p string) bool { return strings.EqualFold(p, l) })
		if i < 0 || i >= len(g.Targets) {
			continue
		}
		if r := rankLabel(l, g.Order); folder == "" || r.compare(best) < 0 {
			best, label, folder = r, l, g.Targets[i]
		}
	}
	return label, folder
}

// outranked reports a message of the folder whose label is own that has a
// better-ranked label of another copied folder: its copy goes there.
func (g GmailRanking) outranked(labels []string, own string) bool {
	if own == "" {
		return false
	}
	mine := rankLabel(own, g.Order)
	for _, l := range labels {
		if !strings.EqualFold(l, own) && containsFold(g.Planned, l) && rankLabel(l, g.Order).compare(mine) < 0 {
			return true
		}
	}
	return false
}

// elsewhere reports a Gmail message that the folder of cur does not copy:
// in All Mail, one with a label of a copied or excluded folder
// (Cursor.GmailLabels); under the priority rule or onto a Gmail target,
// one with a better-ranked label.
func (c Cursor) elsewhere(labels []string, g GmailRanking) bool {
	return containsAnyFold(labels, c.GmailLabels) || g.outranked(labels, c.GmailOwn)
}

// notHere reports a Gmail message that the target folder of cur does not
// hold a copy of: one copied elsewhere, unless the target is Gmail, where
// a label's folder shows every message with the label.
func (c Cursor) notHere(labels []string, g GmailRanking) bool {
	return containsAnyFold(labels, c.GmailLabels) || !c.GmailTarget && g.outranked(labels, c.GmailOwn)
}

// ranksHere says the folder is a label's under the priority rule onto a
// target that is not Gmail: its messages with a better-ranked label have
// no copy here.
func (c Cursor) ranksHere() bool { return c.GmailKeywords && c.GmailOwn != "" }

// readsLabels says whether copying the folder needs the messages' labels.
func (c Cursor) readsLabels() bool {
	return len(c.GmailLabels) > 0 || c.GmailKeywords || c.GmailOwn != ""
}

// labelFolders returns, for a message copied into the folder of cur on a
// Gmail target, the target folders of its other copied labels.
func (c Cursor) labelFolders(labels []string, g GmailRanking) []string {
	if !c.GmailTarget || c.GmailOwn == "" {
		return nil
	}
	var out []string
	for i, p := range g.Planned {
		if i < len(g.Targets) && !strings.EqualFold(p, c.GmailOwn) && containsFold(labels, p) {
			out = append(out, g.Targets[i])
		}
	}
	return out
}

// labelFlags returns the keywords that record a message's other labels
// under the priority rule.
func (c Cursor) labelFlags(labels []string) []imap.Flag {
	if !c.GmailKeywords {
		return nil
	}
	var out []imap.Flag
	for _, l := range labels {
		switch strings.ToLower(l) {
		case strings.ToLower(c.GmailOwn), `\starred`, `\draft`:
			// Its own folder, and what \Flagged and \Draft say already.
			continue
		}
		out = append(out, LabelKeyword(l))
	}
	return out
}

// LabelKeyword is the keyword that records a Gmail label: its name without
// a system label's backslash, with what an IMAP atom cannot hold made
// safe: spaces and IMAP's specials become "_", other characters are
// written in modified UTF-7 as mailbox names are ("Büro" → "B&APw-ro"),
// as Thunderbird writes its tags.
func LabelKeyword(label string) imap.Flag {
	var b strings.Builder
	var wide []rune
	flush := func() {
		if len(wide) == 0 {
			return
		}
		u := utf16.Encode(wide)
		raw := make([]byte, 0, 2*len(u))
		for _, c := range u {
			raw = append(raw, byte(c>>8), byte(c))
		}
		b.WriteString("&" + mutf7.EncodeToString(raw) + "-")
		wide = wide[:0]
	}
	for _, r := range strings.TrimPrefix(label, `\`) {
		if r >= 0x80 {
			wide = append(wide, r)
			continue
		}
		flush()
		switch {
		case r == '&':
			b.WriteString("&-")
		case r <= ' ' || r == 0x7f || strings.ContainsRune(`(){%*"\]`, r):
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	flush()
	if b.Len() == 0 {
		return "_"
	}
	return imap.Flag(b.String())
}

var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// gmailLabels gives the plans of a Gmail source what decides where each
// message goes. All Mail's plan gets the labels whose messages do not
// belong in the archive: those of the folders planned (the messages are
// copied there) and of the folders --exclude-folder leaves out (the admin
// does not want them). A message with none of them (archived mail, or
// labelled only with a label hidden from IMAP or not among
// --include-folder's) goes to the archive. Under the priority rule every
// plan records the rule, and a label folder's plan its own label; so does
// every plan onto a Gmail target.
func gmailLabels(plans []FolderPlan, src []Folder, ns Namespace, rules Rules, gmailTarget bool) {
	label := func(f Folder) string {
		local := ns.local(f.Name)
		switch {
		case strings.EqualFold(local, "INBOX"):
			return `\Inbox`
		case gmailSystem[f.SpecialUse] != "":
			return gmailSystem[f.SpecialUse]
		}
		return translateName(local, ns.Delim, '/')
	}
	planned := map[string]bool{}
	for _, p := range plans {
		planned[p.Source] = !p.GmailArchive
	}
	var labels []string
	own := map[string]string{}
	for _, f := range src {
		path := translateName(ns.local(f.Name), ns.Delim, '/')
		if !f.NoSelect && f.View == "" && (planned[f.Name] || matchesAny(rules.Exclude, path)) {
			labels = append(labels, label(f))
			if planned[f.Name] {
				own[f.Name] = label(f)
			}
		}
	}
	slices.Sort(labels)
	priority := rules.GmailLabels == GmailLabelPriority
	for i := range plans {
		p := &plans[i]
		if p.GmailArchive {
			p.GmailLabels = labels
		}
		switch {
		case gmailTarget:
			// Uploaded once, labelled with the rest: a Gmail target shows
			// a message in the folder of each label, whatever the rule.
			p.GmailTarget, p.GmailOwn = true, own[p.Source]
		case priority:
			p.GmailKeywords, p.GmailOwn = true, own[p.Source]
		}
	}
}

// GmailRankingOf returns the ranking of a move's plans (nil where the
// priority rule is not in use): the labels of every folder it copies.
func GmailRankingOf(plans []FolderPlan, rules Rules) GmailRanking {
	g := GmailRanking{Order: rules.GmailLabelOrder}
	for _, p := range plans {
		if p.GmailOwn != "" {
			g.Planned = append(g.Planned, p.GmailOwn)
			g.Targets = append(g.Targets, p.Target)
		}
	}
	return g
}

// label gives the copies this call confirmed on a Gmail target their
// other labels: one UID COPY per label's folder, from the folder they were
// appended to, which Gmail takes as adding the label, not as a new
// message.
func (c *copier) label(ctx context.Context) error {
	if c.labelLater {
		return nil
	}
	n, err := labelCopies(ctx, c.tgt, c.takeLabels(), c.opts.fence())
	c.mu.Lock()
	c.st.Labelled += n
	c.mu.Unlock()
	return err
}

// takeLabels returns the confirmed copies still to label, and forgets them.
func (c *copier) takeLabels() []labelCopy {
	c.mu.Lock()
	defer c.mu.Unlock()
	todo := c.labels
	c.labels = nil
	return todo
}

// labelCopies copies the given messages of the target folder selected in
// tgt into the folders of their other labels.
func labelCopies(ctx context.Context, tgt *Session, todo []labelCopy, fence func() error) (int, error) {
	byFolder := map[string]*imap.UIDSet{}
	for _, l := range todo {
		for _, f := range l.to {
			if byFolder[f] == nil {
				byFolder[f] = &imap.UIDSet{}
			}
			byFolder[f].AddNum(l.uid)
		}
	}
	return copyInto(ctx, tgt, byFolder, fence)
}

// copyInto copies the given messages of the selected target folder into
// other folders, in name order. A folder gone from the target (the user
// deleted it) is skipped: its pass makes it again and its final pass
// labels what is missing.
func copyInto(ctx context.Context, tgt *Session, byFolder map[string]*imap.UIDSet, fence func() error) (int, error) {
	n := 0
	for _, f := range slices.Sorted(maps.Keys(byFolder)) {
		if err := fence(); err != nil {
			return n, err
		}
		_, err := tgt.Client.Copy(*byFolder[f], f).Wait()
		if err = tgt.classify("label messages with "+f, ctxErr(ctx, err)); isNotFound(err) {
			continue
		}
		if err != nil {
			return n, err
		}
		c, _ := setSize(*byFolder[f])
		n += int(c)
	}
	return n, nil
}

// labelMissing, at the final pass of a label's folder on a Gmail target,
// gives the label to the copies that lack it: messages of the source
// folder that the copy passed without storing (their best label is
// another's) and that the target folder does not show, because the
// attempt that uploaded them died before it labelled them. Each is found
// in its home folder on the target by identity and copied here. The
// target folder is selected again before it returns.
func labelMissing(ctx context.Context, src, tgt *Session, cur Cursor, all []imap.UID, g GmailRanking, fence func() error) (int, error) {
	var missing []imap.UID
	for _, u := range all {
		if _, ok := cur.Map.Lookup(u); u <= cur.LastUID && !ok {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	bufs, err := src.Client.Fetch(imap.UIDSetNum(missing...), &imap.FetchOptions{UID: true, GmailLabels: true}).Collect()
	if err != nil {
		return 0, src.classify("fetch labels of "+cur.Source, ctxErr(ctx, err))
	}
	byHome := map[string][]imap.UID{}
	for _, b := range bufs {
		if label, folder := g.home(b.GmailLabels); folder != "" && !strings.EqualFold(label, cur.GmailOwn) {
			byHome[folder] = append(byHome[folder], b.UID)
		}
	}
	n := 0
	for _, home := range slices.Sorted(maps.Keys(byHome)) {
		k, err := labelFrom(ctx, src, tgt, cur, home, byHome[home], fence)
		n += k
		if err != nil {
			return n, err
		}
	}
	if len(byHome) > 0 {
		sel, err := tgt.Client.Select(cur.Target, nil).Wait()
		if err = tgt.classify("select "+cur.Target, ctxErr(ctx, err)); err != nil {
			return n, err
		}
		if sel.UIDValidity != cur.TargetUIDValidity {
			return n, tgt.classify("select "+cur.Target, fmt.Errorf("the folder's UIDVALIDITY changed from %d to %d; trying again", cur.TargetUIDValidity, sel.UIDValidity))
		}
	}
	return n, nil
}

// labelFrom finds the copies of the given source messages in the target
// folder home, by identity, and copies them into the folder of cur.
func labelFrom(ctx context.Context, src, tgt *Session, cur Cursor, home string, uids []imap.UID, fence func() error) (int, error) {
	want := map[identity]int{}
	var dates []int64
	err := eachIdentity(ctx, src, cur.Source, uids, func(m identified) {
		want[m.key()]++
		dates = append(dates, m.date.Unix())
	})
	if err != nil || len(want) == 0 {
		return 0, err
	}
	if _, err := tgt.Client.Select(home, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		if err = tgt.classify("select "+home, ctxErr(ctx, err)); isNotFound(err) {
			return 0, nil
		}
		return 0, err
	}
	candidates, err := sourceCandidates(ctx, tgt, home, dates)
	if err != nil {
		return 0, err
	}
	var found imap.UIDSet
	err = eachIdentity(ctx, tgt, home, candidates, func(m identified) {
		k := m.keyAmong(func(id identity) bool { return want[id] > 0 })
		if want[k] > 0 {
			want[k]--
			found.AddNum(m.uid)
		}
	})
	if err != nil || len(found) == 0 {
		return 0, err
	}
	return copyInto(ctx, tgt, map[string]*imap.UIDSet{cur.Target: &found}, fence)
}

// gmailNotHere returns the messages among uids whose copies the target
// folder of cur does not hold (Cursor.notHere).
func gmailNotHere(ctx context.Context, s *Session, uids []imap.UID, cur Cursor, g GmailRanking) (map[imap.UID]bool, error) {
	bufs, err := s.Client.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, GmailLabels: true}).Collect()
	if err != nil {
		return nil, s.classify("fetch labels", ctxErr(ctx, err))
	}
	out := make(map[imap.UID]bool, len(bufs))
	for _, b := range bufs {
		if cur.notHere(b.GmailLabels, g) {
			out[b.UID] = true
		}
	}
	return out, nil
}

// containsAnyFold reports whether one of labels is in set; Gmail compares
// label names without case.
func containsAnyFold(labels, set []string) bool {
	return slices.ContainsFunc(labels, func(l string) bool { return containsFold(set, l) })
}

func containsFold(set []string, s string) bool {
	return slices.ContainsFunc(set, func(c string) bool { return strings.EqualFold(c, s) })
}

// validGmailRule checks Rules.GmailLabels.
func validGmailRule(rule string) error {
	switch rule {
	case "", GmailLabelFolders, GmailLabelPriority:
		return nil
	}
	return fmt.Errorf("the Gmail label rule %q is not one of %s or %s", rule, GmailLabelFolders, GmailLabelPriority)
}
