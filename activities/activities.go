// Package activities does the I/O of a move: it opens IMAP sessions, drives
// the copy engine and reports progress through heartbeats. Each method is one
// Temporal activity; its retry policy lives with the workflow, its failures
// are classified by internal/failure.
package activities

import (
	"cmp"
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/profile"
	"github.com/mailmove/mailmove/internal/secret"
	"go.temporal.io/sdk/client"
)

// Activities carries what every activity needs. Register one value with
// worker.RegisterActivity.
type Activities struct {
	Key    *secret.Key
	Logger *zap.Logger
	// NoProgressTimeout: a copy that moves no byte this long is cut
	// (engine.DefaultNoProgressTimeout when zero).
	NoProgressTimeout time.Duration
	// Connections caps this process's connections per server; nil: no cap.
	Connections *engine.Limiter
	// Endpoints gets a lease from the endpoint's limiter workflow for each
	// connection to an endpoint with limits across all workers
	// (docs/limits.md); nil: none asked.
	Endpoints *Endpoints
	// Sessions keeps the sessions of calls that ended well for the next
	// call of the same move on this worker; nil: every call logs on.
	Sessions *Sessions
	// Client, when set, carries the live progress of long sync calls to
	// their workflow (SignalSyncProgress), every ProgressInterval
	// (DefaultProgressInterval when zero).
	Client           client.Client
	ProgressInterval time.Duration

	tokenOnce  sync.Once
	tokenCache *tokenCache
}

// DefaultProgressInterval is how often a long sync call tells its move what
// it has done: each report costs the move's history a signal.
const DefaultProgressInterval = 30 * time.Second

// Account is one side of a move: where and as whom to log on.
type Account struct {
	Endpoint engine.Endpoint
	User     string
	Password secret.Sealed
	// Auth is the SASL mechanism (engine.AuthMechanisms); empty: the best
	// the server offers.
	Auth string `json:",omitempty"`
	// Admin logs on to User's mailbox as this admin with AdminPassword
	// (SASL PLAIN with User as authorization identity); Password is unused.
	Admin         string        `json:",omitempty"`
	AdminPassword secret.Sealed `json:",omitempty"`
	// TokenCommand, sealed (it may hold a client secret), prints an OAuth2
	// access token for MAILMOVE_USER; the worker runs it when it needs a
	// token: at logon, again when the server refuses one or it expires.
	TokenCommand secret.Sealed `json:",omitempty"`
}

// ConnectInput is the input of Connect.
type ConnectInput struct {
	Mailbox string
	Source  Account
	Target  Account
	Rules   engine.Rules
	// MeasureSizes: a dry run; sum the messages' sizes of the source
	// folders whose server gives none (engine.MeasureSizes).
	MeasureSizes bool `json:",omitempty"`
}

// ConnectResult is the folder plan of a move.
type ConnectResult struct {
	Folders     []engine.FolderPlan
	SourceCaps  []string
	TargetCaps  []string
	SourceDelim string
	TargetDelim string
	// Excluded are the source folders the rules leave out.
	Excluded []string `json:",omitempty"`
	// SourceProfile and TargetProfile are the provider profiles detected
	// (internal/profile.Detect).
	SourceProfile string `json:",omitempty"`
	TargetProfile string `json:",omitempty"`
}

