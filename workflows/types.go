// Package workflows is the public contract of a move: the MailboxMove and
// Batch workflows, their inputs, results and status types, and the names of
// their queries, updates and signals. Nothing in it does I/O.
package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/activities"
	"github.com/mailmove/mailmove/internal/engine"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
	"github.com/mailmove/mailmove/internal/profile"
)

// TaskQueue is the task queue workers poll and starters use.
const TaskQueue = "mailmove"

// Names of the workflows' handlers.
const (
	QueryStatus        = "status"        // MailboxMove and Batch: current status
	QueryState         = "state"         // MailboxMove: the whole MoveState, for `batch retry`
	UpdateComplete     = "complete"      // MailboxMove: finish the move after its sync
	SignalResume       = "resume"        // MailboxMove: end a wait now (e.g. after the admin raised a quota)
	SignalMoveReleased = "move-released" // MailboxMove → its Batch: stop counting me against the concurrency
	SignalCompleteAll  = "complete-all"  // Batch: the moves it has not started yet complete after their initial sync
	SignalCompleteMove = "complete-move" // Batch: this mailbox (string), if not started yet, completes after its initial sync
	SignalCompleteAt   = "complete-at"   // Batch: complete every move at this time (time.Time)
	SignalComplete     = "complete"      // Batch → MailboxMove: as UpdateComplete, from a workflow (which cannot send updates)
	SignalMoveAcquire  = "move-acquire"  // MailboxMove → its Batch: count me again before I copy (a pass, a retry)
	SignalSlotGranted  = "slot-granted"  // Batch → MailboxMove: copy now, you count against the concurrency
	SignalConcurrency  = "concurrency"   // Batch: a new --concurrency (int)
	SignalPause        = "pause"         // Batch: true pauses it (moves stop copying at their next safe point), false resumes it
	SignalYield        = "yield"         // Batch → MailboxMove: give your slot back at your next safe point and ask again
	SignalAddMoves     = "add-moves"     // Batch: these mailboxes ([]string) join it; the CLI starts their moves next
	SignalMoveClosed   = "move-closed"   // gated MailboxMove → its Batch: I ended (MoveClosed)
)

// MoveClosed is what a gated move tells its batch when it ends.
type MoveClosed struct {
	Mailbox string
	Error   string `json:",omitempty"`
}

// Search attributes, registered on the dev server by `mailmove dev-server`
// and to be registered with `temporal operator search-attribute create` on
// any other cluster.
var (
	SearchAttrBatch        = temporal.NewSearchAttributeKeyKeyword("MailmoveBatch")
	SearchAttrStatus       = temporal.NewSearchAttributeKeyKeyword("MailmoveStatus")
	SearchAttrStatusDetail = temporal.NewSearchAttributeKeyKeyword("MailmoveStatusDetail")
	SearchAttrMailbox      = temporal.NewSearchAttributeKeyKeyword("MailmoveMailbox")
)

// SearchAttributes lists the custom search attributes as NAME=TYPE for
// `temporal server start-dev --search-attribute`.
var SearchAttributes = []string{"MailmoveBatch=Keyword", "MailmoveStatus=Keyword", "MailmoveStatusDetail=Keyword", "MailmoveMailbox=Keyword"}

// MoveWorkflowID is the workflow ID of one mailbox's move in a batch. It is
// derived, not random, so starting the same move twice is refused by the
// server instead of copying the mailbox twice.
func MoveWorkflowID(batch, mailbox string) string {
	return fmt.Sprintf("mailmove/%s/%s", batch, strings.ToLower(mailbox))
}

// BatchWorkflowID is the workflow ID of a batch.
func BatchWorkflowID(batch string) string {
	return "mailmove-batch/" + batch
}

// Status is where a move is, after Exchange's move requests; StatusDetail
// says what it is doing there.
type Status string

const (
	StatusQueued                Status = "Queued"
	StatusInProgress            Status = "InProgress"
	StatusSynced                Status = "Synced"
	StatusCompleting            Status = "Completing"
	StatusCompleted             Status = "Completed"
	StatusCompletedWithWarnings Status = "CompletedWithWarnings"
	StatusFailed                Status = "Failed"
	// StatusSuspended: waiting for the admin (a full target with
	// overQuota: wait); `mailmove move resume` or the policy's interval
	// ends the wait.
	StatusSuspended Status = "Suspended"
)

