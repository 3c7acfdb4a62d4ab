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
)

// TaskQueue is the task queue workers poll and starters use.
const TaskQueue = "mailmove"

// Names of the workflows' handlers.
const (
	QueryStatus      = "status"      // MailboxMove and Batch: current status
	UpdateComplete   = "complete"    // MailboxMove: finish the move after its sync
	SignalMoveSynced = "move-synced" // MailboxMove → its Batch: initial sync is over
)

// Search attributes, registered on the dev server by `mailmove dev-server`
// and to be registered with `temporal operator search-attribute create` on
// any other cluster.
var (
	SearchAttrBatch   = temporal.NewSearchAttributeKeyKeyword("MailmoveBatch")
	SearchAttrStatus  = temporal.NewSearchAttributeKeyKeyword("MailmoveStatus")
	SearchAttrMailbox = temporal.NewSearchAttributeKeyKeyword("MailmoveMailbox")
)

// SearchAttributes lists the custom search attributes as NAME=TYPE for
// `temporal server start-dev --search-attribute`.
var SearchAttributes = []string{"MailmoveBatch=Keyword", "MailmoveStatus=Keyword", "MailmoveMailbox=Keyword"}

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

// Status is where a move is.
type Status string

const (
	StatusQueued          Status = "Queued"
	StatusConnecting      Status = "Connecting"
	StatusInitialSync     Status = "InitialSync"
	StatusSynced          Status = "Synced"
	StatusIncrementalSync Status = "IncrementalSync"
	StatusCompleting      Status = "Completing"
	StatusCompleted       Status = "Completed"
	StatusFailed          Status = "Failed"
)

// Terminal reports whether the move has ended.
func (s Status) Terminal() bool { return s == StatusCompleted || s == StatusFailed }

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
	// LogonAttempts bounds the logon attempts of Connect: a wrong password
	// fails the move after this many tries instead of retrying forever.
	LogonAttempts      int32
	LogonRetryInterval time.Duration
	// FolderConcurrency is the number of folders copied at once, each over
	// its own pair of connections.
	FolderConcurrency int
	// ChunkMessages is the number of messages one activity copies before
	// it reports back.
	ChunkMessages    int
	HeartbeatTimeout time.Duration
}

// Defaults of Settings.
const (
	DefaultIncrementalInterval = 30 * time.Minute
	DefaultLogonAttempts       = 5
	DefaultLogonRetryInterval  = 30 * time.Second
	DefaultFolderConcurrency   = 3
	DefaultChunkMessages       = 5000
	DefaultHeartbeatTimeout    = time.Minute
)

func (s Settings) withDefaults() Settings {
	if s.Complete == "" {
		s.Complete = CompleteAuto
	}
	if s.IncrementalInterval <= 0 {
		s.IncrementalInterval = DefaultIncrementalInterval
	}
	if s.LogonAttempts <= 0 {
		s.LogonAttempts = DefaultLogonAttempts
	}
	if s.LogonRetryInterval <= 0 {
		s.LogonRetryInterval = DefaultLogonRetryInterval
	}
	if s.FolderConcurrency <= 0 {
		s.FolderConcurrency = DefaultFolderConcurrency
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
	// State is set only by continue-as-new.
	State *MoveState `json:",omitempty"`
}

// FolderState is the progress of one folder.
type FolderState struct {
	Plan   engine.FolderPlan
	Cursor engine.Cursor
	// Copied is true once the folder's initial copy is finished.
	Copied bool
}

// MoveState is all the resumable progress of a move, carried whole across
// continue-as-new.
type MoveState struct {
	Status            Status
	Reason            string // why it failed, or the last error it overcame
	Folders           []FolderState
	MessagesTotal     int
	BytesTotal        int64
	MessagesCopied    int
	BytesCopied       int64
	MessagesMatched   int
	FlagUpdates       int
	BadItems          []engine.BadItem
	IncrementalPasses int
	CompleteRequested bool
	Started           time.Time
	SyncedAt          time.Time
	Verify            *activities.VerifyResult `json:",omitempty"`
}

// MoveStatus is what the status query returns: the counters without cursors.
type MoveStatus struct {
	Batch             string
	Mailbox           string
	Status            Status
	Reason            string `json:",omitempty"`
	PercentComplete   int
	FoldersTotal      int
	FoldersCopied     int
	MessagesTotal     int
	MessagesCopied    int
	BytesCopied       int64
	MessagesMatched   int
	FlagUpdates       int
	BadItems          int
	IncrementalPasses int
	Started           time.Time
	SyncedAt          time.Time                `json:",omitempty"`
	Verify            *activities.VerifyResult `json:",omitempty"`
}

// MoveReport is the result of a finished move.
type MoveReport struct {
	MoveStatus
	BadItems []engine.BadItem `json:",omitempty"`
	Duration time.Duration
}

// BatchInput starts a batch.
type BatchInput struct {
	Name string
	// Concurrency bounds the moves in their initial sync at once; moves that
	// reached Synced no longer count.
	Concurrency int
	Moves       []MailboxMoveInput
}

// BatchEntry is one mailbox of a batch as the batch sees it.
type BatchEntry struct {
	Mailbox    string
	WorkflowID string
	Started    bool
	Synced     bool
	Closed     bool
	Error      string `json:",omitempty"`
}

// BatchStatus is what the batch's status query returns.
type BatchStatus struct {
	Name    string
	Entries []BatchEntry
}
