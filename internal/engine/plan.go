package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Folder is one mailbox folder as a server lists it.
type Folder struct {
	Name       string // UTF-8, the server's own separator
	SpecialUse imap.MailboxAttr
	Subscribed bool
	NoSelect   bool
	// View is \All, \Flagged or \Important: a folder that shows
	// messages kept in other folders (Gmail's All Mail, Starred and
	// Important).
	View     imap.MailboxAttr
	Messages uint32
	Bytes    int64 // 0 when the server lacks STATUS=SIZE
	// UIDValidity survives a rename on common servers, which is how a
	// renamed source folder is told from a deleted one and a new one.
	UIDValidity uint32
}

// FolderPlan says where one source folder goes on the target.
type FolderPlan struct {
	Source     string
	Target     string
	SpecialUse imap.MailboxAttr `json:",omitempty"`
	Subscribed bool             `json:",omitempty"`
	// Exists is true when the target already had the folder.
	Exists      bool
	Messages    uint32
	Bytes       int64
	UIDValidity uint32 // the source folder's
	// GmailArchive: the source is Gmail's All Mail; only its messages
	// with none of GmailLabels, the labels whose folders the move copies,
	// are copied (archived mail, and mail whose only labels are left out
	// or hidden from IMAP); the others are in their label's folder.
	GmailArchive bool     `json:",omitempty"`
	GmailLabels  []string `json:",omitempty"`
	// GmailKeywords, GmailOwn, GmailTarget: the priority rule and a
	// Gmail target, as in Cursor.
	GmailKeywords bool   `json:",omitempty"`
	GmailOwn      string `json:",omitempty"`
	GmailTarget   bool   `json:",omitempty"`
	// Renamed says why Target is not the source folder's own path: a
	// character the target cannot hold in a name, or another source folder
	// that already has the name (names are compared without case, as some
	// servers fold it). Empty when the name was kept (or the rules chose it).
	Renamed string `json:",omitempty"`
}

// Cursor is the cursor a plan's folder starts from.
func (p FolderPlan) Cursor() Cursor {
	return Cursor{Source: p.Source, Target: p.Target, GmailArchive: p.GmailArchive, GmailLabels: p.GmailLabels,
		GmailKeywords: p.GmailKeywords, GmailOwn: p.GmailOwn, GmailTarget: p.GmailTarget}
}

// wellKnown names special folders on servers that do not announce
// SPECIAL-USE, in the spellings of common servers and clients.
var wellKnown = map[string]imap.MailboxAttr{
	"sent": imap.MailboxAttrSent, "sent items": imap.MailboxAttrSent, "sent messages": imap.MailboxAttrSent, "sent mail": imap.MailboxAttrSent,
	"drafts": imap.MailboxAttrDrafts, "draft": imap.MailboxAttrDrafts,
	"trash": imap.MailboxAttrTrash, "deleted items": imap.MailboxAttrTrash, "deleted messages": imap.MailboxAttrTrash, "bin": imap.MailboxAttrTrash,
	"junk": imap.MailboxAttrJunk, "spam": imap.MailboxAttrJunk, "junk e-mail": imap.MailboxAttrJunk, "junk email": imap.MailboxAttrJunk,
	"archive": imap.MailboxAttrArchive, "archives": imap.MailboxAttrArchive,
}

// specialUse returns the folder's special use, from its attribute or, for
// top-level folders only, from its well-known name.
func specialUse(name string, delim rune, attr imap.MailboxAttr) imap.MailboxAttr {
	if attr != "" {
		return attr
	}
	if delim != 0 && strings.ContainsRune(name, delim) {
		return ""
	}
	return wellKnown[strings.ToLower(name)]
}