// Terminal reports whether the move has ended.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusCompletedWithWarnings || s == StatusFailed
}

// StatusDetail values. Waits are named after their cause and side, so the
// Web UI can filter e.g. MailmoveStatusDetail STARTS_WITH "StalledDueToTarget".
const (
	DetailQueued                  = "Queued"
	DetailConnecting              = "Connecting"
	DetailCreatingFolderHierarchy = "CreatingFolderHierarchy"
	DetailCopyingMessages         = "CopyingMessages"
	DetailSynced                  = "Synced"
	DetailIncrementalSync         = "IncrementalSync"
	DetailFinalIncrementalSync    = "FinalIncrementalSync"
	DetailVerifying               = "Verifying"
	DetailCompleted               = "Completed"
	DetailWaitingForLogonRetry    = "WaitingForLogonRetry"
	DetailRelinquishedLocked      = "Relinquished_MailboxLocked"
	DetailWaitingForQuota         = "WaitingForQuota"
	DetailWaitingForBatchSlot     = "WaitingForBatchSlot"
	// DetailStalledPrefix + "Source_" or "Target_" + a reason such as
	// Unavailable, ConnectionDropped, TooManyConnections.
	DetailStalledPrefix = "StalledDueTo"
	// DetailFailedPrefix + the failure type, e.g. Failed_LogonFailed.
	DetailFailedPrefix = "Failed_"
)

// Grade is a verified move's data consistency, after Microsoft's move
// requests.
type Grade string

const (
	// GradePerfect: every source message is on the target exactly once.
	GradePerfect Grade = "Perfect"
	// GradeGood: every message the move copies is there exactly once; it
	// skipped some by design (bad items the target refused, keywords it
	// does not keep) or the user deleted copies on the target, all
	// reported.
	GradeGood Grade = "Good"
	// GradeInvestigate: messages missing or copied twice, at most 1 %.
	GradeInvestigate Grade = "Investigate"
	// GradePoor: more than 1 % missing or copied twice.
	GradePoor Grade = "Poor"
)

// CompleteMode says whether a move finishes by itself after its initial sync.
type CompleteMode string

const (
	CompleteAuto   CompleteMode = "auto"   // finalize right after the initial sync
	CompleteManual CompleteMode = "manual" // incremental passes until `batch complete`
)

// Settings tune a move. Zero values take the defaults of withDefaults.
type Settings struct {
	Complete            CompleteMode
	IncrementalInterval time.Duration
	// Policy says what the move does about each kind of failure; nil means
	// policy.Default().
	Policy *policy.Policy `json:",omitempty"`
	// ConnectionsPerMove is the most connections the move holds to each
	// server: its folders are copied in that many lanes, and a lane that
	// finished lends its connection pair to a large folder's copy. (The
	// wire name is the one runs started before the rename carry.)
	ConnectionsPerMove int `json:"FolderConcurrency"`
	// Rules: folders to leave out or rename, a target root, message size
	// and age filters.
	Rules engine.Rules `json:",omitempty"`
	// PropagateDeletes: a message expunged from the source after it was
	// copied is expunged from the target at the next pass. Off by default:
	// a migration that deletes on the target is not what most admins expect.
	PropagateDeletes bool `json:",omitempty"`
	// PassesPerRun: the move continues as new after this many incremental
	// passes (or sooner when Temporal suggests it), so a move that syncs for
	// weeks keeps a short history.
	PassesPerRun int `json:",omitempty"`
	// ChunkMessages is the number of messages one activity copies before
	// it reports back.
	ChunkMessages    int
	HeartbeatTimeout time.Duration
	// SourceProfile and TargetProfile name the sides' provider profiles
	// (internal/profile: connections per user, message size, daily
	// transfer budgets); empty: detected at logon.
	SourceProfile string `json:",omitempty"`
	TargetProfile string `json:",omitempty"`
	// Profiles changes built-in profiles' numbers (--profiles FILE).
	Profiles map[string]profile.Limits `json:",omitempty"`
}

// Defaults of Settings.
const (
	DefaultIncrementalInterval = 30 * time.Minute
	DefaultConnectionsPerMove  = 3
	DefaultChunkMessages       = 5000
	DefaultPassesPerRun        = 100
	DefaultHeartbeatTimeout    = time.Minute
)

