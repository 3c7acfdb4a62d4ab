package engine

import (
	"context"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
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
	// DeletedOnTarget: source messages whose copy the move made and the
	// user then deleted on the target; not missing.
	DeletedOnTarget int `json:",omitempty"`
	// Unreadable: source messages the copy reached whose headers the
	// server did not send; counted as missing too.
	Unreadable int `json:",omitempty"`
}

// CompareOptions tunes CompareFolder.
type CompareOptions struct {
	// Skip names the source messages the copy leaves out by design (bad
	// items, the rules).
	Skip func(uid imap.UID, size int64, date time.Time) bool
	// Gmail ranks labels under the priority rule (Options.Gmail).
	Gmail GmailRanking
}

// CompareFolder compares one folder pair. Source messages above the
// cursor (arrived after the last pass) and those opts.Skip names are left
// out, and so are a Gmail source's messages copied into another folder.
// It reads identities (a few headers each), streaming, and the start of
// the bodies of messages that share one.
func CompareFolder(ctx context.Context, src, tgt *Session, cur Cursor, opts CompareOptions) (Comparison, error) {
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
	onSource := map[identity][]imap.UID{}
	if sel.NumMessages > 0 && (cur.UIDValidity == 0 || cur.UIDValidity == sel.UIDValidity) && cur.LastUID > 0 {
		all, err := listUIDs(ctx, src, cur.Source, nil)
		if err != nil {
			return cmp, err
		}
		reached := slices.DeleteFunc(all, func(u imap.UID) bool { return u > cur.LastUID })
		var labelled map[imap.UID]bool
		if cur.readsLabels() && len(reached) > 0 {
			if labelled, err = gmailNotHere(ctx, src, reached, cur, opts.Gmail); err != nil {
				return cmp, err
			}
		}
		read := 0
		err = eachIdentity(ctx, src, cur.Source, reached, func(m identified) {
			read++
			if (opts.Skip == nil || !opts.Skip(m.uid, m.size, m.date)) && !labelled[m.uid] {
				onSource[m.key()] = append(onSource[m.key()], m.uid)
				cmp.SourceMessages++
			}
		})
		if err != nil {
			return cmp, err
		}
		cmp.Unreadable = len(reached) - read
		cmp.Missing += cmp.Unreadable
	}
	tsel, err := tgt.Client.Select(cur.Target, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return cmp, tgt.classify("select "+cur.Target, ctxErr(ctx, err))
	}
	onTarget := map[identity][]imap.UID{}
	if tsel.NumMessages > 0 {
		all, err := listUIDs(ctx, tgt, cur.Target, nil)
		if err != nil {
			return cmp, err
		}
		known := func(id identity) bool { return onSource[id] != nil }
		err = eachIdentity(ctx, tgt, cur.Target, all, func(m identified) {
			k := m.keyAmong(known)
			onTarget[k] = append(onTarget[k], m.uid)
			cmp.TargetMessages++
		})
		if err != nil {
			return cmp, err
		}
	}
	if err := compareCounts(ctx, src, tgt, cur, onSource, onTarget, &cmp); err != nil {
		return cmp, err
	}
	// A message whose recorded copy is gone from the target was deleted
	// there by the user: their decision, not a loss.
	var onTargetUIDs []imap.UID
	for _, t := range onTarget {
		onTargetUIDs = append(onTargetUIDs, t...)
	}
	slices.Sort(onTargetUIDs)
	for _, s := range onSource {
		for _, u := range s {
			if t, ok := cur.Map.Lookup(u); ok && cmp.Missing > cmp.Unreadable {
				if _, there := slices.BinarySearch(onTargetUIDs, t); !there {
					cmp.DeletedOnTarget++
					cmp.Missing--
				}
			}
		}
	}
	return cmp, nil
}

// compareCounts counts, per identity, the source messages without a copy
// and the extra copies; where several source messages share an identity,
// per start of body too, unless the target rewrites bodies.
func compareCounts(ctx context.Context, src, tgt *Session, cur Cursor, onSource, onTarget map[identity][]imap.UID, cmp *Comparison) error {
	var srcUIDs, tgtUIDs []imap.UID
	for id, s := range onSource {
		if len(s) > 1 && len(onTarget[id]) > 0 {
			srcUIDs = append(srcUIDs, s...)
			tgtUIDs = append(tgtUIDs, onTarget[id]...)
		}
	}
	var sd, td map[imap.UID]identity
	if len(srcUIDs) > 0 {
		var err error
		if sd, err = bodyDigests(ctx, src, cur.Source, srcUIDs); err != nil {
			return err
		}
		if td, err = bodyDigests(ctx, tgt, cur.Target, tgtUIDs); err != nil {
			return err
		}
	}
	count := func(n, have int) {
		cmp.Missing += max(n-have, 0)
		cmp.Duplicated += max(have-n, 0)
	}
	for id, s := range onSource {
		t := onTarget[id]
		bySrc, byTgt := map[identity]int{}, map[identity]int{}
		for _, u := range s {
			bySrc[sd[u]]++
		}
		split := len(s) > 1 && len(t) > 0
		for _, u := range t {
			byTgt[td[u]]++
			split = split && bySrc[td[u]] > 0
		}
		if !split {
			count(len(s), len(t))
			continue
		}
		for d, n := range bySrc {
			count(n, byTgt[d])
		}
	}
	for id, t := range onTarget {
		if onSource[id] == nil {
			cmp.Other += len(t)
		}
	}
	return nil
}
