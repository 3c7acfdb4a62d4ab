package engine

import (
	"context"

	"github.com/emersion/go-imap/v2"
)

// syncExpunges finds the copied messages that are gone from the source
// folder. With propagate it expunges their copies from the target — only
// those, by UID, never other messages the user marked \Deleted — and
// otherwise leaves them. Either way they leave the UID map, so each deletion
// is counted once. It costs one UID SEARCH, answered compactly by servers
// with ESEARCH, however large the folder.
func syncExpunges(ctx context.Context, src, tgt *Session, cur *Cursor, propagate bool) (deleted, expunged int, err error) {
	if len(cur.Map) == 0 {
		return 0, 0, nil
	}
	var upTo imap.UIDSet
	upTo.AddRange(1, cur.LastUID)
	var opts *imap.SearchOptions
	if src.Caps.Has(imap.CapESearch) || src.Caps.Has(imap.CapIMAP4rev2) {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	data, err := src.Client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{upTo}}, opts).Wait()
	if err != nil {
		return 0, 0, src.classify("search messages of "+cur.Source, ctxErr(ctx, err))
	}
	present, _ := data.All.(imap.UIDSet)
	gone := map[imap.UID]bool{}
	var targets imap.UIDSet
	for _, r := range cur.Map {
		for src, tgt := range r.All() {
			if !present.Contains(src) {
				gone[src] = true
				targets.AddNum(tgt)
			}
		}
	}
	if len(gone) == 0 {
		return 0, 0, nil
	}
	// Without UIDPLUS the only EXPUNGE there is removes every \Deleted
	// message of the folder, the user's own included: then nothing is
	// expunged, and the deletions are only counted.
	if propagate && (tgt.Caps.Has(imap.CapUIDPlus) || tgt.Caps.Has(imap.CapIMAP4rev2)) {
		if _, err := tgt.Client.Select(cur.Target, nil).Wait(); err != nil {
			return 0, 0, tgt.classify("select "+cur.Target, ctxErr(ctx, err))
		}
		store := tgt.Client.Store(targets, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
		if err := store.Close(); err != nil {
			return 0, 0, tgt.classify("flag deleted messages in "+cur.Target, ctxErr(ctx, err))
		}
		if err := tgt.Client.UIDExpunge(targets).Close(); err != nil {
			return 0, 0, tgt.classify("expunge "+cur.Target, ctxErr(ctx, err))
		}
		expunged = len(gone)
	}
	cur.Map = cur.Map.Remove(gone)
	return len(gone), expunged, nil
}
