package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/memserver"
	"github.com/mailmove/mailmove/tests/testbed"
)

// The randomised fault test: thousands of schedules of attempts at copying
// one folder, each attempt resumed from any cursor an earlier one saved
// (not only the last), with connections cut at random bytes on either
// side, fences that close, a second writer from an older cursor, a target
// that renumbers its folder or rewrites what it stores, a target already
// holding part of the folder. After the faults the copy is finished
// without faults, and the target must hold every source message exactly
// once, and its own mail untouched.
//
// MAILMOVE_SCHEDULES sets how many schedules run (default 2,000; the
// documented long run is 100,000); MAILMOVE_SEED replays one schedule.

const rewriteHeader = "X-Scanned: clean\r\n"

func TestRandomFaultSchedules(t *testing.T) {
	runSchedules(t, 2000, nil)
}

// TestRandomFaultSchedulesOnDovecot runs fifty schedules against a real
// Dovecot target (MULTIAPPEND batches cut mid-command, LITERAL+, a real
// server's UIDs and APPENDUID); MAILMOVE_SCHEDULES scales them with the
// in-memory ones.
func TestRandomFaultSchedulesOnDovecot(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	runSchedules(t, 50, testbed.StartForTest(t, testbed.Options{Name: "random-target"}))
}

func runSchedules(t *testing.T, n int, dovecot *testbed.Server) {
	first := uint64(time.Now().UnixNano())
	if v, err := strconv.Atoi(os.Getenv("MAILMOVE_SCHEDULES")); err == nil {
		n = max(v*n/2000, 1)
	}
	if v, err := strconv.ParseUint(os.Getenv("MAILMOVE_SEED"), 10, 64); err == nil {
		n, first = 1, v
	}
	if testing.Short() {
		n = max(n/10, 1)
	}
	var failed atomic.Int32
	var stats scheduleStats
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		seed := first + uint64(i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if failed.Load() >= 3 {
				return
			}
			if err := runSchedule(seed, &stats, dovecot); err != nil {
				failed.Add(1)
				t.Errorf("schedule %d failed (replay: MAILMOVE_SEED=%d go test -run %s ./internal/engine): %v", seed, seed, t.Name(), err)
			}
		}()
	}
	wg.Wait()
	if failed.Load() == 0 {
		t.Logf("%d schedules from seed %d: %s; 0 lost, 0 duplicated", n, first, stats.String())
	}
}

type scheduleStats struct {
	attempts, cuts, fences, zombies, renumbers, rewrites, populated, oldResumes, messages atomic.Int64
}

func (s *scheduleStats) String() string {
	return fmt.Sprintf("%d attempts, %d cut connections, %d closed fences, %d second writers, %d renumbered targets, %d rewriting targets, %d populated targets, %d resumes from an older cursor, %d messages checked",
		s.attempts.Load(), s.cuts.Load(), s.fences.Load(), s.zombies.Load(), s.renumbers.Load(), s.rewrites.Load(), s.populated.Load(), s.oldResumes.Load(), s.messages.Load())
}

// schedule is one randomised run.
type schedule struct {
	rng              *rand.Rand
	stats            *scheduleStats
	srcAddr, tgtAddr string
	srcCred, tgtCred Credentials
	srcCut, tgtCut   *cutter
	saved            []Cursor // every cursor an attempt saved, oldest first
	trace            []string // what happened, for a failing schedule's report
}

func (s *schedule) logf(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
}

func cursorString(c Cursor) string {
	return fmt.Sprintf("{last %d, target %d/%d, map %v, claims %v}", c.LastUID, c.TargetUIDValidity, c.TargetUIDNext, c.Map, c.Claims)
}

