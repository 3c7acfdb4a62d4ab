package failure

import (
	"slices"
	"time"
)

// Type is the kind of a failure. Its string value is the Temporal
// ApplicationError type, the StatusDetail suffix and the policy file's key,
// so renaming a constant breaks running moves.
type Type string

// The failure classes; each has one row in classes.
const (
	TypeLogonFailed       Type = "LogonFailed"
	TypeConnectFailed     Type = "ConnectFailed"
	TypeMailboxLocked     Type = "MailboxLocked"
	TypeServerUnavailable Type = "ServerUnavailable"
	TypeTargetFull        Type = "TargetFull"
	TypeNotFound          Type = "NotFound"
	TypeMessageRejected   Type = "MessageRejected"
	TypeProtocol          Type = "Protocol"
	TypeSecretKeyMismatch Type = "SecretKeyMismatch"

	TypeBadItemLimitExceeded Type = "BadItemLimitExceeded"
	TypeUnclassified         Type = "Error"
	TypeInvalidInput         Type = "InvalidInput"
	TypeMoveFailed           Type = "MoveFailed"

	TypeBadItems             Type = "BadItems"
	TypeKeywordsLeftOff      Type = "KeywordsLeftOff"
	TypeVerificationMismatch Type = "VerificationMismatch"
)

// Kind says where a failure class arises.
type Kind int

const (
	// KindActivity: an activity fails with it and the move's policy table
	// decides (Temporal never retries it).
	KindActivity Kind = iota
	// KindMove: the workflow ends a move with it.
	KindMove
	// KindWarning: a move completed, with this warning.
	KindWarning
)

// Class is everything mailmove knows of one kind of failure.
type Class struct {
	Type Type
	Kind Kind
	// Rule is what a move does about it by default (docs/failure-policy.md);
	// a batch's policy file may replace it unless Fixed.
	Rule  Rule
	Fixed bool
	// Wait is the move's StatusDetail while it waits one out; empty means
	// StalledDueTo<Side>_<Reason>. Suspends: it waits in Suspended, for
	// the admin.
	Wait     string
	Suspends bool
	// Hint is what to check, shown with the failure when the classifier
	// has nothing more precise; Remedy is what to do next, in `batch report`.
	Hint   string
	Remedy string
}

