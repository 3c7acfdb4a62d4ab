// Package policy is the table that decides what a move does about each kind
// of failure: how long to wait, how the wait grows, how many times to try,
// and when to give up. It is data — documented defaults, overridable per
// batch from a YAML or JSON file — and the workflow carries it out; no
// failure has retry code of its own.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mailmove/mailmove/internal/failure"
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

// Rule is what to do about one failure type.
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

// OverQuota says what a move does when the target is full.
type OverQuota string

const (
	OverQuotaFail OverQuota = "fail" // the move fails and says how much space it needs
	OverQuotaWait OverQuota = "wait" // the move is suspended and retries until the admin makes room
)

// Policy is a batch's failure policy.
type Policy struct {
	// Rules by failure type (failure.Type values).
	Rules map[failure.Type]Rule `json:"rules,omitempty"`
	// BadItemLimit is the number of messages the target may refuse before
	// the move fails; they are skipped and reported up to there.
	BadItemLimit int `json:"badItemLimit"`
	// OverQuota: "fail" or "wait".
	OverQuota OverQuota `json:"overQuota,omitempty"`
	// LatencyThreshold: when a server's measured command latency rises above
	// it, the move slows down before the server starts refusing. 0 disables.
	LatencyThreshold Duration `json:"latencyThreshold,omitempty"`
}

// Default is the policy of a batch without --policy. The numbers are the
// documented defaults (docs/failure-policy.md).
func Default() Policy {
	return Policy{
		Rules: map[failure.Type]Rule{
			// A refused logon is retried a few times — credentials are often
			// fixed minutes after a batch starts — and never for hours.
			failure.TypeLogonFailed: {InitialInterval: Duration(30 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(5 * time.Minute), MaximumAttempts: 5, Consecutive: true},
			// A locked mailbox: relinquish and come back later.
			failure.TypeMailboxLocked: {InitialInterval: Duration(5 * time.Minute), BackoffCoefficient: 1, MaximumAttempts: 12},
			// Overload and throttling: stall, back off, resume by itself.
			failure.TypeServerUnavailable: {InitialInterval: Duration(15 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(10 * time.Minute)},
			// Cannot connect: a flood-protecting firewall refuses bursts.
			failure.TypeConnectFailed: {InitialInterval: Duration(30 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(10 * time.Minute), MaximumAttempts: 20, Consecutive: true},
			failure.TypeTargetFull:    {Final: true, InitialInterval: Duration(10 * time.Minute), BackoffCoefficient: 1},
			failure.TypeNotFound:      {Final: true},
			// Anything unrecognised: a few tries, then the admin looks.
			failure.TypeProtocol: {InitialInterval: Duration(10 * time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(5 * time.Minute), MaximumAttempts: 5, Consecutive: true},
		},
		BadItemLimit:     10,
		OverQuota:        OverQuotaFail,
		LatencyThreshold: Duration(2 * time.Second),
	}
}

// Rule returns the rule for a failure type; unknown types get Protocol's.
func (p Policy) Rule(t failure.Type) Rule {
	if r, ok := p.Rules[t]; ok {
		if t == failure.TypeTargetFull && p.OverQuota == OverQuotaWait {
			r.Final = false
		}
		return r
	}
	return p.Rules[failure.TypeProtocol]
}

// knownTypes are the failure types a policy file may name.
var knownTypes = []failure.Type{
	failure.TypeLogonFailed, failure.TypeConnectFailed, failure.TypeMailboxLocked, failure.TypeServerUnavailable,
	failure.TypeTargetFull, failure.TypeNotFound, failure.TypeProtocol,
}

// Validate checks a policy and says what is wrong in the file's own terms.
func (p Policy) Validate() error {
	var errs []error
	for t, r := range p.Rules {
		known := false
		for _, k := range knownTypes {
			known = known || k == t
		}
		if !known {
			errs = append(errs, fmt.Errorf("rules.%s: unknown failure type; known: %s", t, typeList()))
			continue
		}
		if r.Final {
			continue
		}
		if r.InitialInterval <= 0 {
			errs = append(errs, fmt.Errorf("rules.%s.initialInterval: must be positive, e.g. \"30s\"", t))
		}
		if r.BackoffCoefficient != 0 && r.BackoffCoefficient < 1 {
			errs = append(errs, fmt.Errorf("rules.%s.backoffCoefficient: %g is below 1", t, r.BackoffCoefficient))
		}
		if r.MaximumInterval != 0 && r.MaximumInterval < r.InitialInterval {
			errs = append(errs, fmt.Errorf("rules.%s.maximumInterval: below initialInterval", t))
		}
		if r.MaximumAttempts < 0 {
			errs = append(errs, fmt.Errorf("rules.%s.maximumAttempts: must be 0 (no bound) or more", t))
		}
	}
	if p.BadItemLimit < 0 {
		errs = append(errs, errors.New("badItemLimit: must be 0 or more"))
	}
	switch p.OverQuota {
	case OverQuotaFail, OverQuotaWait, "":
	default:
		errs = append(errs, fmt.Errorf("overQuota: %q, want fail or wait", p.OverQuota))
	}
	if p.LatencyThreshold < 0 {
		errs = append(errs, errors.New("latencyThreshold: must be 0 (off) or positive"))
	}
	return errors.Join(errs...)
}

func typeList() string {
	s := make([]string, len(knownTypes))
	for i, t := range knownTypes {
		s[i] = string(t)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// Load reads a YAML or JSON policy file over the defaults: a rule in the
// file replaces the default rule of its failure type as a whole; other
// fields replace the defaults when present.
func Load(file string) (Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Policy{}, fmt.Errorf("--policy: %w", err)
	}
	return Parse(data, file)
}

// Parse is Load on bytes; name is used in errors.
func Parse(data []byte, name string) (Policy, error) {
	p := Default()
	var file struct {
		Rules            map[failure.Type]Rule `json:"rules"`
		BadItemLimit     *int                  `json:"badItemLimit"`
		OverQuota        OverQuota             `json:"overQuota"`
		LatencyThreshold *Duration             `json:"latencyThreshold"`
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		return Policy{}, fmt.Errorf("%s: %w", name, err)
	}
	for t, r := range file.Rules {
		p.Rules[t] = r
	}
	if file.BadItemLimit != nil {
		p.BadItemLimit = *file.BadItemLimit
	}
	if file.OverQuota != "" {
		p.OverQuota = file.OverQuota
	}
	if file.LatencyThreshold != nil {
		p.LatencyThreshold = *file.LatencyThreshold
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}