func runSchedule(seed uint64, stats *scheduleStats, dovecot *testbed.Server) error {
	rng := rand.New(rand.NewPCG(seed, 0x6d61696c))
	srcUser := memserver.NewUser(nopT{}, "Work")
	srcAddr, stopSrc, err := serve(memserver.Sessions(srcUser))
	if err != nil {
		return err
	}
	defer stopSrc()
	s := &schedule{rng: rng, stats: stats, srcCred: Credentials{User: memserver.User, Password: memserver.Password}}
	tgtAddr, tgt, stopTgt, err := s.target(seed, dovecot)
	if err != nil {
		return err
	}
	defer stopTgt()
	s.srcCut, s.tgtCut = newCutter(srcAddr), newCutter(tgtAddr)
	defer s.srcCut.close()
	defer s.tgtCut.close()
	s.srcAddr, s.tgtAddr = s.srcCut.addr(), s.tgtCut.addr()

	messages, foreign := s.fill(srcUser, tgt)
	s.saved = []Cursor{fresh("Work")}
	for range 2 + rng.IntN(6) {
		if err := s.attempt(); err != nil {
			return err
		}
	}
	// The faults are over: finish from the last saved cursor, then the
	// final pass.
	cur := s.saved[len(s.saved)-1]
	for range 100 {
		next, st, err := s.run(cur, Options{}, nil)
		if err != nil {
			return fmt.Errorf("fault-free attempt: %w", err)
		}
		cur = next
		if !st.More {
			break
		}
	}
	if _, _, err := s.run(cur, Options{Reconcile: true}, nil); err != nil {
		return fmt.Errorf("final pass: %w", err)
	}
	stats.messages.Add(int64(len(messages)))
	if err := s.check(messages, foreign); err != nil {
		if os.Getenv("MAILMOVE_SEED") != "" {
			return fmt.Errorf("%w\n%s", err, strings.Join(s.trace, "\n"))
		}
		return err
	}
	return nil
}

// target starts the schedule's target: an in-memory server, a quarter of
// them rewriting what they store, or an account of its own on dovecot.
func (s *schedule) target(seed uint64, dovecot *testbed.Server) (string, appender, func(), error) {
	if dovecot != nil {
		user := testbed.User{Name: fmt.Sprintf("s%d@example.com", seed), Password: "pw"}
		if err := dovecot.AddUser(user); err != nil {
			return "", nil, nil, err
		}
		s.tgtCred = Credentials{User: user.Name, Password: user.Password}
		sess, err := Dial(context.Background(), failure.SideTarget, Endpoint{Addr: dovecot.Addr(), Security: SecurityNone}, s.tgtCred)
		if err != nil {
			return "", nil, nil, err
		}
		if err := sess.Client.Create("Work", nil).Wait(); err != nil {
			sess.Close()
			return "", nil, nil, err
		}
		return dovecot.Addr(), sessionAppender{sess}, func() { sess.Close() }, nil
	}
	s.tgtCred = s.srcCred
	u := memserver.NewUser(nopT{}, "Work")
	rewrite := s.rng.IntN(4) == 0
	if rewrite {
		s.stats.rewrites.Add(1)
	}
	addr, stop, err := serve(func() imapserver.Session {
		sess := memserver.Sessions(u)().(*memserver.Session)
		if rewrite {
			sess.Rewrite = func(b []byte) []byte { return append([]byte(rewriteHeader), b...) }
		}
		return sess
	})
	return addr, u, stop, err
}

// appender stores a message in a folder: an in-memory account, or a
// session.
type appender interface {
	Append(string, imap.LiteralReader, *imap.AppendOptions) (*imap.AppendData, error)
}

type sessionAppender struct{ s *Session }

