package failure

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration written as "90s" or "5m" in policy files.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if json.Unmarshal(b, &n) == nil {
			*d = Duration(n) // nanoseconds, as older payloads carry them
			return nil
		}
		return fmt.Errorf("want a duration such as \"30s\" or \"5m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"30s\" or \"5m\": %w", err)
	}
	*d = Duration(v)
	return nil
}

// Rule is what a move does about one failure type: how long to wait, how
// the wait grows, how many times to try, when to give up.
type Rule struct {
	// Final failures end the move at once.
	Final bool `json:"final,omitempty"`
	// InitialInterval is the first wait; each later one is multiplied by
	// BackoffCoefficient up to MaximumInterval.
	InitialInterval    Duration `json:"initialInterval,omitempty"`
	BackoffCoefficient float64  `json:"backoffCoefficient,omitempty"`
	MaximumInterval    Duration `json:"maximumInterval,omitempty"`
	// MaximumAttempts bounds the attempts; 0 means no bound (a stall waits
	// as long as it takes).
	MaximumAttempts int `json:"maximumAttempts,omitempty"`
	// Consecutive: the attempt count starts again after a success (logon
	// attempts); otherwise it counts over the whole move (lock relinquishes).
	Consecutive bool `json:"consecutive,omitempty"`
}

// Delay returns the wait before attempt n+1 after n failed attempts (n ≥ 1).
func (r Rule) Delay(n int) time.Duration {
	d := float64(r.InitialInterval)
	c := r.BackoffCoefficient
	if c < 1 {
		c = 1
	}
	for i := 1; i < n; i++ {
		d *= c
		if r.MaximumInterval > 0 && d >= float64(r.MaximumInterval) {
			return time.Duration(r.MaximumInterval)
		}
	}
	if r.MaximumInterval > 0 && d > float64(r.MaximumInterval) {
		d = float64(r.MaximumInterval)
	}
	return time.Duration(d)
}

// Exhausted reports whether n failed attempts spend the rule's budget.
func (r Rule) Exhausted(n int) bool {
	return r.Final || (r.MaximumAttempts > 0 && n >= r.MaximumAttempts)
}