// Connect logs on to both sides, reads capabilities and folders and plans the
// folder mapping.
func (a *Activities) Connect(ctx context.Context, in ConnectInput) (ConnectResult, error) {
	defer keepAlive(ctx)()
	p, err := a.open(ctx, in.Source, in.Target)
	if err != nil {
		meterFailure(ctx, err)
		return ConnectResult{}, toApplicationError(err)
	}
	if in.MeasureSizes {
		// A dry run's only call: nothing would take the sessions.
		defer p.Close()
	} else {
		defer a.done(ctx, in.Source, in.Target, p, &err)
	}
	src, tgt := p.Src, p.Tgt

	plans, excluded, err := engine.Plan(ctx, src, tgt, in.Rules)
	if err == nil && in.MeasureSizes {
		err = engine.MeasureSizes(ctx, src, plans)
	}
	if err != nil {
		meterFailure(ctx, err)
		return ConnectResult{}, toApplicationError(err)
	}
	res := ConnectResult{Folders: plans, Excluded: excluded, SourceDelim: string(src.Delim), TargetDelim: string(tgt.Delim)}
	for c := range src.Caps {
		res.SourceCaps = append(res.SourceCaps, string(c))
	}
	for c := range tgt.Caps {
		res.TargetCaps = append(res.TargetCaps, string(c))
	}
	slices.Sort(res.SourceCaps)
	slices.Sort(res.TargetCaps)
	res.SourceProfile = profile.Detect(in.Source.Endpoint.Host(), res.SourceCaps, src.ServerName(ctx))
	res.TargetProfile = profile.Detect(in.Target.Endpoint.Host(), res.TargetCaps, tgt.ServerName(ctx))
	a.logger(ctx).Info("planned folders", zap.String("mailbox", in.Mailbox), zap.Int("folders", len(plans)), zap.Int("excluded", len(excluded)))
	return res, nil
}

// CreateFoldersInput is the input of CreateFolders.
type CreateFoldersInput struct {
	Mailbox string
	Target  Account
	// Renames are done first: target folders that follow a folder renamed
	// on the source.
	Renames []FolderRename `json:",omitempty"`
	Folders []engine.FolderPlan
}

// FolderRename renames one target folder.
type FolderRename struct{ From, To string }

// CreateFolders creates the planned folders missing on the target, parents
// first, and subscribes those subscribed on the source. Running it again
// changes nothing.
func (a *Activities) CreateFolders(ctx context.Context, in CreateFoldersInput) error {
	defer keepAlive(ctx)()
	tgt, err := a.dial(ctx, failure.SideTarget, in.Target)
	if err != nil {
		return toApplicationError(err)
	}
	for _, r := range in.Renames {
		if err = tgt.RenameFolder(ctx, r.From, r.To); err != nil {
			tgt.Close()
			return toApplicationError(err)
		}
	}
	if err = tgt.CreateFolders(ctx, in.Folders); err != nil {
		tgt.Close()
		return toApplicationError(err)
	}
	a.keep(ctx, failure.SideTarget, in.Target, tgt)
	return nil
}

// SyncInput is the input of InitialSync and IncrementalSync: the cursors of
// the folders one lane of the move works through, in order.
type SyncInput struct {
	Mailbox string
	Source  Account
	Target  Account
	Cursors []engine.Cursor
	// MaxMessages bounds the messages copied by one call, so that progress
	// reaches the workflow regularly and heartbeats stay small.
	MaxMessages int
	// LatencyThreshold: above this per-message service time of a server,
	// the copy slows down (0: never).
	LatencyThreshold time.Duration
	// PropagateDeletes expunges from the target what was expunged from the
	// source since it was copied.
	PropagateDeletes bool `json:",omitempty"`
	// Rules filter messages by size and date.
	Rules engine.Rules
	// Connections is the most connection pairs the call may use: beyond
	// the first, they copy chunks of one large folder in parallel.
	Connections int `json:",omitempty"`
	// Reconcile examines every target folder for copies the move did not
	// record, even with nothing to copy (the final pass).
	Reconcile bool `json:",omitempty"`
	// MaxBytes is the call's share of a daily transfer budget (0: none):
	// it copies no more, and reports BudgetReached when it stopped there.
	// WholeBudget: the share is a whole window's budget, so a message
	// larger than it is copied alone rather than never.
	MaxBytes    int64 `json:",omitempty"`
	WholeBudget bool  `json:",omitempty"`
	// MaxMessageBytes: larger messages are bad items, not sent (the target
	// profile's limit; 0: only what the target announces).
	MaxMessageBytes int64 `json:",omitempty"`
	// Gmail ranks a Gmail source's labels under the priority rule: the
	// labels of every folder the move copies, not only this call's.
	Gmail engine.GmailRanking `json:",omitempty"`
	// Call numbers the call within its workflow run, for the live progress
	// it signals (SignalSyncProgress); 0: it sends none.
	Call int `json:",omitempty"`
}