// PlanFolders maps every selectable source folder to a target folder:
// INBOX to INBOX, special-use folders to the target's folder of the same use
// whatever its name, and every other folder to the same path with the
// target's hierarchy separator, as the rules amend it. It returns the plans,
// sorted so parents come before their children, and the source folders the
// rules leave out.
func PlanFolders(src []Folder, srcNS Namespace, tgt []Folder, tgtNS Namespace, rules Rules) (plans []FolderPlan, excluded []string) {
	srcDelim, tgtDelim := srcNS.Delim, tgtNS.Delim
	// Whatever order the servers list folders in, the same plan: of
	// several folders of one use, one with the attribute announced wins
	// over a name match, then the first in byte order.
	src, tgt = byUseThenName(src), byUseThenName(tgt)
	tgtByName := make(map[string]Folder, len(tgt))
	tgtByUse := make(map[imap.MailboxAttr]string)
	var tgtAll string // a Gmail target's All Mail
	for _, f := range tgt {
		tgtByName[f.Name] = f
		if tgtNS.Gmail && f.View == imap.MailboxAttrAll && tgtAll == "" {
			tgtAll = f.Name
		}
		if f.NoSelect {
			continue
		}
		if use := specialUse(tgtNS.local(f.Name), tgtDelim, f.SpecialUse); use != "" {
			if _, seen := tgtByUse[use]; !seen {
				tgtByUse[use] = f.Name
			}
		}
	}
	// toTarget turns a "/"-separated path into a target name, and says why
	// it had to change.
	toTarget := func(p string) (string, string) {
		if rules.TargetPrefix != "" {
			p = strings.Trim(rules.TargetPrefix, "/") + "/" + p
		}
		name, why := targetName(p, '/', tgtDelim)
		return tgtNS.Prefix + name, why
	}

	usedSpecial := make(map[imap.MailboxAttr]bool)
	taken := make(map[string]bool)
	for _, f := range src {
		if f.NoSelect {
			continue
		}
		local := srcNS.local(f.Name)
		path := translateName(local, srcDelim, '/')
		// Gmail's Starred and Important show messages kept in other
		// folders (starred ones keep their \Flagged flag).
		if rules.excluded(path) || srcNS.Gmail && (f.View == imap.MailboxAttrFlagged || f.View == attrImportant) {
			excluded = append(excluded, f.Name)
			continue
		}
		if srcNS.Gmail && f.View == imap.MailboxAttrAll {
			// All Mail holds every message; those with no label of their
			// own folder are archived mail, which goes to the archive.
			p := FolderPlan{Source: f.Name, Subscribed: f.Subscribed, Messages: f.Messages, Bytes: f.Bytes, UIDValidity: f.UIDValidity,
				GmailArchive: true, Renamed: "Gmail's All Mail: only the messages without a label of their own folder"}
			switch name, ok := tgtByUse[imap.MailboxAttrArchive]; {
			case tgtAll != "" && rules.TargetPrefix == "":
				// Gmail's archive is All Mail: a message with no label.
				p.Target, p.Renamed = tgtAll, ""
			case ok && !usedSpecial[imap.MailboxAttrArchive] && rules.TargetPrefix == "":
				p.Target = name
			default:
				p.Target, _ = toTarget("Archive")
			}
			if !usedSpecial[imap.MailboxAttrArchive] && rules.TargetPrefix == "" && tgtAll == "" {
				usedSpecial[imap.MailboxAttrArchive] = true
				p.SpecialUse = imap.MailboxAttrArchive
			}
			plans = append(plans, p)
			continue
		}
		p := FolderPlan{Source: f.Name, Subscribed: f.Subscribed, Messages: f.Messages, Bytes: f.Bytes, UIDValidity: f.UIDValidity}
		use := specialUse(local, srcDelim, f.SpecialUse)
		// The same path on the target, in its personal namespace;
		// translated from the source's separator directly, so that a name
		// is kept byte for byte when both servers use the same one.
		directName, directWhy := targetName(local, srcDelim, tgtDelim)
		direct := tgtNS.Prefix + directName
		if rules.TargetPrefix != "" {
			direct, directWhy = toTarget(path)
		}
		renamed, isRenamed := rules.renamed(path)
		switch {
		case isRenamed:
			p.Target, p.Renamed = toTarget(renamed)
		case strings.EqualFold(local, "INBOX") && rules.TargetPrefix == "":
			p.Target = "INBOX"
		case strings.EqualFold(local, "INBOX"):
			p.Target, p.Renamed = toTarget("INBOX")
		case use != "" && !usedSpecial[use] && rules.TargetPrefix == "":
			// Only the first source folder of a use is merged into the
			// target's; a second "Sent" keeps its own name.
			usedSpecial[use] = true
			p.SpecialUse = use
			if name, ok := tgtByUse[use]; ok {
				p.Target = name
			} else {
				p.Target, p.Renamed = direct, directWhy
			}
		default:
			p.Target, p.Renamed = direct, directWhy
		}
		plans = append(plans, p)
	}
	if srcNS.Gmail {
		gmailLabels(plans, src, srcNS, rules, tgtNS.Gmail)
	}
	// Names kept as they are first: a folder renamed for the target yields
	// to one that has the name already ("a.b" becomes "a_b (2)" beside a
	// real "a_b"); among equals, the first source name in byte order keeps
	// it ("Work" before "work"), whatever the order the source lists them.
	order := make([]int, len(plans))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return plans[order[i]].Source < plans[order[j]].Source })
	asIs := make([]bool, len(plans))
	for i, p := range plans {
		asIs[i] = p.Renamed == ""
	}
	for _, kept := range []bool{true, false} {
		for _, i := range order {
			p := &plans[i]
			if asIs[i] != kept {
				continue
			}
			if name := UniqueName(p.Target, taken); name != p.Target {
				p.Target = name
				p.Renamed = strings.TrimPrefix(p.Renamed+"; "+CollisionNote, "; ")
			}
			// A name the target lists only as the parent of other folders
			// (\Noselect, \NonExistent) is still to be created.
			tf, ok := tgtByName[p.Target]
			p.Exists = ok && !tf.NoSelect
			if strings.EqualFold(p.Target, "INBOX") {
				p.Exists = true
			}
		}
	}
	sort.SliceStable(plans, func(i, j int) bool { return plans[i].Target < plans[j].Target })
	return plans, excluded
}

