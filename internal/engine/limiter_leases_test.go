package engine

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// leaseModel is one simulated worker of TestLeasesHoldLimitsRandomly.
type leaseModel struct {
	name    string
	dead    bool
	diedAt  time.Time
	held    map[string]string // lease ID → user
	pending []LeaseRequest
}

// TestLeasesHoldLimitsRandomly runs many workers against one endpoint's
// Leases with random requests, releases, abandoned requests, spare
// (NoWait) requests, workers that die and limits that change, and checks
// what Leases promises: no grant beyond MaxConnections or the per-user
// cap, grants' dials spaced so that no window [t, t+1s) holds more than
// ⌈R⌉ (dials anywhere in [DialAt, DialAt+DialTolerance+DialGuard]), a live worker's
// leases never freed under it, a dead worker's freed after LeaseTTL, and
// every request served once the others let go.
func TestLeasesHoldLimitsRandomly(t *testing.T) {
	for seed := int64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { leaseRun(t, seed) })
	}
}

func randomLimits(rng *rand.Rand) EndpointLimits {
	l := EndpointLimits{MaxConnections: rng.Intn(6)}
	if rng.Intn(4) > 0 {
		l.ConnectionRate = []float64{0.5, 1, 2, 2.5, 5, 10}[rng.Intn(6)]
	}
	if rng.Intn(3) == 0 {
		l.ConnectionsPerUser = 1 + rng.Intn(3)
	}
	return l
}

func leaseRun(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &Leases{Limits: randomLimits(rng)}
	users := []string{"a", "b", "c"}
	var workers []*leaseModel
	for i := range 2 + rng.Intn(5) {
		workers = append(workers, &leaseModel{name: fmt.Sprintf("w%d", i), held: map[string]string{}})
	}
	next := 0
	// Dial times of the current rate's segment.
	var dials []time.Time
	checkRate := func() {
		r := l.Limits.ConnectionRate
		if r <= 0 {
			return
		}
		slices.SortFunc(dials, func(a, b time.Time) int { return a.Compare(b) })
		most := int(math.Ceil(r))
		for i := range dials {
			j := i
			for j < len(dials) && dials[j].Sub(dials[i]) < time.Second {
				j++
			}
			if j-i > most {
				t.Fatalf("%d dials in [%v, +1s) at rate %g: %v", j-i, dials[i], r, dials[i:j])
			}
		}
	}
	sync := func(w *leaseModel) LeaseSyncResult {
		var heldIDs []string
		for id := range w.held {
			heldIDs = append(heldIDs, id)
		}
		slices.Sort(heldIDs)
		res := l.Sync(now, LeaseSync{Worker: w.name, Held: heldIDs, Want: w.pending, Lead: time.Duration(rng.Intn(300)) * time.Millisecond})
		fresh, freshUsers := 0, map[string]bool{}
		for _, g := range res.Granted {
			r := slices.IndexFunc(w.pending, func(p LeaseRequest) bool { return p.ID == g.ID })
			if r < 0 {
				t.Fatalf("granted %s, which %s did not ask for", g.ID, w.name)
			}
			if _, ok := w.held[g.ID]; !ok {
				fresh++
				freshUsers[w.pending[r].User] = true
				dials = append(dials, g.DialAt.Add(time.Duration(rng.Int63n(int64(DialTolerance+DialGuard)+1))))
			}
			w.held[g.ID] = w.pending[r].User
			w.pending = slices.Delete(w.pending, r, r+1)
		}
		for _, id := range res.Refused {
			w.pending = slices.DeleteFunc(w.pending, func(p LeaseRequest) bool { return p.ID == id })
		}
		if fresh > 0 {
			if n := l.Limits.MaxConnections; n > 0 && len(l.Held) > n {
				t.Fatalf("granted with %d leases held, cap %d", len(l.Held), n)
			}
			if p := l.Limits.ConnectionsPerUser; p > 0 {
				per := map[string]int{}
				for _, x := range l.Held {
					per[x.User]++
					if per[x.User] > p && freshUsers[x.User] {
						t.Fatalf("granted with %d leases of user %s held, cap %d", per[x.User], x.User, p)
					}
				}
			}
		}
		for _, p := range w.pending {
			if p.NoWait {
				t.Fatalf("NoWait request %s neither granted nor refused", p.ID)
			}
		}
		return res
	}
	for step := 0; step < 600; step++ {
		now = now.Add(time.Duration(rng.Intn(400)) * time.Millisecond)
		if rng.Intn(100) == 0 {
			// A new rate starts a new segment of dials.
			checkRate()
			dials = nil
			l.Limits = randomLimits(rng)
		}
		w := workers[rng.Intn(len(workers))]
		if w.dead {
			continue
		}
		switch op := rng.Intn(20); {
		case op < 6:
			for range 1 + rng.Intn(3) {
				next++
				w.pending = append(w.pending, LeaseRequest{ID: fmt.Sprintf("%s#%d", w.name, next), User: users[rng.Intn(len(users))], NoWait: rng.Intn(4) == 0})
			}
		case op < 11:
			for id := range w.held {
				if rng.Intn(2) == 0 {
					delete(w.held, id)
				}
			}
		case op == 11 && len(w.pending) > 0:
			// A copy cancelled while it waits.
			w.pending = w.pending[1:]
		case op == 12 && rng.Intn(10) == 0:
			w.dead, w.diedAt = true, now
			continue
		}
		sync(w)
		// A live worker's leases are never freed under it.
		for _, v := range workers {
			if v.dead {
				for _, x := range l.Held {
					if x.Worker == v.name && now.Sub(v.diedAt) > LeaseTTL+DialTolerance+GrantHorizon+MaxLead {
						t.Fatalf("lease %s of %s, dead since %v, still held at %v", x.ID, v.name, v.diedAt, now)
					}
				}
				continue
			}
			for id := range v.held {
				if !slices.ContainsFunc(l.Held, func(x Lease) bool { return x.ID == id }) {
					// Only possible when the worker did not renew for
					// LeaseTTL; the simulation syncs far more often.
					t.Fatalf("lease %s of live %s freed", id, v.name)
				}
			}
		}
	}
	checkRate()
	// Everyone lets go and asks on: every request is served.
	for _, w := range workers {
		w.held = map[string]string{}
	}
	for round := 0; ; round++ {
		waiting := 0
		for _, w := range workers {
			if w.dead {
				continue
			}
			w.held = map[string]string{}
			sync(w)
			waiting += len(w.pending)
		}
		if waiting == 0 {
			break
		}
		if round > 10000 {
			t.Fatalf("requests never served: %+v", l.Waiting)
		}
		now = now.Add(250 * time.Millisecond)
	}
}

