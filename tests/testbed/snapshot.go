package testbed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// MessageInfo is what a Snapshot records of one message.
type MessageInfo struct {
	// SHA256 is the hex SHA-256 of the full message (BODY[]).
	SHA256 string
	// MessageID is the Message-ID header, for readable differences only.
	MessageID string
	// Flags are sorted and exclude \Recent, which no client can set.
	Flags        []string
	InternalDate time.Time
	Size         int64
}

// Snapshot maps a folder name, with "/" as separator whatever the server's,
// to its messages in sequence order. Empty folders are present with no
// messages; \Noselect folders are absent.
type Snapshot map[string][]MessageInfo

// TakeSnapshot records every selectable folder of user's account at addr.
// Bodies are hashed as they stream in, so memory does not grow with message
// size. It selects folders read-only and never changes \Seen.
func TakeSnapshot(addr, user, password string) (Snapshot, error) {
	c, err := Dial(addr, user, password)
	if err != nil {
		return nil, err
	}
	defer c.Close()

	ns, err := separator(c)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", user, err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: list: %w", user, err)
	}
	snap := make(Snapshot, len(list))
	for _, mbox := range list {
		if slices.Contains(mbox.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(mbox.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		msgs, err := snapshotFolder(c, mbox.Mailbox)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", user, err)
		}
		snap[corpusName(mbox.Mailbox, namespace{prefix: ns.prefix, sep: mbox.Delim})] = msgs
	}
	if err := c.Logout().Wait(); err != nil {
		return nil, fmt.Errorf("snapshot %s: logout: %w", user, err)
	}
	return snap, nil
}

// Subscriptions returns user's subscribed folders at addr, sorted, with "/"
// as separator. Subscriptions to folders that do not exist are included.
func Subscriptions(addr, user, password string) ([]string, error) {
	c, err := Dial(addr, user, password)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ns, err := separator(c)
	if err != nil {
		return nil, fmt.Errorf("subscriptions of %s: %w", user, err)
	}
	list, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("subscriptions of %s: %w", user, err)
	}
	names := make([]string, 0, len(list))
	for _, mbox := range list {
		names = append(names, corpusName(mbox.Mailbox, namespace{prefix: ns.prefix, sep: mbox.Delim}))
	}
	slices.Sort(names)
	if err := c.Logout().Wait(); err != nil {
		return nil, fmt.Errorf("subscriptions of %s: logout: %w", user, err)
	}
	return names, nil
}

func snapshotFolder(c *imapclient.Client, name string) ([]MessageInfo, error) {
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("examine %q: %w", name, err)
	}
	msgs := make([]MessageInfo, 0, sel.NumMessages)
	if sel.NumMessages == 0 {
		return msgs, nil
	}
	var set imap.SeqSet
	set.AddRange(1, sel.NumMessages)
	fetch := c.Fetch(set, &imap.FetchOptions{
		Flags:        true,
		InternalDate: true,
		RFC822Size:   true,
		BodySection:  []*imap.FetchItemBodySection{{Peek: true}},
	})
	defer fetch.Close()
	for msg := fetch.Next(); msg != nil; msg = fetch.Next() {
		info, err := readMessageInfo(msg)
		if err != nil {
			return nil, fmt.Errorf("fetch %q seq %d: %w", name, msg.SeqNum, err)
		}
		msgs = append(msgs, info)
	}
	if err := fetch.Close(); err != nil {
		return nil, fmt.Errorf("fetch %q: %w", name, err)
	}
	return msgs, nil
}

func readMessageInfo(msg *imapclient.FetchMessageData) (MessageInfo, error) {
	var info MessageInfo
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch item := item.(type) {
		case imapclient.FetchItemDataBodySection:
			h := sha256.New()
			hdr := &headerCapture{}
			if _, err := io.Copy(io.MultiWriter(h, hdr), item.Literal); err != nil {
				return info, err
			}
			info.SHA256 = hex.EncodeToString(h.Sum(nil))
			info.MessageID = hdr.messageID()
		case imapclient.FetchItemDataFlags:
			info.Flags = []string{}
			for _, f := range item.Flags {
				if !strings.EqualFold(string(f), `\Recent`) {
					info.Flags = append(info.Flags, string(f))
				}
			}
			slices.Sort(info.Flags)
		case imapclient.FetchItemDataInternalDate:
			info.InternalDate = item.Time
		case imapclient.FetchItemDataRFC822Size:
			info.Size = item.Size
		}
	}
	if info.SHA256 == "" {
		return info, fmt.Errorf("server sent no BODY[]")
	}
	return info, nil
}

// headerCapture keeps the first bytes of a message, up to the end of its
// header, so that Message-ID can be read without buffering the body.
type headerCapture struct {
	buf  bytes.Buffer
	done bool
}

func (hc *headerCapture) Write(p []byte) (int, error) {
	const limit = 64 << 10
	if !hc.done {
		hc.buf.Write(p[:min(len(p), limit-hc.buf.Len())])
		hc.done = hc.buf.Len() >= limit || bytes.Contains(hc.buf.Bytes(), []byte("\r\n\r\n"))
	}
	return len(p), nil
}

func (hc *headerCapture) messageID() string {
	raw := hc.buf.Bytes()
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		raw = raw[:i+4]
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	return m.Header.Get("Message-Id")
}

