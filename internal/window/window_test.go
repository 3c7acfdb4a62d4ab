package window

import (
	"strings"
	"testing"
	"time"
)

func TestOpenAndNextChange(t *testing.T) {
	w, err := Parse("Mon-Fri 19:00-07:00, Sat/Sun 00:00-24:00", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		now  string
		open bool
		next string
	}{
		{"2026-11-30 12:00", false, "2026-11-30 19:00"}, // Monday noon
		{"2026-11-30 19:00", true, "2026-12-01 07:00"},  // Monday evening until Tuesday 07:00
		{"2026-12-01 06:59", true, "2026-12-01 07:00"},
		{"2026-12-04 23:00", true, "2026-12-07 00:00"}, // Friday night runs through the weekend, to Sunday midnight
		{"2026-12-06 12:00", true, "2026-12-07 00:00"}, // Sunday
	} {
		open, next := w.Open(at(c.now))
		if open != c.open || !next.Equal(at(c.next)) {
			t.Errorf("Open(%s) = %v, next %s; want %v, next %s", c.now, open, next.In(berlin).Format("2006-01-02 15:04"), c.open, c.next)
		}
	}
}

func TestParseErrorsSayWhatToWrite(t *testing.T) {
	for spec, want := range map[string]string{
		"weekdays 19:00-07:00": `"weekdays" is not a day`,
		"Mon-Fri 19-7":         `is not a range of hours`,
		"Mon 10:00-10:00":      "opens and closes at the same time",
		"Mon-Fri":              `write days and hours`,
	} {
		if _, err := Parse(spec, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error about %q", spec, err, want)
		}
	}
	if _, err := Parse("Mon 10:00-11:00", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "IANA name") {
		t.Errorf("unknown zone = %v", err)
	}
}
