// Package window reads and evaluates allowed hours: "Mon-Fri 19:00-07:00,
// Sat-Sun 00:00-24:00" in a time zone. A batch copies only inside them.
// It is plain Go with no clock of its own, so a workflow can evaluate it
// deterministically with workflow time.
package window

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // every worker resolves zone names alike
)

// Window is a set of weekly periods in a zone.
type Window struct {
	periods []period
	loc     *time.Location
}

// period opens on the given weekdays at from (minutes after midnight) and
// closes at to; to <= from runs past midnight into the next day.
type period struct {
	days     [7]bool
	from, to int
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Parse reads a window; zone is an IANA name ("Europe/Berlin"), "UTC", or
// "" for UTC.
func Parse(spec, zone string) (Window, error) {
	loc := time.UTC
	if zone != "" {
		l, err := time.LoadLocation(zone)
		if err != nil {
			return Window{}, fmt.Errorf("time zone %q is not known: write an IANA name such as Europe/Berlin", zone)
		}
		loc = l
	}
	w := Window{loc: loc}
	for _, part := range strings.Split(spec, ",") {
		p, err := parsePeriod(strings.TrimSpace(part))
		if err != nil {
			return Window{}, fmt.Errorf("%q: %w", strings.TrimSpace(part), err)
		}
		w.periods = append(w.periods, p)
	}
	return w, nil
}

func parsePeriod(s string) (period, error) {
	var p period
	days, hours, ok := strings.Cut(s, " ")
	if !ok {
		return p, errors.New(`write days and hours, e.g. "Mon-Fri 19:00-07:00"`)
	}
	for _, d := range strings.Split(days, "/") {
		from, to, isRange := strings.Cut(strings.ToLower(d), "-")
		a, b := dayIndex(from), dayIndex(to)
		if !isRange {
			b = a
		}
		if a < 0 || b < 0 {
			return p, fmt.Errorf("%q is not a day or a range of days (Mon, Mon-Fri, Sat/Sun)", d)
		}
		for i := a; ; i = (i + 1) % 7 {
			p.days[i] = true
			if i == b {
				break
			}
		}
	}
	from, to, ok := strings.Cut(strings.TrimSpace(hours), "-")
	var err1, err2 error
	if p.from, err1 = minutes(from); ok {
		p.to, err2 = minutes(to)
	}
	if !ok || err1 != nil || err2 != nil || p.from == 24*60 {
		return p, fmt.Errorf("%q is not a range of hours (19:00-07:00, 00:00-24:00)", hours)
	}
	if p.from == p.to {
		return p, fmt.Errorf("%q opens and closes at the same time", hours)
	}
	return p, nil
}

func dayIndex(s string) int {
	for i, n := range dayNames {
		if strings.HasPrefix(strings.TrimSpace(s), n) && len(strings.TrimSpace(s)) >= 3 {
			return i
		}
	}
	return -1
}

func minutes(s string) (int, error) {
	var h, m int
	if _, err := fmt.Sscanf(strings.TrimSpace(s), "%d:%d", &h, &m); err != nil || h < 0 || h > 24 || m < 0 || m > 59 || h == 24 && m != 0 {
		return 0, fmt.Errorf("%q is not a time", s)
	}
	return h*60 + m, nil
}

// Open reports whether t is inside the window, and when that changes next
// (the zero time if not within fifteen days: never). A change happens
// where the zone's wall clock reaches an opening or closing time, or jumps
// over one (daylight saving): those instants, both of a wall time the
// clock shows twice and the clock changes themselves, are the candidates,
// and the first at which the answer differs is the change. So a period
// that a daylight-saving change cuts short, lengthens or skips changes
// when the clock does.
func (w Window) Open(t time.Time) (open bool, next time.Time) {
	open = w.openAt(t)
	local := t.In(w.loc)
	day0 := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, w.loc)
	var cands []time.Time
	for d := 0; d <= 15; d++ {
		day := day0.AddDate(0, 0, d)
		for _, p := range w.periods {
			for _, m := range []int{p.from, p.to % (24 * 60)} {
				c := time.Date(day.Year(), day.Month(), day.Day(), m/60, m%60, 0, 0, w.loc)
				cands = append(cands, c, c.Add(-time.Hour), c.Add(time.Hour))
			}
		}
	}
	for x, until := local, local.AddDate(0, 0, 16); x.Before(until); {
		_, end := x.ZoneBounds()
		if end.IsZero() {
			break
		}
		cands = append(cands, end)
		x = end
	}
	slices.SortFunc(cands, func(a, b time.Time) int { return a.Compare(b) })
	for _, c := range cands {
		if c.After(t) && c.Sub(t) <= 15*24*time.Hour && w.openAt(c) != open {
			return open, c
		}
	}
	return open, time.Time{}
}

func (w Window) openAt(t time.Time) bool {
	t = t.In(w.loc)
	min := t.Hour()*60 + t.Minute()
	day := int(t.Weekday())
	prev := (day + 6) % 7
	for _, p := range w.periods {
		if p.from < p.to {
			if p.days[day] && min >= p.from && min < p.to {
				return true
			}
			continue
		}
		// Past midnight: open from "from" on its days, and until "to" on
		// the day after.
		if p.days[day] && min >= p.from || p.days[prev] && min < p.to {
			return true
		}
	}
	return false
}
