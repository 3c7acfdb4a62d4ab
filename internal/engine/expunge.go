package engine

import (
	"context"

	"github.com/emersion/go-imap/v2"
)

// syncExpunges finds the copied messages that are gone from the source
// folder, whose UIDs up to the cursor are present (from listUIDs, which
// checked them against the folder's message count: a short or empty answer
// never reads as deletions). With propagate it expunges their copies from
// the target folder selected in tgt — only those, by UID, never other
// messages the user marked \Deleted — and otherwise leaves them. Either way
// they leave the UID map, so each deletion is counted once.
func syncExpunges(ctx context.Context, tgt *Session, cur *Cursor, present imap.UIDSet, propagate bool, fence func() error) (deleted, expunged int, err error) {
	gone := map[imap.UID]bool{}
	var targets imap.UIDSet
	for _, r := range cur.Map {
		for src, t := range r.All() {
			if !present.Contains(src) {
				gone[src] = true
				targets.AddNum(t)
			}
		}
	}
	if len(gone) == 0 {
		return 0, 0, nil
	}
	// Without UIDPLUS the only EXPUNGE there is removes every \Deleted
	// message of the folder, the user's own included: then nothing is
	// expunged, and the deletions are only counted.
	if propagate && tgt.uidPlus() {
		if err := expungeUIDs(ctx, tgt, cur.Target, targets, fence); err != nil {
			return 0, 0, err
		}
		expunged = len(gone)
	}
	cur.Map = cur.Map.Remove(gone)
	return len(gone), expunged, nil
}

// expungeUIDs removes exactly the given messages from the target folder
// selected in tgt (UIDPLUS).
func expungeUIDs(ctx context.Context, tgt *Session, folder string, uids imap.UIDSet, fence func() error) error {
	for _, part := range splitUIDs(uids) {
		if err := fence(); err != nil {
			return err
		}
		store := tgt.Client.Store(part, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
		if err := store.Close(); err != nil {
			return tgt.classify("flag deleted messages in "+folder, ctxErr(ctx, err))
		}
		if err := fence(); err != nil {
			return err
		}
		if err := tgt.Client.UIDExpunge(part).Close(); err != nil {
			return tgt.classify("expunge "+folder, ctxErr(ctx, err))
		}
	}
	return nil
}