func (a sessionAppender) Append(folder string, r imap.LiteralReader, opts *imap.AppendOptions) (*imap.AppendData, error) {
	cmd := a.s.Client.Append(folder, r.Size(), opts)
	if _, err := io.Copy(cmd, r); err != nil {
		return nil, err
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	return cmd.Wait()
}

// fill puts 10 to 70 messages in the source, some of them twice, and
// part of them, with mail of its own, on the target (an earlier run).
func (s *schedule) fill(src, tgt appender) (messages, foreign [][]byte) {
	populated := s.rng.IntN(5) == 0
	if populated {
		s.stats.populated.Add(1)
	}
	base := s.rng.IntN(1 << 20)
	for i := range 10 + s.rng.IntN(60) {
		k := base + i
		if i > 0 && s.rng.IntN(20) == 0 {
			k = base + s.rng.IntN(i) // the same message again
		}
		raw := memserver.Message(k)
		date := time.Date(2020, 1, 1, 0, 0, k%3600, 0, time.UTC)
		var flags []imap.Flag
		if s.rng.IntN(2) == 0 {
			flags = append(flags, imap.FlagSeen)
		}
		put(src, raw, date, flags)
		messages = append(messages, raw)
		if populated && s.rng.IntN(2) == 0 {
			put(tgt, raw, date, nil)
		}
	}
	if populated || s.rng.IntN(4) == 0 {
		for i := range 1 + s.rng.IntN(5) {
			raw := []byte(fmt.Sprintf("From: own@example.com\r\nSubject: the user's own %d\r\n\r\nmine\r\n", i))
			put(tgt, raw, time.Now(), []imap.Flag{imap.FlagDeleted})
			foreign = append(foreign, raw)
		}
	}
	return messages, foreign
}

func put(u appender, raw []byte, date time.Time, flags []imap.Flag) {
	if _, err := u.Append("Work", sized{bytes.NewReader(raw)}, &imap.AppendOptions{Time: date, Flags: flags}); err != nil {
		panic(err)
	}
}

type sized struct{ *bytes.Reader }

func (s sized) Size() int64 { return s.Reader.Size() }

// attempt is one attempt with at most one fault of its own, resumed from
// a cursor an earlier attempt saved.
func (s *schedule) attempt() error {
	s.stats.attempts.Add(1)
	from := s.saved[len(s.saved)-1]
	if s.rng.IntN(4) == 0 {
		from = s.saved[s.rng.IntN(len(s.saved))]
		s.stats.oldResumes.Add(1)
	}
	opts := Options{MaxMessages: []int{0, 7, 25, 60}[s.rng.IntN(4)], CheckpointEvery: time.Nanosecond}
	switch s.rng.IntN(10) {
	case 0, 1, 2, 3, 4:
		// A connection cut at a random byte, either side, either way.
		c := []*cutter{s.srcCut, s.tgtCut}[s.rng.IntN(2)]
		toServer, after := s.rng.IntN(2) == 0, 1+s.rng.IntN(40000)
		c.arm(toServer, after)
		s.logf("cut %v to server %v after %d", c == s.tgtCut, toServer, after)
		s.stats.cuts.Add(1)
	case 5:
		// The lease is lost after a few writes.
		left := s.rng.IntN(30)
		opts.Fence = func() error {
			if left--; left < 0 {
				return errLeaseLost
			}
			return nil
		}
		s.stats.fences.Add(1)
		s.logf("fence closes after %d writes", left)
	case 6:
		// A second writer from an older cursor runs whole between this
		// attempt's look at the target and its first write.
		old := s.saved[s.rng.IntN(len(s.saved))]
		ran := false
		opts.Fence = func() error {
			if !ran {
				ran = true
				zc, zst, zerr := s.run(old, Options{}, nil) // its cursors are never saved
				s.logf("  zombie from %s -> %s copied %d matched %d err %v", cursorString(old), cursorString(zc), zst.Copied, zst.Matched, zerr)
			}
			return nil
		}
		s.stats.zombies.Add(1)
	case 7:
		if err := renumberUser(s.tgtAddr, s.tgtCred); err != nil {
			return err
		}
		s.stats.renumbers.Add(1)
		s.logf("renumbered the target")
	}
	lost := s.rng.IntN(5) == 0 // the attempt's result never reaches the workflow
	var checkpoints []Cursor
	s.logf("attempt from %s max %d", cursorString(from), opts.MaxMessages)
	cur, st, err := s.run(from, opts, func(c Cursor) { checkpoints = append(checkpoints, c) })
	s.logf("  -> %s copied %d matched %d removed %d err %v lost %v", cursorString(cur), st.Copied, st.Matched, st.DuplicatesRemoved, err, lost)
	s.srcCut.arm(false, 0)
	s.tgtCut.arm(false, 0)
	for _, c := range checkpoints {
		if s.rng.IntN(3) == 0 { // heartbeats are sent now and then
			s.saved = append(s.saved, c)
		}
	}
	if !lost {
		s.saved = append(s.saved, cur)
	}
	return nil
}

// run is one SyncFolder over fresh sessions; errors from the faults are
// expected, the cursor is valid anyway.
func (s *schedule) run(from Cursor, opts Options, checkpoint func(Cursor)) (Cursor, Stats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ep := func(a string) Endpoint { return Endpoint{Addr: a, Security: SecurityNone} }
	src, err := Dial(ctx, failure.SideSource, ep(s.srcAddr), s.srcCred)
	if err != nil {
		return from, Stats{}, err
	}
	defer src.Close()
	tgt, err := Dial(ctx, failure.SideTarget, ep(s.tgtAddr), s.tgtCred)
	if err != nil {
		return from, Stats{}, err
	}
	defer tgt.Close()
	if checkpoint != nil {
		opts.Checkpoint = func(c Cursor, _ Stats) { checkpoint(c) }
	}
	return SyncFolder(ctx, src, tgt, from, opts)
}

// check compares the folders message by message: every source message
// exactly once on the target (as the target stores it), the target's own
// mail still there, nothing else.
func (s *schedule) check(messages, foreign [][]byte) error {
	want := map[[32]byte]int{}
	for _, m := range messages {
		want[sha256.Sum256(m)]++
	}
	for _, m := range foreign {
		want[sha256.Sum256(m)]++
	}
	got, err := folderHashes(s.tgtAddr, s.tgtCred)
	if err != nil {
		return err
	}
	for h, n := range want {
		if got[h] != n {
			return fmt.Errorf("a message the target should hold %d times it holds %d times (%d source messages, %d of the target's own)", n, got[h], len(messages), len(foreign))
		}
	}
	for h, n := range got {
		if want[h] == 0 {
			return fmt.Errorf("the target holds %d copies of a message that is not the source's", n)
		}
	}
	return nil
}

// folderHashes returns the SHA-256 of each message of Work, as the source
// sent it (a rewriting target's header taken off).
func folderHashes(addr string, cred Credentials) (map[[32]byte]int, error) {
	s, err := Dial(context.Background(), failure.SideTarget, Endpoint{Addr: addr, Security: SecurityNone}, cred)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	sel, err := s.Client.Select("Work", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		return map[[32]byte]int{}, err
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := s.Client.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		return nil, err
	}
	out := map[[32]byte]int{}
	for _, b := range bufs {
		raw := b.BodySection[0].Bytes
		for bytes.HasPrefix(raw, []byte(rewriteHeader)) { // once more for each time renumber stored it again
			raw = raw[len(rewriteHeader):]
		}
		out[sha256.Sum256(raw)]++
	}
	return out, nil
}

// renumberUser gives the target folder a new UIDVALIDITY and new UIDs.
func renumberUser(addr string, cred Credentials) error {
	var fatal error
	s, err := Dial(context.Background(), failure.SideTarget, Endpoint{Addr: addr, Security: SecurityNone}, cred)
	if err != nil {
		return err
	}
	defer s.Close()
	ft := &fatalT{err: &fatal}
	func() {
		defer func() { recover() }()
		renumber(ft, s, "Work")
	}()
	return fatal
}

// serve runs an in-memory server outside a test's lifetime.
func serve(newSession func() imapserver.Session) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return newSession(), nil, nil
		},
		Logger:       quietLog{},
		InsecureAuth: true,
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
	})
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...interface{}) {}
func (quietLog) Println(...interface{})        {}