func (s Settings) withDefaults() Settings {
	if s.Complete == "" {
		s.Complete = CompleteAuto
	}
	if s.IncrementalInterval <= 0 {
		s.IncrementalInterval = DefaultIncrementalInterval
	}
	if s.Policy == nil {
		p := policy.Default()
		s.Policy = &p
	}
	if s.ConnectionsPerMove <= 0 {
		s.ConnectionsPerMove = DefaultConnectionsPerMove
	}
	if s.PassesPerRun <= 0 {
		s.PassesPerRun = DefaultPassesPerRun
	}
	if s.ChunkMessages <= 0 {
		s.ChunkMessages = DefaultChunkMessages
	}
	if s.HeartbeatTimeout <= 0 {
		s.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	return s
}

// MailboxMoveInput starts the move of one mailbox.
type MailboxMoveInput struct {
	Batch    string
	Mailbox  string // the EmailAddress column
	Source   activities.Account
	Target   activities.Account
	Settings Settings
	// Gated: the CLI started the move into its batch (batch start, add,
	// retry) rather than the batch as a child: it asks the batch
	// (BatchWorkflowID(Batch)) for a slot before it first copies, and tells
	// it when it ends (SignalMoveClosed).
	Gated bool `json:",omitempty"`
	// State is set only by continue-as-new.
	State *MoveState `json:",omitempty"`
}

// FolderState is the progress of one folder.
type FolderState struct {
	Plan   engine.FolderPlan
	Cursor engine.Cursor
	// Copied is true once the folder's initial copy is finished.
	Copied bool
	// Gone is true once the source folder disappeared (deleted, not
	// renamed): its copy stays on the target and is no longer synced.
	Gone bool `json:",omitempty"`
}

// MoveState is all the resumable progress of a move, carried whole across
// continue-as-new.
type MoveState struct {
	Status       Status
	StatusDetail string
	// Reason says why the move failed, waits, or completed with warnings.
	Reason string
	// FoldersCreated is true once CreateFolders ran.
	FoldersCreated bool
	Folders        []FolderState
	MessagesTotal  int
	BytesTotal     int64
	engine.Counters
	FoldersExcluded   []string
	FoldersAdded      int // source folders that appeared after the initial sync
	FoldersRenamed    int
	FoldersDeleted    int
	IncrementalPasses int
	// PassesThisRun counts the incremental passes since the last
	// continue-as-new.
	PassesThisRun     int `json:",omitempty"`
	CompleteRequested bool
	Started           time.Time
	SyncedAt          time.Time
	Verify            *activities.VerifyResult `json:",omitempty"`
	// Repairs counts the passes that synced folders again from scratch
	// because the verification found messages missing or copied twice.
	Repairs int `json:",omitempty"`

	// Failure accounting.
	Attempts         map[failure.Type]int     `json:",omitempty"` // failed attempts counted against each rule's budget
	LogonFailures    int                      // failed logon attempts, all told
	LockRelinquishes int                      // times the move gave way to a lock
	StallTime        map[string]time.Duration `json:",omitempty"` // time spent waiting out failures, by StatusDetail
	NextAttemptAt    time.Time                `json:",omitempty"`
	LastFailure      *failure.Details         `json:",omitempty"`
	Released         bool                     // the batch no longer counts this move against its concurrency

	// SourceProfile and TargetProfile are the sides' provider profiles,
	// as named in the settings or detected at logon.
	SourceProfile string `json:",omitempty"`
	TargetProfile string `json:",omitempty"`
	// Quota counts, per side with a daily transfer budget, the bytes
	// copied in its window.
	Quota map[failure.Side]*QuotaLedger `json:",omitempty"`
}

// MoveStatus is what the status query returns: the counters without cursors.
type MoveStatus struct {
	Batch           string
	Mailbox         string
	Status          Status
	StatusDetail    string
	Reason          string `json:",omitempty"`
	PercentComplete int
	FoldersTotal    int
	FoldersCopied   int
	MessagesTotal   int
	BytesTotal      int64
	engine.Counters
	FoldersExcluded []string `json:",omitempty"`
	// FoldersRenamedForTarget lists, as "Source → Target: why", the
	// folders whose target name differs from their own beyond the
	// separator: a character the target cannot hold, a name another
	// folder has.
	FoldersRenamedForTarget []string `json:",omitempty"`
	FoldersAdded            int
	FoldersRenamed          int
	FoldersDeleted          int
	IncrementalPasses       int
	LogonFailures           int
	LockRelinquishes        int
	// StallTime is the time spent waiting, by StatusDetail: failures
	// waited out and, as StalledDueTo<Side>_HighLatency, the copy's own
	// slowing down for a slow server.
	StallTime     map[string]time.Duration `json:",omitempty"`
	NextAttemptAt time.Time                `json:",omitempty"`
	LastFailure   *failure.Details         `json:",omitempty"`
	Started       time.Time
	SyncedAt      time.Time                `json:",omitempty"`
	Verify        *activities.VerifyResult `json:",omitempty"`
	Grade         Grade                    `json:",omitempty"`
	Repairs       int                      `json:",omitempty"`
	// SourceProfile and TargetProfile are the sides' provider profiles.
	SourceProfile string `json:",omitempty"`
	TargetProfile string `json:",omitempty"`
	// BudgetWindows is how many windows (BudgetWindow long, a day unless a
	// profile file says otherwise) the tighter daily transfer budget needs
	// for the whole mailbox: the ETA the budgets imply before the copy
	// starts; 0 without a budget.
	BudgetWindows int           `json:",omitempty"`
	BudgetWindow  time.Duration `json:",omitempty"`
	// BadItemsNotListed: bad items a memo leaves out of BadItems, to stay
	// small (`move status` lists them all).
	BadItemsNotListed int `json:",omitempty"`
}

// MoveReport is the result of a finished move.
type MoveReport struct {
	MoveStatus
	Duration time.Duration
}

// BatchInput starts a batch.
type BatchInput struct {
	Name string
	// StartAfter: no move starts before it (batch start --start-after).
	StartAfter time.Time `json:",omitempty"`
	// Window: the allowed hours, "Mon-Fri 19:00-07:00" in WindowZone
	// (internal/window): outside them no move copies.
	Window     string `json:",omitempty"`
	WindowZone string `json:",omitempty"`
	// Concurrency bounds the moves in their initial sync at once; moves that
	// reached Synced no longer count.
	Concurrency int
	// Moves: the batch starts them as child workflows (batches started
	// before gating; docs/evolving-workflows.md).
	Moves []MailboxMoveInput `json:",omitempty"`
	// Gated: the CLI starts the moves itself (MailboxMoveInput.Gated), in
	// pages, and the batch only gates them: Mailboxes names the first
	// page, SignalAddMoves the others. No payload of the batch carries a
	// move's settings or credentials.
	Gated     bool     `json:",omitempty"`
	Mailboxes []string `json:",omitempty"`
	// Source and Target are the servers of a gated batch's moves, as
	// `batch start` was given them: `batch add` and `batch retry --csv`
	// seal new passwords only for these, whatever a move that names the
	// batch says (anyone who may start workflows can start one).
	Source Endpoint `json:",omitzero"`
	Target Endpoint `json:",omitzero"`
	// Carry is a gated batch's state across continue-as-new.
	Carry *BatchCarry `json:",omitempty"`
}

// BatchCarry is a gated batch's state across continue-as-new: its
// mailboxes' addresses in lists by state, about 35 bytes per mailbox.
type BatchCarry struct {
	Open     []string `json:",omitempty"` // not ended, no slot
	Holding  []string `json:",omitempty"` // not ended, holding a slot
	Closed   []string `json:",omitempty"` // ended
	Failed   []string `json:",omitempty"` // ended failed (also in Closed)
	Asking   []string `json:",omitempty"` // asking for a slot, in order
	Complete []string `json:",omitempty"` // `move complete` asked
	// The batch's own state, as BatchStatus has it.
	Concurrency       int
	Paused            bool      `json:",omitempty"`
	CompleteRequested bool      `json:",omitempty"`
	CompleteAt        time.Time `json:",omitempty"`
}

// MaxBatchMailboxes bounds a gated batch: its state (BatchCarry) is about
// 35 bytes per mailbox, carried across continue-as-new in one payload
// that Temporal caps at 2 MB.
const MaxBatchMailboxes = 40000

// BatchEntry is one mailbox of a batch as the batch sees it.
type BatchEntry struct {
	Mailbox string
	// WorkflowID is MoveWorkflowID(batch, Mailbox); empty in a gated batch.
	WorkflowID string `json:",omitempty"`
	Started    bool   `json:",omitempty"`
	// Released: the move no longer holds one of the batch's concurrency
	// slots (it is synced, or waiting out a failure).
	Released bool   `json:",omitempty"`
	Closed   bool   `json:",omitempty"`
	Error    string `json:",omitempty"`
	// CompleteRequested: `move complete` asked before the move started; it
	// completes after its initial sync.
	CompleteRequested bool `json:",omitempty"`
}

// BatchStatus is what the batch's status query returns.
type BatchStatus struct {
	Name    string
	Entries []BatchEntry
	// CompleteRequested: `batch complete` was asked; the moves started
	// since complete after their initial sync.
	CompleteRequested bool `json:",omitempty"`
	// Concurrency is the most moves copying at once (`batch set`
	// changes it).
	Concurrency int `json:",omitempty"`
	// Paused: `batch pause`; no move copies until `batch resume`.
	Paused bool `json:",omitempty"`
	// StartAfter: the batch starts no move before it.
	StartAfter time.Time `json:",omitempty"`
	// CompleteAt: `batch complete --after`; the batch completes its moves
	// then.
	CompleteAt time.Time `json:",omitempty"`
	// OutsideWindow: outside the allowed hours (--window) until
	// WindowChange, when they begin (or end, when inside).
	OutsideWindow bool      `json:",omitempty"`
	WindowChange  time.Time `json:",omitempty"`
}

// BatchMemo is what a gated batch keeps in its memo, for `batch status`
// and `batch list` to read from the visibility store without a query.
type BatchMemo struct {
	Concurrency       int
	Mailboxes         int
	Closed            int
	Active            int       // moves holding a slot
	Asking            int       // moves waiting for one
	Paused            bool      `json:",omitempty"`
	CompleteRequested bool      `json:",omitempty"`
	StartAfter        time.Time `json:",omitempty"`
	CompleteAt        time.Time `json:",omitempty"`
	OutsideWindow     bool      `json:",omitempty"`
	WindowChange      time.Time `json:",omitempty"`
	// Window and WindowZone are the batch's --window, for `batch retry`
	// to start it again as it was.
	Window     string `json:",omitempty"`
	WindowZone string `json:",omitempty"`
	// Source and Target: BatchInput's, for the CLI to check a move's
	// servers against before it seals passwords for them.
	Source Endpoint `json:",omitzero"`
	Target Endpoint `json:",omitzero"`
}

// MemoBatch and MemoMove are the memo keys of a gated batch (BatchMemo)
// and of a move (MoveMemo).
const (
	MemoBatch = "batch"
	MemoMove  = "move"
)

// Types of the contract defined further down; the CLI names them from
// here, never from activities or the engine, whose I/O it must not reach.
type (
	Account    = activities.Account
	Endpoint   = engine.Endpoint
	Security   = engine.Security
	Rules      = engine.Rules
	Counters   = engine.Counters
	BadItem    = engine.BadItem
	FolderPlan = engine.FolderPlan
)

// ParseSecurity validates a --source-security/--target-security value.
func ParseSecurity(s string) (Security, error) { return engine.ParseSecurity(s) }

// TLSVersions are the values of Endpoint.MinTLS.
var TLSVersions = engine.TLSVersions

// AuthMechanisms are the values of Account.Auth.
var AuthMechanisms = engine.AuthMechanisms

// The values of Rules.GmailLabels.
const (
	GmailLabelFolders  = engine.GmailLabelFolders
	GmailLabelPriority = engine.GmailLabelPriority
)

// memoLists bounds the lists a move's memo carries: the memo is a few
// hundred bytes whatever the mailbox (the status query has them all).
const memoLists = 20

// memo is the status a gated move keeps in its memo (MemoMove).
func (st MoveStatus) memo() MoveStatus {
	cut := func(l []string) []string {
		if len(l) > memoLists {
			return append(l[:memoLists:memoLists], fmt.Sprintf("… and %d more (mailmove move status)", len(l)-memoLists))
		}
		return l
	}
	st.FoldersExcluded, st.FoldersRenamedForTarget = cut(st.FoldersExcluded), cut(st.FoldersRenamedForTarget)
	if n := len(st.BadItems); n > memoLists {
		st.BadItems, st.BadItemsNotListed = st.BadItems[:memoLists:memoLists], n-memoLists
	}
	if len(st.Reason) > 2000 {
		st.Reason = st.Reason[:2000] + "…"
	}
	return st
}
