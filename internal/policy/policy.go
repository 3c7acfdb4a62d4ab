// Package policy is a batch's failure policy: the rules of the failure
// classes (internal/failure) as the batch overrides them from a YAML or JSON
// file, and the batch-wide limits. It is data; the workflow carries it out
// and no failure has retry code of its own.
package policy

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mailmove/mailmove/internal/failure"
)

// OverQuota says what a move does when the target is full.
type OverQuota string

const (
	OverQuotaFail OverQuota = "fail" // the move fails and says how much space it needs
	OverQuotaWait OverQuota = "wait" // the move is suspended and retries until the admin makes room
)

// Policy is a batch's failure policy.
type Policy struct {
	// Rules by failure type.
	Rules map[failure.Type]failure.Rule `json:"rules,omitempty"`
	// BadItemLimit is the number of messages the target may refuse before
	// the move fails; they are skipped and reported up to there.
	BadItemLimit int `json:"badItemLimit"`
	// OverQuota: "fail" or "wait".
	OverQuota OverQuota `json:"overQuota,omitempty"`
	// LatencyThreshold: when a server's measured command latency rises above
	// it, the move slows down before the server starts refusing. 0 disables.
	LatencyThreshold failure.Duration `json:"latencyThreshold,omitempty"`
}

// Default is the policy of a batch without --policy: the rules of the
// failure table and the documented limits (docs/failure-policy.md).
func Default() Policy {
	p := Policy{
		Rules:            map[failure.Type]failure.Rule{},
		BadItemLimit:     10,
		OverQuota:        OverQuotaFail,
		LatencyThreshold: failure.Duration(2 * time.Second),
	}
	for _, c := range configurable() {
		p.Rules[c.Type] = c.Rule
	}
	return p
}

// configurable are the classes whose rules a policy file may name.
func configurable() []failure.Class {
	var out []failure.Class
	for _, c := range failure.Classes(failure.KindActivity) {
		if !c.Fixed {
			out = append(out, c)
		}
	}
	return out
}

// Rule returns the rule for a failure type; types without a rule of their
// own get Protocol's.
func (p Policy) Rule(t failure.Type) failure.Rule {
	if c, ok := failure.ClassOf(t); ok && c.Fixed {
		return c.Rule
	}
	if r, ok := p.Rules[t]; ok {
		if t == failure.TypeTargetFull && p.OverQuota == OverQuotaWait {
			r.Final = false
		}
		return r
	}
	return p.Rules[failure.TypeProtocol]
}

// Validate checks a policy and says what is wrong in the file's own terms.
func (p Policy) Validate() error {
	var errs []error
	for t, r := range p.Rules {
		if c, ok := failure.ClassOf(t); !ok || c.Kind != failure.KindActivity || c.Fixed {
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
	var s []string
	for _, c := range configurable() {
		s = append(s, string(c.Type))
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
		Rules            map[failure.Type]failure.Rule `json:"rules"`
		BadItemLimit     *int                          `json:"badItemLimit"`
		OverQuota        OverQuota                     `json:"overQuota"`
		LatencyThreshold *failure.Duration             `json:"latencyThreshold"`
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