// SignalSyncProgress is the signal a sync call that runs longer than
// Activities.ProgressInterval sends its workflow run, at most that often,
// with what it has done so far: the move's status query then shows a
// large chunk moving, without anyone reading heartbeats.
const SignalSyncProgress = "sync-progress"

// SyncProgressSignal is the payload of SignalSyncProgress.
type SyncProgressSignal struct {
	Call int
	engine.Counters
}

// SyncResult is the progress of one InitialSync or IncrementalSync call:
// a cursor per folder, the folders that are up to date, the counters.
type SyncResult = engine.LaneProgress

// SyncProgress is the heartbeat of InitialSync and IncrementalSync: enough to
// resume exactly where a dead worker stopped, and the live progress that
// `batch status` shows between two results.
type SyncProgress struct {
	Result SyncResult
}

// InitialSync copies the given folders, one after the other over one source
// and one target connection, until all are copied or MaxMessages were copied.
// A retried attempt resumes from its last heartbeat.
func (a *Activities) InitialSync(ctx context.Context, in SyncInput) (SyncResult, error) {
	return a.syncFolders(ctx, in)
}

// IncrementalSync brings already copied folders up to date: new messages
// above each folder's watermark and flag changes. It is InitialSync's
// algorithm; a separate activity type so histories and the Web UI tell the
// passes apart.
func (a *Activities) IncrementalSync(ctx context.Context, in SyncInput) (SyncResult, error) {
	return a.syncFolders(ctx, in)
}

