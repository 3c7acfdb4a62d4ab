package engine

import (
	"context"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/failure"
)

// A server without STATUS=SIZE: the dry run sums every message's
// RFC822.SIZE; folders with a size, or empty, are left alone.
func TestMeasureSizesSumsTheMessagesOfFoldersWithoutASize(t *testing.T) {
	addr := memServer(t, "Archive", "Empty")
	s := dial(t, failure.SideSource, addr)
	seed(t, s, "INBOX", 0, 30)
	seed(t, s, "Archive", 100, 7)
	want := int64(0)
	for i := range 30 {
		want += int64(len(testMessage(i)))
	}
	plans := []FolderPlan{
		{Source: "INBOX", Messages: 30},
		{Source: "Archive", Messages: 7, Bytes: 12345}, // the server said
		{Source: "Empty"},
	}
	if err := MeasureSizes(context.Background(), s, plans); err != nil {
		t.Fatal(err)
	}
	if plans[0].Bytes != want || plans[1].Bytes != 12345 || plans[2].Bytes != 0 {
		t.Fatalf("sizes %d, %d, %d; want %d, 12345, 0", plans[0].Bytes, plans[1].Bytes, plans[2].Bytes, want)
	}
	plans = []FolderPlan{{Source: "Gone", Messages: 3}}
	if err := MeasureSizes(context.Background(), s, plans); err == nil {
		t.Fatal("a folder that cannot be examined: no error")
	}
}

func TestWithinRanges(t *testing.T) {
	for _, c := range []struct {
		uids []imap.UID
		max  int
		want int
	}{
		{nil, 2, 0},
		{[]imap.UID{1, 2, 3}, 1, 3},
		{[]imap.UID{1, 3, 5}, 2, 2},
		{[]imap.UID{1, 2, 4, 5, 7}, 2, 4},
		{[]imap.UID{1, 2, 4, 5, 7}, 3, 5},
	} {
		if got := withinRanges(c.uids, c.max); got != c.want {
			t.Errorf("withinRanges(%v, %d) = %d, want %d", c.uids, c.max, got, c.want)
		}
	}
}
