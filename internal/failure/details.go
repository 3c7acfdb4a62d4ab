package failure

import (
	"fmt"

	"github.com/mailmove/mailmove/internal/humanize"
)

// Details describe a classified failure where it travels: with an
// activity's ApplicationError, in a move's state and in reports, so that
// side, operation and the server's own words stay apart.
type Details struct {
	Type   Type
	Reason string
	Side   Side
	Op     string
	Server string
	// Error is what went wrong when the server said nothing: a dropped
	// connection, a malformed or oversized answer (at most 300 bytes).
	Error string `json:",omitempty"`
	Hint  string
	// QuotaUsed and QuotaLimit, in bytes, accompany a TargetFull failure
	// when the target reports its quota.
	QuotaUsed  int64 `json:",omitempty"`
	QuotaLimit int64 `json:",omitempty"`
	// RetryAfter is the wait the server asked for; the move waits that
	// long instead of its rule's interval.
	RetryAfter Duration `json:",omitempty"`
}

// DetailsOf describes the classified failure in err; Type is empty when
// err holds none.
func DetailsOf(err error) Details {
	fe, ok := As(err)
	if !ok {
		return Details{}
	}
	d := Details{Type: fe.Type, Reason: fe.Reason, Side: fe.Side, Op: fe.Op, Server: fe.Server, Hint: fe.Hint, RetryAfter: Duration(fe.RetryAfter)}
	if fe.Server == "" && fe.Err != nil {
		d.Error = fe.Err.Error()
		if len(d.Error) > 300 {
			d.Error = d.Error[:300] + "…"
		}
	}
	return d
}

// String is the admin-readable account of a failure: type, side, what we
// were doing, the server's own words and what to check.
func (d Details) String() string {
	s := string(d.Type)
	if d.Side != "" {
		s += fmt.Sprintf(": %s %s", d.Side, d.Op)
	}
	if d.Server != "" {
		s += fmt.Sprintf(": server said %q", d.Server)
	} else if d.Error != "" {
		s += ": " + d.Error
	}
	if d.QuotaLimit > 0 {
		s += fmt.Sprintf(" (target quota: %s of %s used)", humanize.Bytes(d.QuotaUsed), humanize.Bytes(d.QuotaLimit))
	}
	if d.Hint != "" {
		s += " — " + d.Hint
	}
	return s
}