// cutter is a TCP proxy that cuts the next connection it accepts after a
// given number of bytes in one direction, once armed.
type cutter struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	toServer bool
	after    int // 0: not armed
}

func newCutter(upstream string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	c := &cutter{ln: ln, upstream: upstream}
	go c.accept()
	return c
}

func (c *cutter) addr() string { return c.ln.Addr().String() }
func (c *cutter) close()       { c.ln.Close() }

// arm cuts the next connection after n bytes towards the server (or the
// client); n 0 disarms.
func (c *cutter) arm(toServer bool, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.toServer, c.after = toServer, n
}

func (c *cutter) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		toServer, after := c.toServer, c.after
		c.after = 0
		c.mu.Unlock()
		up, err := net.Dial("tcp", c.upstream)
		if err != nil {
			conn.Close()
			continue
		}
		closeBoth := sync.OnceFunc(func() { conn.Close(); up.Close() })
		pump := func(dst, src net.Conn, limit int) {
			defer closeBoth()
			if limit > 0 {
				io.CopyN(dst, src, int64(limit))
				return
			}
			io.Copy(dst, src)
		}
		limitUp, limitDown := 0, 0
		if toServer {
			limitUp = after
		} else {
			limitDown = after
		}
		go pump(up, conn, limitUp)
		go pump(conn, up, limitDown)
	}
}

// nopT and fatalT let test helpers run outside a test.
type nopT struct{ testing.TB }

func (nopT) Helper()                           {}
func (nopT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (nopT) Cleanup(func())                    {}

type fatalT struct {
	testing.TB
	err *error
}

func (fatalT) Helper() {}
func (f *fatalT) Fatal(args ...any) {
	*f.err = errors.New(fmt.Sprint(args...))
	panic(*f.err)
}
func (f *fatalT) Fatalf(format string, args ...any) {
	*f.err = fmt.Errorf(format, args...)
	panic(*f.err)
}