// protocolRule is also MessageRejected's: a refusal that is not a bad item
// of a copy is as unexpected as any other.
var protocolRule = Rule{InitialInterval: Duration(10 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(5 * time.Minute), MaximumAttempts: 5, Consecutive: true}

// classes is the one table of failure classes.
var classes = []Class{
	{Type: TypeLogonFailed, Kind: KindActivity,
		// Credentials are often fixed minutes after a batch starts; never
		// retried for hours.
		Rule: Rule{InitialInterval: Duration(30 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(5 * time.Minute), MaximumAttempts: 5, Consecutive: true},
		Wait: "WaitingForLogonRetry",
		Hint: "check the user name and password, that the account exists and is enabled, and admin rights for a proxy logon",
		Remedy: "check the user name and password in the CSV, that the account exists and is enabled, and the admin's rights for a proxy logon; " +
			"then `mailmove batch retry`"},
	{Type: TypeConnectFailed, Kind: KindActivity,
		// A flood-protecting firewall refuses bursts of connections.
		Rule:   Rule{InitialInterval: Duration(30 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(10 * time.Minute), MaximumAttempts: 20, Consecutive: true},
		Hint:   "cannot reach the server; check host, port and firewall",
		Remedy: "check host, port, --*-security and firewalls (flood protection refuses bursts of connections: lower --concurrency); then `mailmove batch retry`"},
	{Type: TypeMailboxLocked, Kind: KindActivity,
		// Relinquish and come back later.
		Rule:   Rule{InitialInterval: Duration(5 * time.Minute), BackoffCoefficient: 1, MaximumAttempts: 12},
		Wait:   "Relinquished_MailboxLocked",
		Hint:   "another process holds the mailbox; the move retries later",
		Remedy: "find what holds the mailbox (another migration, a backup, a stuck session) and stop it; then `mailmove batch retry`"},
	{Type: TypeServerUnavailable, Kind: KindActivity,
		// Overload and throttling: stall, back off, resume by itself; the
		// wait grows with failures in a row, not over the move's life.
		Rule:   Rule{InitialInterval: Duration(15 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(10 * time.Minute), Consecutive: true},
		Hint:   "the server is busy or throttling; the move waits and resumes",
		Remedy: "the server stayed overloaded or throttling; lower --concurrency or --connections-per-move, or move at night; then `mailmove batch retry`"},
	{Type: TypeTargetFull, Kind: KindActivity,
		// Final unless the policy says overQuota: wait.
		Rule: Rule{Final: true, InitialInterval: Duration(10 * time.Minute), BackoffCoefficient: 1},
		Wait: "WaitingForQuota", Suspends: true,
		Hint:   "raise the target mailbox quota",
		Remedy: "raise the target mailbox's quota by at least the amount in the message; then `mailmove batch retry` (or start with a policy overQuota: wait)"},
	{Type: TypeNotFound, Kind: KindActivity,
		Rule:   Rule{Final: true},
		Hint:   "the folder or account does not exist",
		Remedy: "check that the account and folder exist on that side"},
	{Type: TypeMessageRejected, Kind: KindActivity,
		Rule:   protocolRule,
		Hint:   "the target refused a message",
		Remedy: "the target refused a message outside a copy; see the message, and the worker log"},
	{Type: TypeProtocol, Kind: KindActivity,
		// Anything unrecognised: a few tries, then the admin looks.
		Rule:   protocolRule,
		Remedy: "the server answered something unexpected; see the message, and the worker log"},
	{Type: TypeSecretKeyMismatch, Kind: KindActivity,
		Rule: Rule{Final: true}, Fixed: true,
		Hint: "start the worker with the --secret-key-file the batch was started with",
		Remedy: "the reason says which: a key the workers lack — start them with the --secret-key-file the batch was started with, then `mailmove batch retry`; " +
			"SealedForAnotherUse or UnboundSecret — seal the password again for this move with `mailmove batch retry NAME --failed --csv FILE`"},

	{Type: TypeBadItemLimitExceeded, Kind: KindMove,
		Remedy: "see the refused messages with `mailmove move status EMAIL --batch NAME --json`; raise badItemLimit in the policy if they may be skipped; " +
			"then `mailmove batch retry`"},
	{Type: TypeUnclassified, Kind: KindMove,
		Remedy: "see the message, and the worker log"},
	{Type: TypeInvalidInput, Kind: KindMove,
		Hint:   "the move's input lacks a batch or mailbox name",
		Remedy: "start moves with `mailmove batch start`, which names the batch and each mailbox"},
	// The ApplicationError type of a failed move's workflow; its reason
	// names the class that ended it.
	{Type: TypeMoveFailed, Kind: KindMove},

	{Type: TypeBadItems, Kind: KindWarning,
		Remedy: "the listed messages were refused by the target and skipped; see `mailmove move status EMAIL --batch NAME --json`"},
	{Type: TypeKeywordsLeftOff, Kind: KindWarning,
		Remedy: "the target folders do not keep the keywords named in the message; the messages were copied without them"},
	{Type: TypeVerificationMismatch, Kind: KindWarning,
		Remedy: "messages are missing on the target or copied twice after a repair pass; see the folders in `mailmove move status EMAIL --batch NAME`, " +
			"then run the same users again in a new batch: what is there is matched, not copied twice"},
}

// ClassOf returns the class of t; ok is false for a type no row names.
func ClassOf(t Type) (c Class, ok bool) {
	i := slices.IndexFunc(classes, func(c Class) bool { return c.Type == t })
	if i < 0 {
		return Class{Type: t}, false
	}
	return classes[i], true
}

// Classes returns the classes of one kind, in table order.
func Classes(k Kind) []Class {
	var out []Class
	for _, c := range classes {
		if c.Kind == k {
			out = append(out, c)
		}
	}
	return out
}
