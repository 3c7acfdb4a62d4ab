package failure

import (
	"testing"
	"time"
)

func TestRuleDelay(t *testing.T) {
	r := Rule{InitialInterval: Duration(time.Second), BackoffCoefficient: 2, MaximumInterval: Duration(5 * time.Second)}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 10: 5 * time.Second} {
		if got := r.Delay(n); got != want {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want)
		}
	}
	if !(Rule{MaximumAttempts: 3}).Exhausted(3) || (Rule{}).Exhausted(1000) {
		t.Error("Exhausted() wrong")
	}
}
