package engine

import (
	"context"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Comparison is what a folder's verification found, message by message
// (by identity, see identity): the source messages the copy had reached,
// less those it skipped by design (bad items, the rules), against every
// message of the target folder.
type Comparison struct {
	SourceMessages int // compared
	TargetMessages int
	// Missing: source messages with fewer copies on the target than they
	// have in the source. Duplicated: extra copies of source messages.
	// Other: target messages that are no source message's (mail delivered
	// to the target, messages deleted on the source after they were
	// copied): normal, not an error.
	Missing    int
	Duplicated int
	Other      int
}

// CompareFolder compares one folder pair. Source messages above the
// cursor (arrived after the last pass) and those skip names are left out.
// It reads identities only (a few headers), streaming: memory grows with
// the number of distinct identities, not with the messages' size.
func CompareFolder(ctx context.Context, src, tgt *Session, cur Cursor, skip func(uid imap.UID, size int64, date time.Time) bool) (Comparison, error) {
	var cmp Comparison
	sel, err := src.Client.Select(cur.Source, &imap.SelectOptions{ReadOnly: true}).Wait()
	err = src.classify("select "+cur.Source, ctxErr(ctx, err))
	if isNotFound(err) {
		// Deleted since the last pass: its copy is the user's now.
		sel, err = &imap.SelectData{}, nil
	}
	if err != nil {
		return cmp, err
	}
	counts := map[identity]int{}
	if sel.NumMessages > 0 && (cur.UIDValidity == 0 || cur.UIDValidity == sel.UIDValidity) && cur.LastUID > 0 {
		var upTo imap.UIDSet
		upTo.AddRange(1, cur.LastUID)
		err := eachIdentity(ctx, src, cur.Source, upTo, func(uid imap.UID, size int64, id identity, date time.Time) {
			if skip == nil || !skip(uid, size, date) {
				counts[id]++
				cmp.SourceMessages++
			}
		})
		if err != nil {
			return cmp, err
		}
	}
	tsel, err := tgt.Client.Select(cur.Target, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return cmp, tgt.classify("select "+cur.Target, ctxErr(ctx, err))
	}
	onTarget := map[identity]int{}
	if tsel.NumMessages > 0 {
		var all imap.UIDSet
		all.AddRange(1, 0)
		err := eachIdentity(ctx, tgt, cur.Target, all, func(_ imap.UID, _ int64, id identity, _ time.Time) {
			onTarget[id]++
			cmp.TargetMessages++
		})
		if err != nil {
			return cmp, err
		}
	}
	for id, n := range counts {
		have := onTarget[id]
		cmp.Missing += max(n-have, 0)
		cmp.Duplicated += max(have-n, 0)
	}
	for id, have := range onTarget {
		if counts[id] == 0 {
			cmp.Other += have
		}
	}
	return cmp, nil
}

// eachIdentity streams UID, size, identity and INTERNALDATE of the
// messages of set in the selected folder.
func eachIdentity(ctx context.Context, s *Session, folder string, set imap.UIDSet, f func(imap.UID, int64, identity, time.Time)) error {
	cmd := s.Client.Fetch(set, &imap.FetchOptions{
		UID: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{identitySection},
	})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var uid imap.UID
		var size int64
		var date time.Time
		var header []byte
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataRFC822Size:
				size = item.Size
			case imapclient.FetchItemDataInternalDate:
				date = item.Time
			case imapclient.FetchItemDataBodySection:
				header, _ = readLimited(item.Literal, 64<<10)
			}
		}
		if uid != 0 {
			f(uid, size, identityOf(date, header), date)
		}
	}
	if err := cmd.Close(); err != nil {
		return s.classify("fetch headers of "+folder, ctxErr(ctx, err))
	}
	return nil
}