// syncFolders runs the copy lane of one call: the engine owns connections,
// folder loop and watchdog; the activity resumes from the last heartbeat,
// heartbeats the lane's progress and turns its failure into the
// ApplicationError the workflow's policy reads.
func (a *Activities) syncFolders(ctx context.Context, in SyncInput) (SyncResult, error) {
	from := engine.NewLaneProgress(in.Cursors)
	if activity.HasHeartbeatDetails(ctx) {
		var p SyncProgress
		if err := activity.GetHeartbeatDetails(ctx, &p); err == nil && len(p.Result.Cursors) == len(in.Cursors) {
			from = p.Result
			a.logger(ctx).Info("resuming from heartbeat", zap.String("mailbox", in.Mailbox), zap.Int("copied", from.Copied))
		}
	}
	var mu sync.Mutex
	last := from
	lane := a.lane(in)
	lane.Progress = func(p SyncResult) {
		mu.Lock()
		last = p
		mu.Unlock()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lease, stop := a.report(ctx, cancel, in, func() SyncResult {
		mu.Lock()
		defer mu.Unlock()
		return last
	})
	defer stop()
	lane.Options.Fence = lease.check
	lane.Keep = func(p engine.Pair) { a.keepPair(ctx, in.Source, in.Target, p) }
	res, err := lane.Run(ctx, from)
	meter(ctx, from, res, err)
	if err == nil {
		return res, nil
	}
	activity.RecordHeartbeat(ctx, SyncProgress{Result: res})
	fd := failure.DetailsOf(err)
	if fd.Type == failure.TypeTargetFull {
		fd.QuotaUsed, fd.QuotaLimit = a.targetQuota(ctx, in.Target)
	}
	return res, applicationError(err, fd, &res)
}

// report heartbeats the progress of a sync call every few seconds, even
// while one large message or a slow server keeps the copy from
// checkpointing, so that a live attempt is never taken for a dead one (the
// lane's watchdog cuts a stuck one). With a Temporal client, each heartbeat
// is sent and answered before the next and renews the attempt's lease (nil
// without one); a refused one cancels the call with cause errLeaseLost. A
// call that runs long also signals its progress to its workflow. The
// returned func stops it.
func (a *Activities) report(ctx context.Context, cancel context.CancelCauseFunc, in SyncInput, progress func() SyncResult) (*lease, func()) {
	info := activity.GetInfo(ctx)
	interval := cmp.Or(a.ProgressInterval, DefaultProgressInterval)
	tick := min(5*time.Second, interval)
	var l *lease
	if a.Client != nil && info.HeartbeatTimeout > 0 {
		l = newLease(info.HeartbeatTimeout, time.Now)
		tick = min(tick, info.HeartbeatTimeout/4)
	}
	beat := func(p SyncResult) {
		if l == nil {
			activity.RecordHeartbeat(ctx, SyncProgress{Result: p})
			return
		}
		if !l.heartbeat(ctx, func(hctx context.Context) error {
			return a.Client.RecordActivityHeartbeat(hctx, info.TaskToken, SyncProgress{Result: p})
		}) {
			cancel(l.check())
		}
	}
	if l != nil {
		// Open the lease before the lane writes anything.
		beat(progress())
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		lastSent, sent := time.Now(), engine.Counters{}
		for {
			select {
			case <-t.C:
			case <-done:
				return
			}
			p := progress()
			beat(p)
			if a.Client == nil || in.Call == 0 || time.Since(lastSent) < interval || reflect.DeepEqual(p.Counters, sent) {
				continue
			}
			sctx, stop := context.WithTimeout(ctx, 10*time.Second)
			// Best effort: the next report or the call's result makes up for a lost one.
			if err := a.Client.SignalWorkflow(sctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, SignalSyncProgress, SyncProgressSignal{Call: in.Call, Counters: p.Counters}); err != nil {
				a.logger(ctx).Debug("progress signal", zap.Error(err))
			}
			stop()
			lastSent, sent = time.Now(), p.Counters
		}
	}()
	return l, func() { close(done) }
}

// keepAlive heartbeats an activity that has no progress worth keeping
// until the returned func is called: Temporal then notices a dead worker
// within the heartbeat timeout. The attempt after it starts over.
func keepAlive(ctx context.Context) (stop func()) {
	hb := activity.GetInfo(ctx).HeartbeatTimeout
	if hb <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(hb / 4)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// lane is the copy lane of a sync call, within this worker's connection
// caps.
func (a *Activities) lane(in SyncInput) *engine.Lane {
	return &engine.Lane{
		Dial: func(ctx context.Context) (engine.Pair, error) {
			return a.open(ctx, in.Source, in.Target)
		},
		TryDial: func(ctx context.Context) (engine.Pair, bool) {
			return a.openSpare(ctx, in.Source, in.Target)
		},
		Connections: max(in.Connections, 1),
		MaxMessages: in.MaxMessages,
		MaxBytes:    in.MaxBytes,
		WholeBudget: in.WholeBudget,
		Options: engine.Options{
			MaxMessageBytes:  in.MaxMessageBytes,
			LatencyThreshold: in.LatencyThreshold,
			PropagateDeletes: in.PropagateDeletes,
			Rules:            in.Rules,
			Reconcile:        in.Reconcile,
			Gmail:            in.Gmail,
		},
		NoProgressTimeout: a.NoProgressTimeout,
	}
}

// targetQuota reads the target's storage quota over a fresh session: the
// one whose APPEND was refused may have been cut mid-literal.
func (a *Activities) targetQuota(ctx context.Context, target Account) (used, limit int64) {
	tgt, err := a.dial(ctx, failure.SideTarget, target)
	if err != nil {
		return 0, 0
	}
	defer tgt.Close()
	used, limit, _ = tgt.StorageQuota(ctx)
	return used, limit
}

// VerifyInput is the input of Verify.
type VerifyInput struct {
	Mailbox string
	Source  Account
	Target  Account
	Folders []engine.FolderPlan
	// Cursors of the folders after the final pass (the copy's reach), and
	// what it skipped by design: bad items, and the rules' filters.
	Cursors  []engine.Cursor  `json:",omitempty"`
	BadItems []engine.BadItem `json:",omitempty"`
	Rules    engine.Rules     `json:",omitempty"`
	// Gmail is the ranking the copy used (SyncInput.Gmail).
	Gmail engine.GmailRanking `json:",omitempty"`
}

// FolderCount is the verification of one folder.
type FolderCount struct {
	Source, Target string
	engine.Comparison
}

// VerifyResult is the verification of a finished move, message by
// message.
type VerifyResult struct {
	Folders []FolderCount
	// Sums over the folders (engine.Comparison).
	Missing    int
	Duplicated int `json:",omitempty"`
	Other      int `json:",omitempty"`
	Compared   int `json:",omitempty"`
	// DeletedOnTarget: copies the user deleted on the target; not missing.
	DeletedOnTarget int `json:",omitempty"`
}

// Verify compares every folder's messages on both sides by identity:
// missing, duplicated and other mail.
func (a *Activities) Verify(ctx context.Context, in VerifyInput) (VerifyResult, error) {
	defer keepAlive(ctx)()
	p, err := a.open(ctx, in.Source, in.Target)
	if err != nil {
		meterFailure(ctx, err)
		return VerifyResult{}, toApplicationError(err)
	}
	// Closed, not parked: a verified move is done with its servers.
	defer p.Close()
	var res VerifyResult
	for i, f := range in.Folders {
		cur := f.Cursor()
		cur.LastUID = ^imap.UID(0)
		if i < len(in.Cursors) {
			cur = in.Cursors[i]
		}
		skip := func(uid imap.UID, size int64, date time.Time) bool {
			return in.Rules.Skips(size, date) || slices.ContainsFunc(in.BadItems, func(b engine.BadItem) bool { return b.Folder == f.Source && b.UID == uid })
		}
		var c engine.Comparison
		c, err = engine.CompareFolder(ctx, p.Src, p.Tgt, cur, engine.CompareOptions{Skip: skip, Gmail: in.Gmail})
		if err != nil {
			meterFailure(ctx, err)
			return VerifyResult{}, toApplicationError(err)
		}
		res.Folders = append(res.Folders, FolderCount{Source: f.Source, Target: f.Target, Comparison: c})
		res.Missing += c.Missing
		res.Duplicated += c.Duplicated
		res.Other += c.Other
		res.DeletedOnTarget += c.DeletedOnTarget
		res.Compared += c.SourceMessages
	}
	return res, nil
}

// dial logs on to one side, or takes the session its move parked.
func (a *Activities) dial(ctx context.Context, side failure.Side, acc Account) (*engine.Session, error) {
	if s := a.take(ctx, side, acc); s != nil {
		return s, nil
	}
	sl, err := a.slot(ctx, side, acc)
	if err != nil {
		return nil, err
	}
	return a.dialIn(ctx, side, acc, sl)
}

// slot is what one connection holds while it is open: a place in this
// worker's cap (Connections) and, to an endpoint with limits, a lease from
// its limiter across all workers (Endpoints; nil without limits).
type slot struct {
	local func()
	lease *Permit
}

// release gives both back; the session's AfterClose calls it.
func (sl slot) release() {
	if sl.lease != nil {
		sl.lease.Release()
	}
	sl.local()
}

// slot waits for a free connection to the account's server: this
// worker's cap first, then the endpoint's lease, both waits ending with
// ctx (the activity heartbeats meanwhile). Slots are counted per side, and
// open takes the source's before the target's, so two copies can never
// each hold the slot the other waits for.
func (a *Activities) slot(ctx context.Context, side failure.Side, acc Account) (slot, error) {
	key := slotKey(side, acc)
	// Sessions parked for other calls hold places they may never use
	// again: close them before waiting behind them. The call counts as
	// waiting first, so a session parked meanwhile is closed instead
	// (keep checks crowded).
	local, err := a.Connections.AcquireOr(ctx, key, func() { a.Sessions.evict(key) })
	if err != nil {
		return slot{}, err
	}
	// Parked sessions holding the endpoint's leases give them up when
	// its limiter answers that its cap holds requests up (OnCrowded).
	lease, err := a.Endpoints.Acquire(ctx, side, acc.Endpoint.Addr, acc.User, false)
	if err != nil {
		local()
		return slot{}, err
	}
	return slot{local: local, lease: lease}, nil
}

// trySlot takes a slot only if there is one now: this worker's cap has
// room and the endpoint's limiter grants at once (one round trip, never a
// place in line).
func (a *Activities) trySlot(ctx context.Context, side failure.Side, acc Account) (slot, bool) {
	local, ok := a.Connections.TryAcquire(slotKey(side, acc))
	if !ok {
		return slot{}, false
	}
	lease, err := a.Endpoints.Acquire(ctx, side, acc.Endpoint.Addr, acc.User, true)
	if err != nil {
		local()
		return slot{}, false
	}
	return slot{local: local, lease: lease}, true
}

func slotKey(side failure.Side, acc Account) string { return endpointSlot(side, acc.Endpoint.Addr) }

func endpointSlot(side failure.Side, addr string) string { return string(side) + " " + addr }

// dialIn logs on in a slot already taken; the slot is given back when the
// session closes. With a lease, it dials at the lease's time (the
// endpoint's rate), and a lease that could not be renewed closes the
// session, parked or in use (the limiter may have handed it on).
func (a *Activities) dialIn(ctx context.Context, side failure.Side, acc Account, sl slot) (*engine.Session, error) {
	cred, err := a.credentials(side, acc)
	if err != nil {
		sl.release()
		return nil, err
	}
	release := sl.release
	var dialed chan *engine.Session
	if sl.lease != nil {
		if err := sl.lease.Wait(ctx); err != nil {
			sl.release()
			return nil, err
		}
		lctx, cancel := context.WithCancelCause(ctx)
		dialed = make(chan *engine.Session, 1)
		closed := make(chan struct{})
		go func() {
			select {
			case <-sl.lease.Lost():
				cancel(errConnLeaseLost)
				if s := <-dialed; s != nil && !a.Sessions.discard(s) {
					// In use: its call fails and closes it.
					s.Client.Close()
				}
			case <-closed:
			}
		}()
		ctx, release = lctx, func() { close(closed); cancel(nil); sl.release() }
	}
	s, err := engine.Dial(ctx, side, acc.Endpoint, cred)
	if dialed != nil {
		dialed <- s
	}
	if err != nil {
		release()
		return nil, err
	}
	a.Sessions.loggedOn()
	s.AfterClose(release)
	return s, nil
}

// open logs on to both sides at once (two logons cost one round trip, not
// two), or takes the sessions the move parked. The source's place is
// taken before the target's, so two calls can never each hold the place
// the other waits for.
func (a *Activities) open(ctx context.Context, source, target Account) (engine.Pair, error) {
	var relS, relT slot
	src := a.take(ctx, failure.SideSource, source)
	if src == nil {
		var err error
		if relS, err = a.slot(ctx, failure.SideSource, source); err != nil {
			return engine.Pair{}, err
		}
	}
	tgt := a.take(ctx, failure.SideTarget, target)
	if tgt == nil {
		var err error
		if relT, err = a.slot(ctx, failure.SideTarget, target); err != nil {
			if src != nil {
				src.Close()
			} else {
				relS.release()
			}
			return engine.Pair{}, err
		}
	}
	return a.openIn(ctx, source, target, engine.Pair{Src: src, Tgt: tgt}, relS, relT)
}

// openSpare opens one more pair for a copy that can do without it: a
// parked one, or only if the worker's connection cap and the endpoints'
// limiters have room now, since a copy holding a pair must never wait for
// another.
func (a *Activities) openSpare(ctx context.Context, source, target Account) (engine.Pair, bool) {
	var relS, relT slot
	src := a.take(ctx, failure.SideSource, source)
	if src == nil {
		var ok bool
		if relS, ok = a.trySlot(ctx, failure.SideSource, source); !ok {
			return engine.Pair{}, false
		}
	}
	tgt := a.take(ctx, failure.SideTarget, target)
	if tgt == nil {
		var ok bool
		if relT, ok = a.trySlot(ctx, failure.SideTarget, target); !ok {
			if src != nil {
				a.keep(ctx, failure.SideSource, source, src)
			} else {
				relS.release()
			}
			return engine.Pair{}, false
		}
	}
	p, err := a.openIn(ctx, source, target, engine.Pair{Src: src, Tgt: tgt}, relS, relT)
	return p, err == nil
}

// openIn logs on to the sides have has no session yet, in slots already
// taken, both at once.
func (a *Activities) openIn(ctx context.Context, source, target Account, have engine.Pair, relS, relT slot) (engine.Pair, error) {
	type dialed struct {
		s   *engine.Session
		err error
	}
	tch := make(chan dialed, 1)
	if have.Tgt != nil {
		tch <- dialed{have.Tgt, nil}
	} else {
		go func() {
			s, err := a.dialIn(ctx, failure.SideTarget, target, relT)
			tch <- dialed{s, err}
		}()
	}
	src, serr := have.Src, error(nil)
	if src == nil {
		src, serr = a.dialIn(ctx, failure.SideSource, source, relS)
	}
	t := <-tch
	if serr != nil || t.err != nil {
		if src != nil {
			src.Close()
		}
		if t.s != nil {
			t.s.Close()
		}
		return engine.Pair{}, errors.Join(serr, t.err)
	}
	return engine.Pair{Src: src, Tgt: t.s}, nil
}

// take is the session the move parked on this worker for side, or nil;
// none while calls wait for the place it holds: the move then waits in
// line as they do.
func (a *Activities) take(ctx context.Context, side failure.Side, acc Account) *engine.Session {
	if a.crowded(side, acc) {
		a.Sessions.evict(slotKey(side, acc))
		return nil
	}
	return a.Sessions.take(ctx, side, acc)
}

// keep parks the session of a call that ended well for its move's next
// call, or closes it when calls wait for its place.
func (a *Activities) keep(ctx context.Context, side failure.Side, acc Account, s *engine.Session) {
	a.Sessions.keep(ctx, side, acc, s, func() bool { return a.crowded(side, acc) })
}

func (a *Activities) keepPair(ctx context.Context, source, target Account, p engine.Pair) {
	a.keep(ctx, failure.SideSource, source, p.Src)
	a.keep(ctx, failure.SideTarget, target, p.Tgt)
}

// crowded: calls wait for a connection to the account's server, on this
// worker (its cap) or at the endpoint's limiter (its cap).
func (a *Activities) crowded(side failure.Side, acc Account) bool {
	return a.Connections.Waiting(slotKey(side, acc)) || a.Endpoints.Crowded(side, acc.Endpoint.Addr)
}

// done parks the pair of a call that ended well (*errp nil) for its move's
// next call, and closes that of one that failed.
func (a *Activities) done(ctx context.Context, source, target Account, p engine.Pair, errp *error) {
	if *errp != nil {
		p.Close()
		return
	}
	a.keepPair(ctx, source, target, p)
}

func (a *Activities) logger(ctx context.Context) *zap.Logger {
	l := a.Logger
	if l == nil {
		l = zap.NewNop()
	}
	info := activity.GetInfo(ctx)
	return l.With(zap.String("activity", info.ActivityType.Name), zap.String("workflow_id", info.WorkflowExecution.ID), zap.Int32("attempt", info.Attempt))
}

// toApplicationError turns a classified failure into a Temporal
// ApplicationError whose type is the failure type, so that the workflow's
// policy table can look it up.
func toApplicationError(err error) error {
	return applicationError(err, failure.DetailsOf(err), nil)
}

// applicationError builds the ApplicationError of a failed activity. Its
// details are the failure.Details and, for the sync activities, the progress
// made before the failure, so that the workflow keeps it while it waits
// instead of copying those messages again.
func applicationError(err error, fd failure.Details, progress *SyncResult) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	if fd.Type == "" {
		// Unclassified: Temporal's own retry policy handles it.
		return err
	}
	details := []interface{}{fd}
	if progress != nil {
		details = append(details, *progress)
	}
	return temporal.NewApplicationErrorWithOptions(err.Error(), string(fd.Type), temporal.ApplicationErrorOptions{Details: details})
}
