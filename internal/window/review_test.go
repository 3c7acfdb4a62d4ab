package window

import (
	"testing"
	"time"
)

// reviewCheck walks minute by minute over [from, from+span) and checks
// Open against itself: the state must hold until the announced next change
// and differ there, and the announced change must be the first minute at
// which openAt differs (a change announced late lets a batch copy outside
// its hours; one announced never, or too late, stalls it). It reports at
// most max mismatches.
func reviewCheck(t *testing.T, spec, zone string, from time.Time, span time.Duration, max int) {
	t.Helper()
	w, err := Parse(spec, zone)
	if err != nil {
		t.Fatalf("Parse(%q): %v", spec, err)
	}
	n := int(span / time.Minute)
	state := make([]bool, n+1)
	for i := range state {
		state[i] = w.openAt(from.Add(time.Duration(i) * time.Minute))
	}
	bad := 0
	// Open is asked every few minutes (every minute is checked as the
	// truth it must announce): a week of minutes for every window and zone
	// takes too long for the suite.
	for i := 0; i < n; i += 5 {
		tm := from.Add(time.Duration(i) * time.Minute)
		open, next := w.Open(tm)
		// The first minute after tm whose state differs.
		truth := -1
		for j := i + 1; j <= n; j++ {
			if state[j] != open {
				truth = j
				break
			}
		}
		var want time.Time
		if truth >= 0 {
			want = from.Add(time.Duration(truth) * time.Minute)
		}
		switch {
		case truth < 0 && (next.IsZero() || !next.Before(from.Add(span))):
			continue // no change in the range, none announced inside it
		case truth >= 0 && next.Equal(want):
			continue
		}
		bad++
		if bad <= max {
			loc := w.loc
			t.Errorf("%q in %s: Open(%s) = %v, next %s; but the state first changes at %s",
				spec, zone, tm.In(loc).Format("Mon 2006-01-02 15:04 MST"), open,
				fmtT(next, loc), fmtT(want, loc))
		}
	}
	if bad > max {
		t.Errorf("%q in %s: %d mismatches in all", spec, zone, bad)
	}
}

func fmtT(tm time.Time, loc *time.Location) string {
	if tm.IsZero() {
		return "never"
	}
	return tm.In(loc).Format("Mon 2006-01-02 15:04 MST")
}

// Ordinary weeks (no DST change): past-midnight periods (also Sun into
// Mon), a whole week, overlapping and adjacent periods, 24:00 ends, day
// ranges that wrap (Fri-Mon). Open must agree with itself at every minute.
func TestReviewWindowOrdinaryWeeksAgreeMinuteByMinute(t *testing.T) {
	from := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) // a Monday
	for _, spec := range []string{
		"Mon-Fri 19:00-07:00, Sat/Sun 00:00-24:00",
		"Mon-Sun 00:00-24:00",
		"Sun 22:00-02:00",
		"Fri-Mon 23:30-00:30",
		"Mon 08:00-12:00, Mon 10:00-14:00, Mon 14:00-15:00",
		"Sat 22:00-24:00, Sun 00:00-01:00",
		"Wed 12:00-11:59",
		"Mon-Sun 05:00-04:59",
	} {
		for _, zone := range []string{"UTC", "Europe/Berlin", "America/New_York"} {
			reviewCheck(t, spec, zone, from, 8*24*time.Hour, 3)
		}
	}
}

// A whole week: open, and never a change (no timer needed).
func TestReviewWindowWholeWeekNeverChanges(t *testing.T) {
	for _, spec := range []string{"Mon-Sun 00:00-24:00", "Sun-Sat 00:00-24:00", "Mon-Fri 00:00-24:00, Sat/Sun 00:00-24:00"} {
		w, err := Parse(spec, "Europe/Berlin")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []time.Time{
			time.Date(2026, 3, 29, 1, 59, 0, 0, time.UTC),
			time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC),
			time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
		} {
			if open, next := w.Open(d); !open || !next.IsZero() {
				t.Errorf("%q: Open(%s) = %v, next %s; want open, never changing", spec, d, open, next)
			}
		}
	}
}

// The DST weeks in Europe/Berlin: 2026-03-29 (02:00 CET -> 03:00 CEST,
// the hour 02:00-03:00 does not exist) and 2026-10-25 (03:00 CEST -> 02:00
// CET, the hour 02:00-03:00 happens twice). Periods ending or beginning in
// or around the skipped/repeated hour. Open must agree with itself.
func TestReviewWindowDSTWeeksAgreeMinuteByMinute(t *testing.T) {
	for _, c := range []struct {
		spec string
		from time.Time
	}{
		// Spring: a night window ending inside the skipped hour.
		{"Sat 20:00-02:30", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)},
		// Spring: a window opening inside the skipped hour.
		{"Sun 02:30-04:00", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)},
		// Spring: the usual night window across the change.
		{"Mon-Fri 19:00-07:00, Sat/Sun 00:00-24:00", time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)},
		{"Mon-Sun 01:00-04:00", time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)},
		// Autumn: a window opening inside the repeated hour.
		{"Sun 02:30-06:00", time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC)},
		// Autumn: a window ending inside the repeated hour.
		{"Sat 22:00-02:30", time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC)},
		{"Mon-Sun 01:00-04:00", time.Date(2026, 10, 23, 12, 0, 0, 0, time.UTC)},
	} {
		reviewCheck(t, c.spec, "Europe/Berlin", c.from, 4*24*time.Hour, 3)
	}
}

// A window that exists on the DST Sunday only inside the skipped hour
// ("Sun 02:00-03:00" in Europe/Berlin): closed at 03:00 CET on 2026-03-22,
// its next opening is 2026-04-05 02:00 CEST, two weeks on. Open must
// announce it (or at least some time to look again), not "never".
func TestReviewWindowNextChangeMoreThanAWeekAway(t *testing.T) {
	w, err := Parse("Sun 02:00-03:00", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	now := time.Date(2026, 3, 22, 3, 0, 0, 0, berlin)
	want := time.Date(2026, 4, 5, 2, 0, 0, 0, berlin)
	open, next := w.Open(now)
	if open || next.IsZero() || next.After(want) {
		t.Errorf("Open(%s) = %v, next %s; want closed, next by %s (a batch told 'never' waits outside its window for good)",
			now.Format("Mon 2006-01-02 15:04 MST"), open, fmtT(next, berlin), want.Format("Mon 2006-01-02 15:04 MST"))
	}
}