// SnapshotOf returns the snapshot a server should yield after Seed(folders)
// into an empty account, without asking a server.
func SnapshotOf(folders []Folder) Snapshot {
	snap := make(Snapshot, len(folders))
	for _, f := range folders {
		msgs := make([]MessageInfo, 0, len(f.Messages))
		for _, m := range f.Messages {
			sum := sha256.Sum256(m.Raw)
			hdr := &headerCapture{}
			hdr.Write(m.Raw)
			flags := slices.Clone(m.Flags)
			if flags == nil {
				flags = []string{}
			}
			slices.Sort(flags)
			msgs = append(msgs, MessageInfo{
				SHA256:       hex.EncodeToString(sum[:]),
				MessageID:    hdr.messageID(),
				Flags:        flags,
				InternalDate: m.InternalDate,
				Size:         int64(len(m.Raw)),
			})
		}
		snap[f.Name] = append(snap[f.Name], msgs...)
	}
	return snap
}

// Diff compares a source and a target snapshot and returns one
// human-readable line per difference; none means the target holds exactly
// the source's messages with the same flags and internal dates.
//
// folderMap gives the target name expected for a source folder (nil is the
// identity); it may map several source folders to one target folder, whose
// messages are then compared as their union, and "" leaves a source folder
// out. Messages are compared per folder as multisets keyed by SHA-256.
// Target folders no source folder maps to are reported only if they hold
// messages, since servers create empty default folders on their own.
func Diff(src, tgt Snapshot, folderMap func(string) string) []string {
	if folderMap == nil {
		folderMap = func(name string) string { return name }
	}
	want := map[string][]MessageInfo{}
	from := map[string][]string{}
	for _, name := range sortedKeys(src) {
		t := folderMap(name)
		if t == "" {
			continue
		}
		want[t] = append(want[t], src[name]...)
		from[t] = append(from[t], name)
	}

	var diffs []string
	for _, t := range sortedKeys(want) {
		label := fmt.Sprintf("%q", t)
		if len(from[t]) != 1 || from[t][0] != t {
			label = fmt.Sprintf("%q (from %q)", t, strings.Join(from[t], `", "`))
		}
		got, ok := tgt[t]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("missing folder %s with %d messages", label, len(want[t])))
			continue
		}
		diffs = append(diffs, diffFolder(label, want[t], got)...)
	}
	for _, t := range sortedKeys(tgt) {
		if _, ok := want[t]; !ok && len(tgt[t]) > 0 {
			diffs = append(diffs, fmt.Sprintf("unexpected folder %q with %d messages", t, len(tgt[t])))
		}
	}
	return diffs
}

func diffFolder(label string, want, got []MessageInfo) []string {
	byHash := func(msgs []MessageInfo) map[string][]MessageInfo {
		m := map[string][]MessageInfo{}
		for _, msg := range msgs {
			m[msg.SHA256] = append(m[msg.SHA256], msg)
		}
		return m
	}
	wantBy, gotBy := byHash(want), byHash(got)

	// Report in source order, then target-only messages in target order.
	var hashes []string
	seen := map[string]bool{}
	for _, msg := range append(slices.Clip(want), got...) {
		if !seen[msg.SHA256] {
			seen[msg.SHA256] = true
			hashes = append(hashes, msg.SHA256)
		}
	}

	var diffs []string
	for _, h := range hashes {
		w, g := wantBy[h], gotBy[h]
		// Pair copies of the same content stably, so that a flag change on
		// one of two identical messages is reported once.
		sortCopies(w)
		sortCopies(g)
		for i := range min(len(w), len(g)) {
			if !slices.Equal(w[i].Flags, g[i].Flags) {
				diffs = append(diffs, fmt.Sprintf("folder %s: flags of %s are %v, want %v", label, describe(g[i]), g[i].Flags, w[i].Flags))
			}
			if !w[i].InternalDate.Equal(g[i].InternalDate) {
				diffs = append(diffs, fmt.Sprintf("folder %s: internal date of %s is %s, want %s", label, describe(g[i]),
					g[i].InternalDate.UTC().Format(time.RFC3339), w[i].InternalDate.UTC().Format(time.RFC3339)))
			}
		}
		switch {
		case len(g) == 0:
			diffs = append(diffs, fmt.Sprintf("folder %s: missing message %s", label, describe(w[0])))
		case len(g) < len(w):
			diffs = append(diffs, fmt.Sprintf("folder %s: missing %d of %d copies of %s", label, len(w)-len(g), len(w), describe(w[0])))
		case len(w) == 0:
			diffs = append(diffs, fmt.Sprintf("folder %s: unexpected message %s", label, describe(g[0])))
		case len(g) > len(w):
			diffs = append(diffs, fmt.Sprintf("folder %s: duplicate message %s: %d copies, want %d", label, describe(g[0]), len(g), len(w)))
		}
	}
	return diffs
}

func sortCopies(msgs []MessageInfo) {
	slices.SortStableFunc(msgs, func(a, b MessageInfo) int {
		if c := a.InternalDate.Compare(b.InternalDate); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.Flags, " "), strings.Join(b.Flags, " "))
	})
}

func describe(m MessageInfo) string {
	id := m.MessageID
	if id == "" {
		id = "(no Message-ID)"
	}
	return fmt.Sprintf("%s [sha256 %.12s, %d bytes, %s]", id, m.SHA256, m.Size, m.InternalDate.UTC().Format(time.RFC3339))
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