func TestLeasesSpacingAndGrantOrder(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &Leases{Limits: EndpointLimits{MaxConnections: 2, ConnectionRate: 2}}
	res := l.Sync(now, LeaseSync{Worker: "a", Want: []LeaseRequest{{ID: "a1"}, {ID: "a2"}, {ID: "a3"}}})
	if len(res.Granted) != 2 || res.Retry != LeasePoll {
		t.Fatalf("first sync = %+v, want 2 grants and a retry", res)
	}
	if d := res.Granted[1].DialAt.Sub(res.Granted[0].DialAt); d != 625*time.Millisecond {
		t.Fatalf("spacing %v, want 625ms ((1s+100ms+150ms)/2)", d)
	}
	// b asks while a holds both: b waits behind a3.
	res = l.Sync(now, LeaseSync{Worker: "b", Want: []LeaseRequest{{ID: "b1"}}})
	if len(res.Granted) != 0 || res.Crowded != 2 {
		t.Fatalf("b's sync = %+v, want nothing granted beyond the cap, and a3 and b1 held up by it", res)
	}
	// a renews: it hears of the line (and may give up idle connections).
	if res := l.Sync(now, LeaseSync{Worker: "a", Held: []string{"a1", "a2"}, Want: []LeaseRequest{{ID: "a3"}}}); res.Crowded != 2 {
		t.Fatalf("a's renewal = %+v, want Crowded 2", res)
	}
	// a releases one; b asks first but a3 is ahead of it in line.
	res = l.Sync(now.Add(time.Second), LeaseSync{Worker: "a", Held: []string{"a1"}, Want: []LeaseRequest{{ID: "a3"}}})
	if len(res.Granted) != 1 || res.Granted[0].ID != "a3" {
		t.Fatalf("a's sync = %+v, want a3 granted", res)
	}
	// A spare is refused, not queued.
	res = l.Sync(now.Add(time.Second), LeaseSync{Worker: "b", Want: []LeaseRequest{{ID: "b1"}, {ID: "b2", NoWait: true}}})
	if len(res.Granted) != 0 || !slices.Equal(res.Refused, []string{"b2"}) {
		t.Fatalf("b's sync = %+v, want b2 refused", res)
	}
	// a's worker dies: its leases expire and b gets one.
	res = l.Sync(now.Add(time.Second+LeaseTTL+2*time.Second), LeaseSync{Worker: "b", Want: []LeaseRequest{{ID: "b1"}}})
	if len(res.Granted) != 1 {
		t.Fatalf("after a's leases expired b got %+v", res)
	}
	// An answer lost: asking again gives the same grant.
	again := l.Sync(now.Add(time.Second+LeaseTTL+3*time.Second), LeaseSync{Worker: "b", Want: []LeaseRequest{{ID: "b1"}}})
	if len(again.Granted) != 1 || again.Granted[0] != res.Granted[0] || len(l.Held) != 1 {
		t.Fatalf("asked again: %+v (held %d), want the same grant %+v", again, len(l.Held), res.Granted[0])
	}
}