// byUseThenName orders folders with an announced special use first, then
// by name.
func byUseThenName(folders []Folder) []Folder {
	out := slices.Clone(folders)
	slices.SortStableFunc(out, func(a, b Folder) int {
		if (a.SpecialUse != "") != (b.SpecialUse != "") {
			if a.SpecialUse != "" {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// UniqueName returns name, or, when an earlier source folder was planned into
// it already ("Sent" into a target's \Sent "Sent Items" beside a source
// "Sent Items"), "name (2)", "name (3)"…: two source folders never share a
// target folder, whose copies each would take for its own. Target names
// are compared without case, as some servers fold it. taken holds the
// lower-cased names already planned; the result is added to it.
func UniqueName(name string, taken map[string]bool) string {
	out := name
	for n := 2; taken[strings.ToLower(out)]; n++ {
		out = fmt.Sprintf("%s (%d)", name, n)
	}
	taken[strings.ToLower(out)] = true
	return out
}

// Namespace is a server's personal namespace (RFC 2342): the prefix of
// its folder names and their hierarchy separator. INBOX is outside any
// prefix.
type Namespace struct {
	Prefix string
	Delim  rune
	// Gmail: the server shows labels as folders (X-GM-EXT-1), a message
	// with several labels in each of their folders and in All Mail.
	Gmail bool
}

// attrImportant is RFC 8457's \Important, Gmail's Important folder.
const attrImportant imap.MailboxAttr = "\\Important"

// CapGmail is Gmail's extension: labels, X-GM-MSGID.
const CapGmail imap.Cap = "X-GM-EXT-1"

// local is a folder's name without the namespace's prefix.
func (ns Namespace) local(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	if rest, ok := strings.CutPrefix(name, ns.Prefix); ok && rest != "" {
		return rest
	}
	return name
}

// Namespace returns the session's personal namespace.
func (s *Session) Namespace() Namespace {
	return Namespace{Prefix: s.Prefix, Delim: s.Delim, Gmail: s.Caps.Has(CapGmail)}
}

// translateName rewrites a folder path from one hierarchy separator to
// another. A target separator that occurs inside a source name component
// would split it into two levels, so it becomes '_'.
func translateName(name string, from, to rune) string {
	if from == to || from == 0 || to == 0 {
		return name
	}
	parts := strings.Split(name, string(from))
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, string(to), "_")
	}
	return strings.Join(parts, string(to))
}

// targetName is translateName, and why the name had to change beyond the
// separator: a target separator inside a name; IMAP's LIST wildcards '*'
// and '%', which servers refuse in names (RFC 3501 section 5.1); an empty,
// "." or ".." level, which file-based servers cannot store.
func targetName(name string, from, to rune) (string, string) {
	parts := []string{name}
	if from != 0 {
		parts = strings.Split(name, string(from))
	}
	var why []string
	note := func(s string) {
		if !slices.Contains(why, s) {
			why = append(why, s)
		}
	}
	for i, p := range parts {
		if to != 0 && to != from && strings.ContainsRune(p, to) {
			p = strings.ReplaceAll(p, string(to), "_")
			note(fmt.Sprintf("%q separates levels on the target", to))
		}
		if strings.ContainsAny(p, "*%") {
			p = strings.NewReplacer("*", "_", "%", "_").Replace(p)
			note("'*' and '%' are IMAP wildcards")
		}
		if p == "" || p == "." || p == ".." {
			p = strings.Repeat("_", max(len(p), 1))
			note("an empty, \".\" or \"..\" level")
		}
		parts[i] = p
	}
	sep := to
	if sep == 0 {
		sep = from
	}
	if sep == 0 {
		return parts[0], strings.Join(why, "; ")
	}
	return strings.Join(parts, string(sep)), strings.Join(why, "; ")
}

// ListFolders lists every folder of the session's mailbox with its special
// use, subscription and message count.
func (s *Session) ListFolders(ctx context.Context) ([]Folder, error) {
	return s.listFolders(ctx, false)
}

// listFolders is ListFolders, with the shared and other users' folders
// when shared is set.
func (s *Session) listFolders(ctx context.Context, shared bool) ([]Folder, error) {
	opts := &imap.ListOptions{}
	if s.Caps.Has(imap.CapSpecialUse) {
		opts.ReturnSpecialUse = true
	}
	if s.Caps.Has(imap.CapListExtended) {
		opts.ReturnSubscribed = true
	}
	lists, err := s.Client.List("", "*", opts).Collect()
	if err != nil {
		return nil, s.classify("list folders", ctxErr(ctx, err))
	}
	var subscribed map[string]bool
	if !opts.ReturnSubscribed {
		subscribed = make(map[string]bool)
		subs, err := s.Client.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
		if err != nil {
			return nil, s.classify("list subscriptions", ctxErr(ctx, err))
		}
		for _, l := range subs {
			subscribed[l.Mailbox] = true
		}
	}

	folders := make([]Folder, 0, len(lists))
	for _, l := range lists {
		// Shared folders and other users' are not this mailbox's.
		if !shared && slices.ContainsFunc(s.Others, func(p string) bool { return strings.HasPrefix(l.Mailbox, p) }) {
			continue
		}
		f := Folder{Name: l.Mailbox, Subscribed: subscribed[l.Mailbox]}
		for _, a := range l.Attrs {
			switch a {
			case imap.MailboxAttrNoSelect, imap.MailboxAttrNonExistent:
				f.NoSelect = true
			case imap.MailboxAttrSubscribed:
				f.Subscribed = true
			case imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive:
				f.SpecialUse = a
			case imap.MailboxAttrAll, imap.MailboxAttrFlagged, attrImportant:
				f.View = a
			}
		}
		folders = append(folders, f)
	}

	// Pipelined STATUS: one round trip for all folders instead of one each.
	statusOpts := &imap.StatusOptions{NumMessages: true, UIDValidity: true, Size: s.Caps.Has(imap.CapStatusSize) || s.Caps.Has(imap.CapIMAP4rev2)}
	cmds := make([]*imapclient.StatusCommand, len(folders))
	for i, f := range folders {
		if !f.NoSelect {
			cmds[i] = s.Client.Status(f.Name, statusOpts)
		}
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		data, err := c.Wait()
		if err != nil {
			return nil, s.classify("status "+folders[i].Name, ctxErr(ctx, err))
		}
		if data.NumMessages != nil {
			folders[i].Messages = *data.NumMessages
		}
		if data.Size != nil {
			folders[i].Bytes = *data.Size
		}
		folders[i].UIDValidity = data.UIDValidity
	}
	return folders, nil
}

// RenameFolder renames a target folder, following a folder renamed on the
// source. A target folder that is already gone, or a new name already taken,
// is not an error: the folder is then created or reused by CreateFolders.
func (s *Session) RenameFolder(ctx context.Context, from, to string) error {
	err := s.Client.Rename(from, to, nil).Wait()
	if err != nil && !isAlreadyExists(err) && !isNonExistent(err) {
		return s.classify("rename folder "+from+" to "+to, ctxErr(ctx, err))
	}
	return nil
}

func isNonExistent(err error) bool {
	ie, ok := err.(*imap.Error)
	return ok && (ie.Code == imap.ResponseCodeNonExistent || strings.Contains(strings.ToLower(ie.Text), "doesn't exist") || strings.Contains(strings.ToLower(ie.Text), "does not exist"))
}

// CreateFolders creates the planned target folders that do not exist yet,
// parents first, and subscribes those subscribed on the source. The
// commands are pipelined: a round trip for all, not one per folder.
func (s *Session) CreateFolders(ctx context.Context, plans []FolderPlan) error {
	type create struct {
		p   *FolderPlan
		cmd *imapclient.Command
		use bool
	}
	var creates []create
	for i := range plans {
		p := &plans[i]
		if p.Exists {
			continue
		}
		var opts *imap.CreateOptions
		if p.SpecialUse != "" && s.Caps.Has(imap.CapCreateSpecialUse) {
			opts = &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{p.SpecialUse}}
		}
		creates = append(creates, create{p: p, cmd: s.Client.Create(p.Target, opts), use: opts != nil})
	}
	var firstErr error
	for _, c := range creates {
		err := c.cmd.Wait()
		if err != nil && c.use {
			// A server may refuse a second folder of a use; the name is what
			// matters most.
			err = s.Client.Create(c.p.Target, nil).Wait()
		}
		if err != nil && !isAlreadyExists(err) {
			firstErr = cmp.Or(firstErr, s.classify("create folder "+c.p.Target, ctxErr(ctx, err)))
			continue
		}
		c.p.Exists = true
	}
	if firstErr != nil {
		return firstErr
	}
	var subs []*imapclient.Command
	var names []string
	for _, p := range plans {
		if p.Subscribed {
			subs = append(subs, s.Client.Subscribe(p.Target))
			names = append(names, p.Target)
		}
	}
	for i, c := range subs {
		if err := c.Wait(); err != nil && firstErr == nil {
			firstErr = s.classify("subscribe "+names[i], ctxErr(ctx, err))
		}
	}
	return firstErr
}

func isAlreadyExists(err error) bool {
	ie, ok := err.(*imap.Error)
	if !ok {
		return false
	}
	return ie.Code == imap.ResponseCodeAlreadyExists || strings.Contains(strings.ToLower(ie.Text), "already exists")
}

// Counts returns the number of messages in each named folder.
func (s *Session) Counts(ctx context.Context, folders []string) ([]uint32, error) {
	cmds := make([]*imapclient.StatusCommand, len(folders))
	for i, f := range folders {
		cmds[i] = s.Client.Status(f, &imap.StatusOptions{NumMessages: true})
	}
	out := make([]uint32, len(folders))
	for i, c := range cmds {
		data, err := c.Wait()
		if err != nil {
			return nil, s.classify("status "+folders[i], ctxErr(ctx, err))
		}
		if data.NumMessages != nil {
			out[i] = *data.NumMessages
		}
	}
	return out, nil
}

// StorageQuota returns the storage usage and limit in bytes of the quota
// root of INBOX, or ok=false when the server has no QUOTA or no limit.
func (s *Session) StorageQuota(ctx context.Context) (used, limit int64, ok bool) {
	if !s.Caps.Has(imap.CapQuota) && !s.Caps.Has("QUOTA=RES-STORAGE") {
		return 0, 0, false
	}
	roots, err := s.Client.GetQuotaRoot("INBOX").Wait()
	if err != nil {
		return 0, 0, false
	}
	for _, r := range roots {
		if res, found := r.Resources[imap.QuotaResourceStorage]; found && res.Limit > 0 {
			// RFC 9208 counts STORAGE in units of 1024 octets.
			return res.Usage * 1024, res.Limit * 1024, true
		}
	}
	return 0, 0, false
}

// Plan lists the folders of both sides and maps them with PlanFolders.
func Plan(ctx context.Context, src, tgt *Session, rules Rules) (plans []FolderPlan, excluded []string, err error) {
	srcFolders, err := src.listFolders(ctx, rules.IncludeShared)
	if err != nil {
		return nil, nil, err
	}
	tgtFolders, err := tgt.ListFolders(ctx)
	if err != nil {
		return nil, nil, err
	}
	plans, excluded = PlanFolders(srcFolders, src.Namespace(), tgtFolders, tgt.Namespace(), rules)
	return plans, excluded, nil
}

// CollisionNote is what FolderPlan.Renamed says of a folder renamed because
// another source folder has its name.
const CollisionNote = "another source folder has the name"

// MeasureSizes fills in the size of the source folders whose server gave
// none (no STATUS=SIZE): a FETCH of every message's RFC822.SIZE, summed as
// it streams, so a folder of any size takes constant memory. For dry runs:
// a copy learns sizes as it goes.
func MeasureSizes(ctx context.Context, src *Session, plans []FolderPlan) error {
	for i := range plans {
		p := &plans[i]
		if p.Bytes > 0 || p.Messages == 0 {
			continue
		}
		if _, err := src.Client.Select(p.Source, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return src.classify("examine "+p.Source, ctxErr(ctx, err))
		}
		var all imap.SeqSet
		all.AddRange(1, 0) // 1:*
		cmd := src.Client.Fetch(all, &imap.FetchOptions{RFC822Size: true})
		var sum int64
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			for item := msg.Next(); item != nil; item = msg.Next() {
				if s, ok := item.(imapclient.FetchItemDataRFC822Size); ok {
					sum += s.Size
				}
			}
		}
		if err := cmd.Close(); err != nil {
			return src.classify("fetch sizes of "+p.Source, ctxErr(ctx, err))
		}
		p.Bytes = sum
	}
	return nil
}
